"""Ending an image whose job could not end it: nothing stays `queued` or `generating` for good, and a
paid answer is stored rather than thrown away.

Who notices what:
- a job that raised or hit its timeout records its own failure (jobs.engine);
- RQ calls `job_failed` for a job it failed for reasons the job could not see: abandoned because its
  worker died (found by RQ's started-registry cleanup, which `sweep_once` runs every SWEEP_INTERVAL, so
  within about 65 s — RQ's heartbeat grace of 60 s plus the monitoring interval — plus one interval);
- the worker calls `horse_killed` when its work-horse died (kill -9, out of memory);
- `sweep_once`, run by one worker's RQ maintenance every SWEEP_INTERVAL, finds images whose job
  Redis lost (a restart without persistence) and enqueues them again.

In each case an image whose answer had arrived (its cost, request id and answer on the row) gets its
SAVE job again; any other ends failed with the reason and can be retried.
"""

import datetime as dt
import logging

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Dependency, Job, JobStatus
from rq.registry import clean_registries

from jobs.engine import (
    FAILURE_TTL,
    PARENT_TIMEOUT,
    RESULT_TTL,
    done_job_id,
    enqueue_item,
    enqueue_save,
    item_job_ids,
    save_job_id,
    store_queue_name,
)
from jobs.limits import rate_limit
from models import AITaskLog, Images, db, utcnow

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 15
LOCK_KEY = "imggen:sweep-lock:{}"  # one sweep per queue and interval, whichever worker takes it
MAX_ATTEMPTS = 3  # calls an image's lost jobs are enqueued for, and SAVE jobs an answer gets
# A claim is committed just before its job is enqueued; give the enqueue time to happen.
GRACE = dt.timedelta(seconds=20)
ALIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED,
         JobStatus.RATE_LIMITED, JobStatus.READY_TO_ENQUEUE}
INTERRUPTED = "Interrupted: the worker process stopped while generating this image. Retry it."


# --- RQ's hooks ---------------------------------------------------------------------------------

def job_failed(job, connection, exc_type=None, exc_value=None, traceback=None) -> None:
    """RQ's on_failure callback of item and SAVE jobs."""
    from jobs.runtime import ensure_database

    ensure_database()
    why = f"Interrupted: {exc_value}. Retry it." if exc_value and str(exc_value) else INTERRUPTED
    with db.connection_context():
        recover(Queue(job.origin, connection=connection), *job.args[:2], why)


IMAGE_JOBS = ("jobs.tasks.run_ai_item", "jobs.tasks.save_ai_item")


def horse_killed(job, retpid, ret_val, rusage) -> None:
    """The worker's work_horse_killed_handler: RQ fails the job but calls no on_failure for it. Runs in
    the worker itself, so nothing here may end the worker (the sweep is the fallback)."""
    if job.func_name not in IMAGE_JOBS:
        return  # the parent and the finisher are safe to run again; ops see them in the failed registry
    try:
        with db.connection_context():
            recover(Queue(job.origin, connection=job.connection), *job.args[:2], INTERRUPTED)
    except Exception:
        log.exception("recovery of job %s failed; the sweep will end its image", job.id)


def recover(queue: Queue, task_id: str, item_id, reason: str) -> str:
    """End an image left unfinished by its job: its answer is saved again if it had one, else it fails
    with `reason`. What was done ('saving', 'failed', or '' when the image had ended)."""
    image = Images.get_or_none((Images.id == item_id) & (Images.task_id == task_id))
    if image is None or image.status not in ("queued", "generating"):
        return ""
    answered = image.status == "generating" and (image.answer_key or image.provider_url)
    if answered and _resaves(queue, task_id, item_id) <= MAX_ATTEMPTS:
        enqueue_save(queue, task_id, item_id)
        log.warning("recovery: image %s of task %s was answered; saving it again", item_id, task_id)
        return "saving"
    Images.fail(image.account_id, item_id, task_id, reason if not answered else
                f"Its answer could not be saved in {MAX_ATTEMPTS} attempts ({reason}).")
    _finish_if_last(task_id)
    return "failed"


def _resaves(queue, task_id, item_id) -> int:
    key = f"imggen:resaves:{task_id}:{item_id}"
    count = queue.connection.incr(key)
    queue.connection.expire(key, RESULT_TTL)
    return count


def _finish_if_last(task_id) -> None:
    from jobs.tasks import engine_for

    engine_for(task_id).finish_if_last()


# --- the periodic sweep ---------------------------------------------------------------------------

