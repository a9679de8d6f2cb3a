"""Recover images left `queued`/`generating` by a job that can no longer finish them.

Image status must not depend on RQ callbacks: `on_failure` is not called when a work-horse is
killed, RQ's own abandoned-job cleanup can take ~10 minutes, and a Redis restart without persistence
loses jobs outright. So a sweep, run by every worker at start and then every SWEEP_INTERVAL seconds
(one at a time across a queue's workers, by a Redis lock), looks at each unfinished image and its job:

- the job is waiting or running → leave it, unless the worker running it is dead (its liveness key,
  refreshed every few seconds by the sweeper beside each worker, has expired): then RQ's own
  abandoned-job path is applied to that job at once instead of ~90 s later;
- the job ended (failed, killed, abandoned) but the image did not → mark the image failed with a
  reason; it can be retried (requeue the job, or Retry failed);
- the job is gone (Redis lost it) → enqueue it again, up to MAX_ATTEMPTS, then fail the image.
"""

import datetime as dt
import logging

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Dependency, Job, JobStatus
from rq.registry import ReadyJobRegistry, StartedJobRegistry

from jobs.engine import (
    ITEM_TIMEOUT,
    PARENT_TIMEOUT,
    RESULT_TTL,
    done_job_id,
    item_job_id,
    save_job_id,
    store_queue_name,
)
from models import AITaskLog, Images, utcnow

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 15
MAX_ATTEMPTS = 3
# A claim is committed just before its job is enqueued; give the enqueue time to happen.
GRACE = dt.timedelta(seconds=20)
ALIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
# One sweep at a time per queue: workers of other queues sharing the Redis sweep their own.
LOCK_KEY = "imggen:sweep-lock:{}"
ALIVE_KEY = "imggen:worker-alive:{}"
# Only workers with a sweeper beside them keep a liveness key; a plain `rq worker` has no marker and
# is left to RQ's own (slower) abandoned-job detection.
WATCHED_KEY = "imggen:worker-watched:{}"
ALIVE_TTL = 6
HEARTBEAT = 2


def sweep_once(queue: Queue, *, now: dt.datetime | None = None) -> dict:
    """One pass; returns counts for logs and tests. Safe to run from several processes."""
    if not queue.connection.set(LOCK_KEY.format(queue.name), "1", nx=True, ex=SWEEP_INTERVAL - 1):
        return {"skipped": True}
    now = now or utcnow()
    started = StartedJobRegistry(queue=queue)
    _expire_jobs_of_dead_workers(queue, started)
    started.cleanup()  # abandoned jobs → failed registry (releases their dependents)
    counts = {"failed": 0, "requeued": 0, "alive": 0}
    unfinished = Images.select().where(Images.status.in_(["queued", "generating"]) & Images.task_id.is_null(False))
    lost_by_task: dict = {}
    store = Queue(store_queue_name(queue.name), connection=queue.connection)
    StartedJobRegistry(queue=store).cleanup()
    for image in unfinished:
        status = _job_status(queue, item_job_id(image.task_id, image.id))
        if status == JobStatus.FINISHED:
            # The call is done and its SAVE was handed to the store queue: that job decides. If it
            # is gone, the bytes went with it and the image is generated again (below).
            status = _job_status(queue, save_job_id(image.task_id, image.id))
        if status in ALIVE or _parent_alive(queue, image.task_id):
            counts["alive"] += 1
        elif status is None:
            if image.updated_at > now - GRACE:
                continue
            if image.attempts >= MAX_ATTEMPTS:
                _fail(image, f"Gave up after {image.attempts} attempts: the job kept being lost.")
                counts["failed"] += 1
            else:
                lost_by_task.setdefault((image.task_id, image.account_id), []).append(image.id)
        else:
            _fail(image, _ended_reason(queue, item_job_id(image.task_id, image.id),
                                       save_job_id(image.task_id, image.id)))
            counts["failed"] += 1
    for (task_id, account_id), image_ids in lost_by_task.items():
        _requeue(queue, task_id, account_id, image_ids)
        counts["requeued"] += len(image_ids)
    if counts["failed"] or counts["requeued"]:
        log.warning("sweep: %s", counts)
    return counts


def push_ready_dependents(queue, job_ids, attempts: int = 5) -> int:
    """Enqueue those of `job_ids` that RQ left in the ready registry, now: called by the worker right
    after a job ends with the ids of its dependents, so a chain's next image does not wait for the
    sweeper's next pass (up to 2 s) when its enqueue lost the race described below."""
    registry = ReadyJobRegistry(queue=queue)
    pushed = 0
    for _ in range(attempts):
        left = [job_id for job_id in job_ids if queue.connection.zscore(registry.key, job_id) is not None]
        if not left:
            break
        pushed += len(registry.enqueue_jobs(left))
    return pushed


