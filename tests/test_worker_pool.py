"""One dyno, sized by the work: one `python worker.py` runs WORKER_CONCURRENCY worker processes (RQ's
WorkerPool), with one RQ scheduler among them, and weighs less than a 512 MB dyno while it works."""

import datetime as dt
import os
import signal
from collections import Counter

import pytest
from rq import Queue, Worker
from rq.job import Job

from jobs.worker_pool import dyno_memory
from tests import factories
from tests.api_helpers import ApiClient
from tests.conftest import WorkerProcess, wait_for
from tests.flow import generate, new_article, use_provider, wait_done
from worker import DEFAULT_CONCURRENCY

pytestmark = pytest.mark.worker

DYNO_MEMORY = 512 * 2**20  # a standard-1X / basic dyno


@pytest.fixture
def api(client, personas, redis_conn, own_queue):
    """Every test here starts its own workers on its own queue."""
    return ApiClient(client, personas.owner)


def pool_workers(redis_conn, own_queue, pool) -> list[Worker]:
    return [w for w in Worker.all(queue=Queue(own_queue, connection=redis_conn)) if w.name.startswith(pool.name)]


def schedulers(redis_conn, own_queue) -> list[dict]:
    """RQ's live schedulers that serve this test's queue (each keeps a hash while it runs)."""
    found = []
    for key in redis_conn.scan_iter("rq:scheduler:*"):
        entry = {k.decode(): v.decode() for k, v in redis_conn.hgetall(key).items()}
        if own_queue in entry.get("queues", "").split(","):
            found.append(entry)
    return found


def test_one_process_takes_as_many_jobs_at_once_as_its_concurrency(api, fake_openai, redis_conn, own_queue):
    use_provider(api, "openai", "gpt-image-2", fake_openai, max_concurrent_calls=3)
    fake_openai.set_load(latency=2.0, max_concurrent=3)
    ids = new_article(("Pool one", "Pool two", "Pool three"))
    pool = WorkerProcess("pool-of-3", concurrency=3)
    try:
        wait_for(lambda: len(pool_workers(redis_conn, own_queue, pool)) == 3, message="three workers")
        assert len(pool.worker_pids()) == 3  # all under the one process
        final = wait_done(api, generate(api, ids), timeout=60)
    finally:
        pool.stop()
    assert final["totals"]["generated"] == 3
    assert fake_openai.load.peak == 3 and fake_openai.call_count == 3  # the three calls ran at once
    assert all(image.status == "generated" for image in factories.images(ids))


def test_the_pool_runs_one_scheduler_and_replaces_a_dead_worker(redis_conn, own_queue, database):
    pool = WorkerProcess("pool-scheduler", concurrency=3)
    try:
        wait_for(lambda: len(pool_workers(redis_conn, own_queue, pool)) == 3, message="three workers")
        found = wait_for(lambda: schedulers(redis_conn, own_queue), message="the scheduler")
        assert len(found) == 1 and int(found[0]["pid"]) in pool.pids()
        assert pool.output().count("Scheduler for") == 1  # started once, by one worker of the three
        # It works: a job due in a second is enqueued by it and run by the pool.
        queue = Queue(own_queue, connection=redis_conn)
        later = queue.enqueue_in(dt.timedelta(seconds=1), "tests.job_helpers.add", 2, 3)
        wait_for(lambda: Job.fetch(later.id, connection=redis_conn).get_status() == "finished", timeout=15,
                 message="the scheduled job")

        # A worker that dies (here not the scheduler's) is started again, under a new name.
        scheduler_pid = int(found[0]["pid"])
        lead = next(pid for pid in pool.worker_pids() if scheduler_pid in _children_of(pid))
        doomed = next(pid for pid in pool.worker_pids() if pid != lead)
        os.kill(doomed, signal.SIGKILL)
        wait_for(lambda: f"started worker {pool.name}.4" in pool.output(), timeout=10, message="a new worker")
        assert doomed not in pool.worker_pids() and len(pool.worker_pids()) == 3
        again = queue.enqueue("tests.job_helpers.add", 20, 22)
        wait_for(lambda: Job.fetch(again.id, connection=redis_conn).get_status() == "finished", message="a job")
        assert len(schedulers(redis_conn, own_queue)) == 1 and pool.output().count("Scheduler for") == 1
    finally:
        pool.stop()


def test_one_dyno_at_the_default_concurrency_with_four_calls_at_once_stays_under_512_mb(api, fake_openai,
                                                                                         own_queue):
    use_provider(api, "openai", "gpt-image-2", fake_openai, max_concurrent_calls=4)
    fake_openai.set_load(latency=3.0, max_concurrent=4)
    ids = [i for n in range(2) for i in new_article(tuple(f"Memory {n}.{k}" for k in range(4)))]
    pool = WorkerProcess("pool-memory", concurrency="default")
    try:
        wait_for(lambda: len(pool.worker_pids()) >= 1, message="the pool")
        task_id = generate(api, ids)
        # The heaviest moment: every worker up, four work-horses in their calls.
        wait_for(lambda: len(pool.horse_pids()) >= 4, timeout=30, message="four calls at once")
        peak, horses = max(((dyno_memory(pool.process.pid), set(pool.horse_pids())) for _ in range(20)),
                           key=lambda sample: sample[0].pss)
        final = wait_done(api, task_id, timeout=60)
    finally:
        pool.stop()
    print(f"\ndyno at the default WORKER_CONCURRENCY, 4 calls at once: {peak}")
    roles = {p.pid: role(p, pool.process.pid, horses) for p in peak.processes}
    for process in peak.processes:
        print(f"  {roles[process.pid]:<9} pid {process.pid:>7}  RSS {process.rss / 2**20:5.1f} MB  "
              f"PSS {process.pss / 2**20:5.1f} MB (anonymous {process.pss_anon / 2**20:5.1f} MB)")
    assert final["totals"]["generated"] == 8
    counts = Counter(roles.values())
    assert (counts["pool"], counts["worker"], counts["scheduler"]) == (1, DEFAULT_CONCURRENCY, 1)
    assert counts["horse"] >= 4
    assert peak.pss < DYNO_MEMORY


def role(process, root: int, horses: set) -> str:
    if process.pid == root:
        return "pool"
    if process.ppid == root:
        return "worker"
    return "horse" if process.pid in horses else "scheduler"


def _children_of(pid: int) -> list[int]:
    from tests.conftest import _children

    return _children(pid)
