"""The Procfile's worker line picks up jobs from the app's queue."""

import os
import subprocess
import sys

from rq.job import Job

from jobs.connection import get_queue
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
