"""The RQ workers of one dyno (the Procfile's `worker`): the app's queue with the app's configuration.

`python worker.py` runs WORKER_CONCURRENCY worker processes (jobs.worker_pool: RQ's WorkerPool), each
taking one job at a time, with one RQ scheduler among them; WORKER_CONCURRENCY=1 makes this process the
worker itself. Works on REDIS_URL or, when it is unset, the embedded Redis (started if no one runs it
yet). Scale with WORKER_CONCURRENCY first, then with dynos (`heroku ps:scale worker=N`).

On SIGTERM (Heroku sends it to every process of the dyno on each deploy and daily restart, and SIGKILL
30 s later) no worker takes a new job, a running job has SHUTDOWN_GRACE seconds to finish, and then RQ's
HerokuWorker raises ShutDownImminentException in it, so that it ends (or hands itself back to the
queue) before the SIGKILL.
"""

import argparse
import gc
import logging
import os
import signal
import socket
import time

import redis
from rq.exceptions import ShutDownImminentException, StopRequested
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.worker import HerokuWorker, WorkerStatus

from config import load_config
from jobs import recovery, registry, runtime
from jobs.connection import get_redis, redis_label, redis_url
from jobs.engine import store_queue_name
from jobs.providers import http
from jobs.runtime import defer_shutdown
from jobs.worker_pool import ImagePool

# Work processes per dyno. An account at C calls at once keeps C processes calling; when a round of calls
# answers, its C saves are taken first (the store queue), so the next round's calls start at once only if
# C more processes are free, and one more serves parents and finishers: 2·C + 1. At the default limits
# (C = 1) that is 3; 9 serves an account at C = 4 (the benchmark's parallel row) or three at the default.
# Each process weighs 10–15 MB of a dyno's memory (PSS), each running job as much again: at 9 with four
# calls and their saves, about 250 MB of a 512 MB dyno (tests/test_worker_pool.py prints it). More
# accounts at once: raise it, or add dynos.
DEFAULT_CONCURRENCY = 9
# Seconds a running job may go on after SIGTERM before it is interrupted. Heroku's SIGKILL comes 30 s
# after the SIGTERM: 20 lets most calls in flight (10–40 s) answer and be recorded, and leaves 10 s for an
# interrupted job to record where it got to and for the processes to exit. RQ's HerokuWorker gives 6.
SHUTDOWN_GRACE = int(os.environ.get("WORKER_SHUTDOWN_GRACE", "20"))
# The signals that stop a worker, or time its work-horse's monitoring: for its main thread only.
MAIN_THREAD_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGALRM}

# How often the worker heartbeats a running job. A job whose heartbeats stop (its worker was killed)
# is abandoned 60 s (RQ's grace) after the last one, and failed by the next sweep.
JOB_MONITORING_INTERVAL = 5


