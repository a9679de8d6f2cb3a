"""What `GET /v1/system/task_progress/<id>/` and the progress panel show, built from the database
(the truth, which outlives RQ's result TTLs) and the item jobs' own meta (the live view)."""

import time
from datetime import UTC

from rq.exceptions import NoSuchJobError
from rq.job import Job

from jobs import latency, progress_cache
from jobs.engine import item_job_ids, not_started_after_cancel
from jobs.registry import get_function
from models import AITaskLog, ImageAttempt

# Where each stage of an image sits on its own progress bar.
ITEM_PHASE_PERCENT = {"PREP": 3, "PARSE": 90, "SAVE": 95}
AI_CALL_SPAN = (5, 88)


def shared_task_progress(task_id: str, account_id: int, redis) -> dict | None:
    """task_progress through the cache everyone watching the task shares (RedisError when Redis is
    unreachable): however many poll, a running task's view is built at most once a second."""
    found, view = progress_cache.get(redis, task_id, account_id)
    if found:
        return view
    view = task_progress(task_id, account_id, redis)
    if view is not None:
        progress_cache.put(redis, task_id, account_id, view, ended=view["state"] in ("done", "failed", "canceled"))
    return view


def task_progress(task_id: str, account_id: int, redis=None) -> dict | None:
    """None when the task does not exist in this account (another account's task included)."""
    task = AITaskLog.get_or_none((AITaskLog.task_id == task_id) & (AITaskLog.account == account_id))
    if task is None:
        return None
    fn = get_function(task.function_name)
    states = _as_this_task_left_them(fn.item_states(list(task.item_ids or []), account_id), task_id)
    metas = _item_metas(redis, task)
    canceled = task.canceled_at is not None
    images = [_image_row(state, metas.get(state["id"]), task_id, canceled) for state in states]

    generated = sum(i["status"] == "generated" for i in images)
    failed = sum(i["status"] == "failed" for i in images)
    not_started = sum(not_started_after_cancel(s, task_id) for s in states) if canceled else 0
    # A single-call function has no items: its task's own state says when it has ended.
    finished = (bool(images) and generated + failed == len(images) and task.state != "queued"
                and not canceled)
    state = task.state if task.state in ("failed", "canceled") else ("done" if finished else task.state)
    if state == "canceled":
        phase, percent, message = "DONE", 100, task.message
    elif canceled:
        in_flight = len(images) - generated - failed - not_started
        phase, percent = "AI_CALL", min(98, int(100 * (generated + failed + not_started) / max(1, len(images))))
        message = fn.progress_message("CANCELING", index=in_flight, total=not_started)
    elif state == "done":
        phase, percent = "DONE", 100
        message = fn.progress_message("DONE", done=generated, failed=failed) if images else task.message
    elif task.phase in ("INIT", "PREP") or not images:  # before the fan-out, or a single call
        phase = task.phase
        percent = {"INIT": 5, "PREP": 15}.get(task.phase, 0)
        message = task.message
    else:
        phase, message = _current_step(fn, images)
        done_fraction = sum(i["progress"] for i in images) / (100 * len(images))
        percent = min(98, int(25 + 73 * done_fraction))
    # What the provider charged, failed images that were answered (and billed) included.
    cost = sum(i["cost"] or 0 for i in images) if images else float(task.cost or 0)
    return {
        "task_id": task.task_id,
        "function_name": task.function_name,
        "state": state,
        "phase": phase,
        "percent": percent,
        "message": message,
        "images": images,
        "totals": {"total": len(images), "generated": generated, "failed": failed, "not_started": not_started,
                   "skipped": int((task.totals or {}).get("skipped", 0)), "cost": round(cost, 6)},
        "canceling": canceled and state != "canceled",
        "error": task.error,
        "steps": fn.get_metadata().get("steps", []),
    }


def _as_this_task_left_them(states: list[dict], task_id: str) -> list[dict]:
    """An image a newer task has taken since is shown as this task ended it (its attempt in this task:
    generated or failed, with its cost and error), so an old run reads as it ran. One query, and only
    when there is such an image."""
    moved = [s["id"] for s in states if s.get("task_id") != task_id]
    if not moved:
        return states
    attempts = {a.image_id: a for a in (ImageAttempt.select()
                                        .where((ImageAttempt.task_id == task_id) & ImageAttempt.image_id.in_(moved))
                                        .order_by(ImageAttempt.id))}  # the latest one per image wins
    shown = []
    for state in states:
        attempt = attempts.get(state["id"]) if state.get("task_id") != task_id else None
        if attempt is not None and attempt.outcome in ("generated", "failed"):
            state = {**state, "status": attempt.outcome, "error": attempt.error, "cost": attempt.cost,
                     "task_id": task_id}
        shown.append(state)
    return shown


def _current_step(fn, images) -> tuple[str, str]:
    """The step to show: an AI call in flight wins (saves run beside the chain), then a save."""
    total = len(images)
    done = sum(i["status"] == "generated" for i in images)
    active = [(n, i) for n, i in enumerate(images, start=1) if i["status"] == "generating"]
    for index, image in active:
        if image["phase"] not in ("PARSE", "SAVE"):
            return "AI_CALL", fn.progress_message("AI_CALL", index=index, total=total)
    for _index, image in active:
        saving = sum(i["phase"] in ("PARSE", "SAVE") for _, i in active)
        return image["phase"], fn.progress_message(image["phase"], done=done + saving)
    waiting = next((n for n, i in enumerate(images, start=1) if i["status"] == "queued"), total)
    return "AI_CALL", fn.progress_message("AI_CALL", index=waiting, total=total)


def _image_row(state: dict, meta: dict | None, task_id: str, canceled: bool) -> dict:
    status = state["status"]
    if canceled and not_started_after_cancel(state, task_id):
        status = "pending"  # let go by the cancel; a newer task may have taken it since
    elif state.get("task_id") != task_id and status in ("queued", "generating"):
        status = "queued"  # a newer task took the image; this task's view does not follow it
    meta = meta or {}
    phase = meta.get("phase") if status == "generating" else None
    return {
        "id": state["id"],
        "status": status,
        "phase": phase,
        "progress": _item_percent(status, phase, meta, state),
        "image_url": state["image_url"] if status == "generated" else None,
        "error": state["error"] if status == "failed" else None,
        "cost": float(state["cost"]) if status in ("generated", "failed") and state["cost"] is not None else None,
    }


def _item_percent(status, phase, meta, state) -> int:
    if status in ("generated", "failed"):
        return 100
    if status != "generating":
        return 0
    if phase in ITEM_PHASE_PERCENT:
        return ITEM_PHASE_PERCENT[phase]
    started = meta.get("call_started_at")
    if started is None and state.get("started_at") is not None:
        started = state["started_at"].replace(tzinfo=UTC).timestamp()  # stored as naive UTC
    if started is None:
        return AI_CALL_SPAN[0]
    call = latency.estimate_progress(time.time() - started, meta.get("expected_seconds"))
    low, high = AI_CALL_SPAN
    return int(low + (high - low) * call / 95)


def _item_metas(redis, task: AITaskLog) -> dict:
    """{item id: its job's meta}; a waiting item's job has none yet."""
    job_ids = item_job_ids(task)
    if redis is None or not job_ids:
        return {}
    try:
        jobs = Job.fetch_many(list(job_ids.values()), connection=redis)
    except NoSuchJobError:
        jobs = []
    return {item_id: job.meta for item_id, job in zip(job_ids, jobs, strict=False) if job is not None}
