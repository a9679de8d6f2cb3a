"""The RQ worker (the Procfile's `worker`): runs the app's queue with the app's configuration.

Works on REDIS_URL or, when it is unset, the embedded Redis (started if no one runs it yet).
Scale with more worker processes (`heroku ps:scale worker=N`); each one takes one job at a time.
"""

import argparse
import gc
import logging
import os
import socket
import time

import redis
from rq import Worker
from rq.job import Job
from rq.registry import StartedJobRegistry

from config import load_config
from jobs import recovery, registry, runtime
from jobs.connection import get_redis, redis_label, redis_url
from jobs.engine import store_queue_name
from jobs.providers import http

# How often the worker heartbeats a running job. A job whose heartbeats stop (its worker was killed)
# is abandoned 60 s (RQ's grace) after the last one, and failed by the next sweep.
JOB_MONITORING_INTERVAL = 5


class ImageWorker(Worker):
    """RQ's forking worker, with SAVE jobs' work-horses at a lower CPU priority: decoding and
    encoding an image can wait a few milliseconds, a provider call whose slot just opened should not
    (on a 2-core machine several saves land at once when parallel calls end together). The
    work-horse is forked per job and exits after it, so the worker itself keeps its priority."""

    def __init__(self, *args, store_queue: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.store_queue = store_queue

    def main_work_horse(self, job, queue):
        runtime.in_work_horse = True
        if queue.name == self.store_queue:
            runtime.lower_priority()
        super().main_work_horse(job, queue)

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        try:
            recovery.sweep_if_due(self.queues[-1])  # the main queue (the store queue is swept with it)
        except Exception:
            self.log.exception("Worker %s: the sweep failed; the next maintenance tries again", self.name)

    def maintain_heartbeats(self, *args, **kwargs):
        # RQ lets a lost Redis escape from here while a work-horse runs, ending the worker; the horse
        # goes on (its image is recorded in the database), and the heartbeat resumes with Redis.
        try:
            super().maintain_heartbeats(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self.log.warning("Worker %s: heartbeat missed, Redis is unreachable: %s", self.name, exc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="Stop when the queue is empty.")
    parser.add_argument("--name", default=None, help="Worker name (default: host.pid).")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("worker")
    config = load_config()
    runtime.ensure_database(config)
    # Import the job entry points and every AI function once, before the first fork: each work-horse
    # then starts with warm modules instead of paying the imports (~35 ms) on every job.
    import jobs.tasks  # noqa: F401

    registry.preload_all()
    http.warm_up()
    # Move what is loaded so far out of the garbage collector's sight: a work-horse's collections then
    # do not walk (and so copy, page by page) the memory it shares with the worker after fork().
    gc.freeze()
    connection = get_redis(config)
    log.info(
        "worker on queue %r, %s, database %s", config.queue_name, redis_label(redis_url(config)),
        config.database_label,
    )
    name = args.name or f"{socket.gethostname()}.{os.getpid()}"
    restarts, lost = 0, None
    while True:
        worker = ImageWorker(
            # SAVE jobs first: they are short, and a stored image is what staff wait for.
            [store_queue_name(config.queue_name), config.queue_name],
            store_queue=store_queue_name(config.queue_name),
            connection=connection,
            # A new registration after a lost Redis: the old one may still be listed until it expires.
            name=name if not restarts else f"{name}.{restarts}",
            job_monitoring_interval=JOB_MONITORING_INTERVAL,
            work_horse_killed_handler=recovery.horse_killed,
            # Maintenance (RQ's registry cleanup, then the sweep) every SWEEP_INTERVAL; an idle worker
            # wakes from its wait for a job every worker_ttl − 15 s to do it.
            maintenance_interval=recovery.SWEEP_INTERVAL,
            worker_ttl=recovery.SWEEP_INTERVAL + 15,
        )
        if lost is not None:
            _end_jobs_left_started(worker, lost)
        try:
            worker.work(burst=args.burst, with_scheduler=True)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # Ride out an outage instead of exiting: wait for Redis, then work on.
            restarts, lost = restarts + 1, worker.name
            log.warning("Redis was lost (%s); reconnecting", exc)
            _wait_for_redis(connection)


def _end_jobs_left_started(worker, lost_name: str) -> None:
    """A job whose end could not be recorded while Redis was gone (its work-horse has exited) is failed
    in RQ now, as RQ would have done: its dependents go on and its provider slot is freed. What the
    image became is already in the database."""
    for queue in worker.queues:
        registry = StartedJobRegistry(queue=queue)
        for job in Job.fetch_many(registry.get_job_ids(cleanup=False), connection=worker.connection):
            if job is not None and job.worker_name == lost_name:
                worker.handle_job_failure(job, queue, exc_string="The worker lost Redis while this job ran; "
                                                                 "its image's outcome is in the database.")
    # Recording those failures wrote this worker's key before its birth, which RQ would take for a
    # second worker of the same name.
    worker.connection.delete(worker.key)


def _wait_for_redis(connection, *, first_wait: float = 0.5, longest_wait: float = 30.0) -> None:
    wait = first_wait
    while True:
        time.sleep(wait)
        try:
            connection.ping()
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            wait = min(wait * 2, longest_wait)


if __name__ == "__main__":
    main()
