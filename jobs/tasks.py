"""The RQ job entry points (plain functions taking ids) and `start_task`, which the web app calls.

Ops can requeue any of these jobs from rq-dashboard: each is safe to run again.
"""

import uuid

from jobs.connection import get_queue
from jobs.engine import AIEngine
from jobs.registry import get_function
from jobs.runtime import ensure_database
from models import db


def start_task(function_name: str, payload: dict, account_id: int, *, queue=None) -> dict:
    """Validate, claim, log and enqueue; return {'task_id', 'items', 'skipped'}.
    Raises ValidationError / NotFound / AIFunctionError with a sentence for the caller."""
    task_id = uuid.uuid4().hex
    engine = AIEngine(get_function(function_name), task_id, account_id, queue=queue or get_queue())
    return engine.start(payload)


def run_ai_task(function_name: str, payload: dict, account_id: int) -> dict:
    """The parent job: INIT and PREP, then one job per item and a DONE job."""
    ensure_database()
    with db.connection_context():
        return AIEngine(get_function(function_name), payload["task_id"], account_id).run_parent(payload)


def run_ai_item(task_id: str, function_name: str, item_id, account_id: int) -> dict:
    """One item: build_prompt → AI_CALL → PARSE → SAVE. Raises on failure (after recording it)."""
    ensure_database()
    with db.connection_context():
        return AIEngine(get_function(function_name), task_id, account_id).run_item(item_id)


def save_ai_item(task_id: str, function_name: str, item_id, account_id: int, parsed: dict) -> dict:
    """SAVE for one item (download, verify, convert, store), beside the chain."""
    ensure_database()
    with db.connection_context():
        return AIEngine(get_function(function_name), task_id, account_id).run_save(item_id, parsed)


def finish_ai_task(task_id: str, function_name: str, account_id: int) -> dict:
    """DONE: totals, cost and the final message, from the database."""
    ensure_database()
    with db.connection_context():
        return AIEngine(get_function(function_name), task_id, account_id).finish()
