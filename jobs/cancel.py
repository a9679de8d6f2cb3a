"""Cancel a running task: no provider call of it starts any more; calls in flight end and are stored
(the provider bills a started call either way); images not started are pending again.

It works from the database and RQ's own job states, so it does not matter which worker holds a job:
the task's `canceled_at` is set and its unstarted images let go under the account's call gate, which
every call passes just before it starts (`budget.admit_call`). The jobs still waiting are canceled in
RQ (rq-dashboard lists them as canceled, not failed); a job already running finds its task canceled at
the gate and ends without a call.
"""

import logging

from redis.exceptions import RedisError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from jobs import budget, progress_cache
from jobs.engine import done_job_id, item_job_ids
from jobs.errors import Conflict, NotFound
from jobs.tasks import engine_for
from models import AITaskLog, Images, db, utcnow

log = logging.getLogger(__name__)

# A job in one of these has not started: RQ can cancel it outright.
WAITING = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.RATE_LIMITED)
ENDED = ("done", "failed", "canceled")


def cancel_task(task_id: str, account_id: int, redis) -> dict:
    """{'not_started': n, 'in_flight': n}; NotFound for a missing task or another account's, Conflict
    for one that has ended."""
    task = AITaskLog.get_or_none((AITaskLog.task_id == task_id) & (AITaskLog.account == account_id))
    if task is None:
        raise NotFound("Task not found.")
    engine = engine_for(task_id)
    if task.state in ENDED or (task.state != "queued" and engine.summary()["unfinished"] == 0):
        raise Conflict(f"The task has ended ({task.state}); there is nothing to cancel.")
    with budget.call_gate(redis, account_id):
        with db.atomic():
            updated = (AITaskLog.update(canceled_at=utcnow())
                       .where((AITaskLog.task_id == task_id) & AITaskLog.canceled_at.is_null()).execute())
            if not updated:
                raise Conflict("The task is being canceled already.")
            released = Images.release_unstarted(account_id, task_id)
        in_flight = (Images.for_account(account_id)
                     .where((Images.task_id == task_id) & (Images.status == "generating")).count())
    _cancel_waiting_jobs(redis, task)
    engine.finish_if_last()  # nothing in flight: the task is `canceled` now
    progress_cache.forget(redis, task_id)
    log.info("task %s canceled: %d not started, %d in flight", task_id, len(released), in_flight)
    return {"not_started": len(released), "in_flight": in_flight}


def _cancel_waiting_jobs(redis, task: AITaskLog) -> None:
    """The jobs of the task that have not started, canceled in RQ: the parent (before its fan-out), the
    item jobs and the finisher. A job already running is left to end itself."""
    if redis is None:
        return
    job_ids = [task.task_id, *item_job_ids(task).values(), done_job_id(task.task_id)]
    try:
        jobs = Job.fetch_many(job_ids, connection=redis)
    except RedisError as exc:  # the database says canceled: each job finds that at the gate
        log.warning("task %s: its waiting jobs were not canceled in RQ, Redis is unreachable: %s", task.task_id, exc)
        return
    for job in jobs:
        if job is None:
            continue
        try:
            if job.get_status(refresh=False) in WAITING:
                job.cancel()
        except (InvalidJobOperation, NoSuchJobError):
            continue  # it started, ended or was canceled meanwhile
        except RedisError as exc:
            log.warning("job %s not canceled in RQ: %s", job.id, exc)
            return
