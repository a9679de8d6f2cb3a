"""The Procfile's worker line picks up jobs from the app's queue."""

import os
import subprocess
import sys

from rq import Queue
from rq.job import Job

from jobs import runtime
from jobs.connection import get_queue
from jobs.engine import store_queue_name
from tests.conftest import ROOT, procfile, wait_for


def test_procfile_lines_name_the_real_entry_points():
    lines = procfile()
    assert lines["worker"] == "python worker.py"
    assert "init-db" in lines["release"]
    assert "webapp:create_app()" in lines["web"]


def test_worker_picks_up_a_job(worker, redis_conn):
    job = get_queue().enqueue("tests.job_helpers.add", 20, 22)
    finished = wait_for(lambda: Job.fetch(job.id, connection=redis_conn).get_status() == "finished",
                        message="the job to finish")
    assert finished
    assert Job.fetch(job.id, connection=redis_conn).return_value() == 42


def test_burst_worker_drains_the_queue_and_exits(redis_conn, database):
    job = get_queue().enqueue("tests.job_helpers.add", 1, 1)
    done = subprocess.run([sys.executable, "worker.py", "--burst"], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Job.fetch(job.id, connection=redis_conn).return_value() == 2


def test_saves_and_lowered_jobs_yield_the_cores_but_the_worker_keeps_its_priority(worker, redis_conn):
    queue = get_queue()
    store = Queue(store_queue_name(queue.name), connection=redis_conn)
    saving = store.enqueue("tests.job_helpers.niceness")
    lowered = queue.enqueue("tests.job_helpers.niceness_after_lowering", 5)
    calling = queue.enqueue("tests.job_helpers.niceness")  # after both, in the same worker
    for job in (saving, lowered, calling):
        wait_for(lambda job=job: Job.fetch(job.id, connection=redis_conn).get_status() == "finished",
                 message="the job to finish")
    base = os.nice(0)
    assert Job.fetch(saving.id, connection=redis_conn).return_value() == base + runtime.YIELD_NICENESS
    assert Job.fetch(lowered.id, connection=redis_conn).return_value() == base + 5
    assert Job.fetch(calling.id, connection=redis_conn).return_value() == base  # each job's own process
    # Inline (tests, the CLI) nothing is lowered.
    runtime.lower_priority(5)
    assert os.nice(0) == base