def sweep_once(queue: Queue, *, now: dt.datetime | None = None) -> dict:
    """One pass over the unfinished images; counts for logs and tests. Safe to run from several
    processes (each outcome is a conditional update, each enqueue a fixed job id)."""
    store = Queue(store_queue_name(queue.name), connection=queue.connection)
    for each in (queue, store):
        # RQ's own maintenance, more often than a worker runs it: abandoned jobs → failed registry (with
        # their on_failure callbacks), slots of jobs that ended without releasing them → freed.
        clean_registries(each)
    now = now or utcnow()
    counts = {"failed": 0, "requeued": 0, "saving": 0, "alive": 0}
    unfinished = (Images.select().where(Images.status.in_(["queued", "generating"])
                                        & Images.task_id.is_null(False) & (Images.updated_at < now - GRACE)))
    lost: dict = {}
    tasks: dict = {}  # one read per task, however many of its images are unfinished
    for image in unfinished:
        if image.task_id not in tasks:
            tasks[image.task_id] = AITaskLog.get_or_none(AITaskLog.task_id == image.task_id)
        task = tasks[image.task_id]
        if task is None:
            Images.fail(image.account_id, image.id, image.task_id,
                        "Interrupted: its task record is missing. Retry it.")
            counts["failed"] += 1
            continue
        item_job = item_job_ids(task).get(image.id)  # no query: from the task's item ids
        jobs = (image.task_id, item_job, save_job_id(image.task_id, image.id))  # parent, call, save
        statuses = [_status(queue, job_id) for job_id in jobs]
        if any(status in ALIVE for status in statuses):
            counts["alive"] += 1
        elif all(status is None for status in statuses[1:]) and not (image.answer_key or image.provider_url):
            lost.setdefault(task, []).append(image)
        else:
            # Its jobs ended without ending it (or only its answer is left): RQ's hooks missed it.
            done = recover(queue, image.task_id, image.id, _ended_reason(queue, item_job, image.task_id, image.id))
            counts[done or "alive"] += 1
    for task, images in lost.items():
        counts["requeued"] += _enqueue_again(queue, task, images, counts)
    if counts["failed"] or counts["requeued"] or counts["saving"]:
        log.warning("sweep: %s", counts)
    return counts


def _enqueue_again(queue, task: AITaskLog, images: list, counts: dict) -> int:
    """Redis lost these images' jobs: enqueue them again (up to MAX_ATTEMPTS calls), and the finisher."""
    from jobs.tasks import engine_for

    engine = engine_for(task.task_id)
    job_ids = item_job_ids(task)
    again, limit = [], None
    for image in images:
        if image.attempts >= MAX_ATTEMPTS:
            Images.fail(image.account_id, image.id, task.task_id,
                        f"Gave up after {image.attempts} attempts: the job kept being lost.")
            counts["failed"] += 1
            continue
        if limit is None:  # the key's settings, read (and its key decrypted) once for the task
            limits = engine.fn.prepare({**task.payload, "ids": []}, task.account_id).limits
            limit = rate_limit(queue.connection, limits) if limits is not None else False
        enqueue_item(queue, task.task_id, image.id, job_ids[image.id], limit or None)
        again.append(job_ids[image.id])
    if again and _status(queue, done_job_id(task.task_id)) is None:
        queue.enqueue("jobs.tasks.finish_ai_task", task.task_id, job_id=done_job_id(task.task_id),
                      depends_on=Dependency(jobs=again, allow_failure=True), job_timeout=PARENT_TIMEOUT,
                      result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, description=f"finish task {task.task_id}")
    if not again:
        engine.finish_if_last()
    else:
        log.warning("sweep: re-enqueued %d lost jobs of task %s", len(again), task.task_id)
    return len(again)


def _status(queue, job_id):
    if job_id is None:
        return None
    try:
        return Job.fetch(job_id, connection=queue.connection).get_status()
    except NoSuchJobError:
        return None


def _ended_reason(queue, item_job, task_id, item_id) -> str:
    result = None
    for job_id in (item_job, save_job_id(task_id, item_id)):
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:
            continue
        if job.get_status() == JobStatus.FAILED:
            result = job.latest_result()
    detail = (result.exc_string or "").strip().splitlines()[-1:] if result else []
    why = detail[0] if detail else "the job ended"
    if "Work-horse terminated" in why or "Abandoned" in why or "killed" in why.lower():
        return INTERRUPTED
    return f"Interrupted: {why[:300]}. Retry it."


# --- one sweep per deployment, in RQ's maintenance ---------------------------------------------------

def sweep_if_due(queue: Queue) -> dict | None:
    """Called by every worker's RQ maintenance (worker.py, every SWEEP_INTERVAL): the first worker of
    the queue to get there in an interval sweeps, the others skip. Being part of the workers' own loop,
    it comes back by itself after Redis lost everything."""
    from jobs import model_check, publishing

    if not queue.connection.set(LOCK_KEY.format(queue.name), "1", nx=True, ex=SWEEP_INTERVAL - 1):
        return None
    with db.connection_context():  # closed again before the worker forks its next work-horse
        counts = sweep_once(queue)
    model_check.schedule_daily(queue)
    with db.connection_context():
        counts["public_urls_removed"] = publishing.remove_expired()  # old URLs past their grace
    return counts
