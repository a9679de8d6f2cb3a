"""The sweeper's own duties, on a real Redis."""

from rq import Queue
from rq.job import Dependency
from rq.registry import ReadyJobRegistry

from jobs.sweep import push_ready_dependents, release_ready_jobs, sweep_once
from models import db


def test_a_dependent_left_ready_by_a_lost_race_is_pushed_to_the_queue(redis_conn, own_queue):
    queue = Queue(own_queue, connection=redis_conn)
    first = queue.enqueue("tests.job_helpers.add", 1, 1)
    second = queue.enqueue("tests.job_helpers.add", 2, 2, depends_on=Dependency(jobs=[first], allow_failure=True))
    assert second.get_status() == "deferred" and queue.count == 1
    # What RQ does when the first finishes but its WATCHed enqueue of the dependent loses a race:
    # the dependent is marked ready and left in the ready registry.
    with redis_conn.pipeline() as pipe:
        ReadyJobRegistry(queue=queue).register_jobs([second], pipeline=pipe)
        pipe.execute()
    assert second.get_status() == "ready_to_enqueue" and second.id not in queue.job_ids
    assert release_ready_jobs(queue) == 1
    assert second.id in queue.job_ids and second.get_status() == "queued"


def test_the_worker_pushes_a_conceded_dependent_at_once(redis_conn, own_queue):
    queue = Queue(own_queue, connection=redis_conn)
    first = queue.enqueue("tests.job_helpers.add", 1, 1)
    second = queue.enqueue("tests.job_helpers.add", 2, 2, depends_on=Dependency(jobs=[first], allow_failure=True))
    other = queue.enqueue("tests.job_helpers.add", 3, 3)
    with redis_conn.pipeline() as pipe:
        ReadyJobRegistry(queue=queue).register_jobs([second], pipeline=pipe)
        pipe.execute()
    # only the ids it is given, and only those still waiting in the ready registry
    assert push_ready_dependents(queue, [second.id, other.id]) == 1
    assert second.get_status() == "queued" and queue.job_ids.count(second.id) == 1
    assert push_ready_dependents(queue, [second.id]) == 0


def test_workers_of_another_queue_do_not_take_this_queues_sweep(redis_conn, own_queue, database):
    # One sweep at a time per queue: a worker of another queue sharing the Redis (here, the tests'
    # session worker) once held a global lock, and this queue's lost images waited for a sweep.
    mine, other = Queue(own_queue, connection=redis_conn), Queue(f"{own_queue}-other", connection=redis_conn)
    with db.connection_context():
        assert "skipped" not in sweep_once(other)
        assert "skipped" not in sweep_once(mine)
        assert sweep_once(mine) == {"skipped": True}  # its own next pass waits for the interval