class ImageWorker(HerokuWorker):
    """RQ's forking worker with Heroku's shutdown (HerokuWorker: the work-horse ignores SIGTERM, and on
    the worker's SIGTERM gets `imminent_shutdown_delay` seconds before ShutDownImminentException), except
    inside a job's `uninterrupted()` steps (jobs.runtime), where that exception waits for their end.

    SAVE jobs' work-horses run at a lower CPU priority: decoding and encoding an image can wait a few
    milliseconds, a provider call whose slot just opened should not (on a 2-core machine several saves
    land at once when parallel calls end together). The work-horse is forked per job and exits after
    it, so the worker itself keeps its priority."""

    imminent_shutdown_delay = SHUTDOWN_GRACE

    def __init__(self, *args, store_queue: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.store_queue = store_queue
        self._in_maintenance = False

    def main_work_horse(self, job, queue):
        runtime.in_work_horse = True
        if queue.name == self.store_queue:
            runtime.lower_priority()
        super().main_work_horse(job, queue)

    def subscribe(self):
        # RQ listens for commands in a thread of the worker. A signal the kernel hands to that thread
        # (it does when two come at once, as Heroku's SIGTERM to every process and the pool's SIGINT
        # do) reaches Python only when the main thread next wakes: an idle worker noticed its SIGTERM
        # up to a dequeue timeout (15 s) late, 1 time in 3. Started with them blocked, the thread
        # leaves every such signal to the main thread.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
        try:
            super().subscribe()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def request_force_stop_sigrtmin(self, signum, frame):
        try:
            super().request_force_stop_sigrtmin(signum, frame)
        except ShutDownImminentException as exc:
            if not defer_shutdown(exc):
                raise
            self.log.warning("Worker %s: the job is in steps that must not be cut; interrupting it after them",
                             self.name)

    def run_maintenance_tasks(self):
        self._in_maintenance = True
        try:
            super().run_maintenance_tasks()
            try:
                recovery.sweep_if_due(self.queues[-1])  # the main queue (the store queue is swept with it)
            except Exception:
                self.log.exception("Worker %s: the sweep failed; the next maintenance tries again", self.name)
        finally:
            self._in_maintenance = False
        if self._stop_requested:
            raise StopRequested()  # a stop that came meanwhile: out of the work loop now

    def _shutdown(self):
        # An idle worker stops by raising StopRequested from its signal handler, wherever the worker is.
        # In maintenance (RQ's cleanup, failure callbacks, the sweep's database work) the code it lands in
        # may catch it — the sweep's own error handler did, and the worker worked on, SIGTERM forgotten —
        # so there it is only noted, and raised when maintenance is done.
        if self._in_maintenance and self.get_state() != WorkerStatus.BUSY:
            self._stop_requested = True
            return
        super()._shutdown()

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
    parser.add_argument("--name", default=None, help="Worker name (default: host.pid; in a pool, name.N).")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("worker")
    concurrency = worker_concurrency()
    config = load_config()
    runtime.ensure_database(config)
    # Import the job entry points and every AI function once, before the first fork: each work-horse
    # (and each worker of a pool) then starts with warm modules instead of paying the imports (~35 ms)
    # on every job, and a pool's workers share those pages with this process.
    import jobs.tasks  # noqa: F401

    registry.preload_all()
    http.warm_up()
    # Move what is loaded so far out of the garbage collector's sight: a work-horse's collections then
    # do not walk (and so copy, page by page) the memory it shares with the worker after fork().
    gc.freeze()
    connection = get_redis(config)  # and the embedded Redis started, once, before any fork
    log.info(
        "%s on queue %r, %s, database %s",
        "worker" if concurrency == 1 else f"pool of {concurrency} workers", config.queue_name,
        redis_label(redis_url(config)), config.database_label,
    )
    name = args.name or f"{socket.gethostname()}.{os.getpid()}"

    def work(name, *, with_scheduler=True, burst=args.burst):
        run_worker(config, name, connection=get_redis(config), burst=burst, with_scheduler=with_scheduler)

    if concurrency == 1:
        work(name)
        return
    queues = [store_queue_name(config.queue_name), config.queue_name]
    ImagePool(queues, connection, concurrency, run=work, name=name).start(burst=args.burst)


def worker_concurrency() -> int:
    value = os.environ.get("WORKER_CONCURRENCY", "").strip() or str(DEFAULT_CONCURRENCY)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"WORKER_CONCURRENCY must be a whole number of processes, 1 or more (got {value!r})")
    return int(value)


def run_worker(config, name: str, *, connection, burst: bool, with_scheduler: bool) -> None:
    """One worker process' life: take jobs until stopped, riding out a lost Redis."""
    log = logging.getLogger("worker")
    restarts, lost = 0, None
    while True:
        try:
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
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # Redis is down as the worker starts (a pool would otherwise start it again every second).
            log.warning("Redis is unreachable (%s); waiting for it", exc)
            _wait_for_redis(connection)
            continue
        if lost is not None:
            _end_jobs_left_started(worker, lost)
        try:
            worker.work(burst=burst, with_scheduler=with_scheduler)
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
