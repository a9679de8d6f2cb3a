"""The RQ job entry points (plain functions taking ids) and `start_task`, which the web app calls.

Ops can requeue any of these jobs from rq-dashboard: each is safe to run again.
"""

from jobs.connection import get_queue
from jobs.engine import AIEngine, new_task_id
from jobs.registry import get_function
from jobs.runtime import ensure_database
from models import AITaskLog, db


def start_task(function_name: str, payload: dict, account_id: int, *, queue=None, created_by=None) -> dict:
    """Validate, claim, log and enqueue; return {'task_id', 'items', 'skipped'} (with `dry_run`, the
    estimate instead, and nothing queued). Raises ValidationError / NotFound / AIFunctionError with a
    sentence for the caller."""
    engine = AIEngine(get_function(function_name), new_task_id(), account_id, queue=queue or get_queue())
    return engine.start(payload, created_by=created_by)


def engine_for(task_id: str) -> AIEngine:
    """The engine of a stored task: its function and account come from the task's row."""
    task = AITaskLog.get(AITaskLog.task_id == task_id)
    return AIEngine(get_function(task.function_name), task_id, task.account_id, task=task)


def run_ai_task(task_id: str) -> dict:
    """The parent job: INIT and PREP, then one job per item and the finisher."""
    ensure_database()
    with db.connection_context():
        engine = engine_for(task_id)
        return engine.run_parent({**engine.task.payload, "ids": list(engine.task.item_ids or [])})


def run_ai_item(task_id: str, item_id) -> dict:
    """One item: build_prompt → AI_CALL, the answer kept; then its SAVE job (or PARSE → SAVE here)."""
    ensure_database()
    with db.connection_context():
        return engine_for(task_id).run_item(item_id)


def save_ai_item(task_id: str, item_id) -> dict:
    """PARSE → SAVE for one item (download, verify, convert, store) from the answer its call kept."""
    ensure_database()
    with db.connection_context():
        return engine_for(task_id).run_save(item_id)


def finish_ai_task(task_id: str) -> dict:
    """DONE: totals, cost and the final message, from the database."""
    ensure_database()
    with db.connection_context():
        return engine_for(task_id).finish()