def release_ready_jobs(queue) -> int:
    """Push dependents that RQ marked ready but did not enqueue.

    RQ 3 moves a finished job's dependents through a ready registry under WATCH; when two chains
    finish at the same moment one of them loses the race and its dependent waits for the next
    maintenance pass — which an idle worker blocked in BLPOP reaches only after ~7 minutes. Every
    sweeper does it every few seconds instead.
    """
    return len(ReadyJobRegistry(queue=queue).cleanup())


def _expire_jobs_of_dead_workers(queue, started) -> None:
    """Mark started jobs whose worker is gone as expired, so cleanup() fails them now."""
    for job_id in started.get_job_ids(cleanup=False):
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:
            continue
        if _worker_is_dead(queue.connection, job.worker_name, job.started_at):
            for execution in job.get_executions():
                queue.connection.zadd(started.key, {execution.composite_key: 1}, xx=True)


def _worker_is_dead(redis, name, started_at) -> bool:
    if not name or not redis.exists(WATCHED_KEY.format(name)) or redis.exists(ALIVE_KEY.format(name)):
        return False
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ALIVE_TTL)
    return started_at is not None and started_at < recent


def _job_status(queue, job_id):
    try:
        return Job.fetch(job_id, connection=queue.connection).get_status()
    except NoSuchJobError:
        return None


def _parent_alive(queue, task_id) -> bool:
    # Before the parent has fanned out, the item jobs do not exist yet.
    return _job_status(queue, task_id) in ALIVE


def _ended_reason(queue, *job_ids) -> str:
    result = None
    for job_id in job_ids:
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:
            continue
        if job.get_status() == JobStatus.FAILED:
            result = job.latest_result()
    detail = (result.exc_string or "").strip().splitlines()[-1:] if result else []
    why = detail[0] if detail else "the job ended"
    if "Work-horse terminated" in why or "Abandoned" in why or "killed" in why.lower():
        why = "the worker process stopped while generating this image"
    return f"Interrupted: {why[:300]}. Retry it."


def _fail(image, reason: str) -> None:
    (Images.update(status="failed", error=reason, updated_at=utcnow())
     .where((Images.id == image.id) & (Images.status == image.status) & (Images.task_id == image.task_id))
     .execute())


def _requeue(queue, task_id, account_id, image_ids) -> None:
    task = AITaskLog.get_or_none(AITaskLog.task_id == task_id)
    if task is None:
        for image in Images.select().where(Images.id.in_(image_ids)):
            _fail(image, "Interrupted: its task record is missing. Retry it.")
        return
    previous = None
    batch = []
    for image_id in image_ids:
        job_id = item_job_id(task_id, image_id)
        batch.append(Queue.prepare_data(
            "jobs.tasks.run_ai_item", args=(task_id, task.function_name, image_id, account_id), job_id=job_id,
            depends_on=Dependency(jobs=[previous], allow_failure=True) if previous else None,
            timeout=ITEM_TIMEOUT, result_ttl=RESULT_TTL, description=f"recovered: item {image_id} of task {task_id}",
        ))
        previous = job_id
    if _job_status(queue, done_job_id(task_id)) is None or task.finished_at is None:
        batch.append(Queue.prepare_data(
            "jobs.tasks.finish_ai_task", args=(task_id, task.function_name, account_id),
            job_id=done_job_id(task_id), depends_on=Dependency(jobs=[previous], allow_failure=True),
            timeout=PARENT_TIMEOUT, result_ttl=RESULT_TTL, description=f"finish task {task_id}",
        ))
    queue.enqueue_many(batch)
    log.warning("sweep: re-enqueued %d lost jobs of task %s", len(image_ids), task_id)


def run_forever(parent_pid: int, worker_name: str, config) -> None:
    """The sweeper process beside each worker: it keeps the worker's liveness key fresh while the worker
    lives, sweeps every SWEEP_INTERVAL seconds, and exits when its worker is gone."""
    import os
    import signal
    import time

    from jobs import model_check
    from jobs.connection import get_queue
    from jobs.runtime import ensure_database
    from models import db

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when to stop; we follow it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sweep %(levelname)s %(message)s")
    ensure_database(config)
    queue = get_queue(config)
    alive_key = ALIVE_KEY.format(worker_name)
    queue.connection.set(WATCHED_KEY.format(worker_name), parent_pid, ex=7 * 24 * 3600)
    next_sweep = 0.0
    while os.getppid() == parent_pid:
        try:
            queue.connection.set(alive_key, parent_pid, ex=ALIVE_TTL)
            release_ready_jobs(queue)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_INTERVAL
                with db.connection_context():
                    sweep_once(queue)
                model_check.schedule_daily(queue)
        except Exception:
            log.exception("sweep failed; trying again shortly")
        time.sleep(HEARTBEAT)
    # The watched marker stays (it expires on its own): a started job of this worker must still be
    # recognised as orphaned.
    queue.connection.delete(alive_key)
