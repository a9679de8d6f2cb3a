"""Heroku-style: with only DATABASE_URL, REDIS_URL and SECRET_KEY set, the Procfile's release,
web and worker lines start and serve."""

import os
import shlex
import signal
import socket
import subprocess

import requests
from rq.job import Job

from config import load_config
from jobs.connection import get_queue, redis_url
from tests.conftest import ROOT, procfile, wait_for


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_release_web_and_worker_start_and_serve(tmp_path, redis_conn, database):
    config = load_config()
    port = _free_port()
    env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        "DATABASE_URL": config.database_url,
        "REDIS_URL": redis_url(config),
        "SECRET_KEY": "procfile-test-secret",
        "PORT": str(port),
        "HOME": str(tmp_path),
        "INSTANCE_PATH": str(tmp_path / "instance"),  # a dyno's throwaway disk
    }
    lines = procfile()

    release = subprocess.run(["bash", "-c", lines["release"]], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert release.returncode == 0, release.stderr.decode()[-2000:]

    processes = [subprocess.Popen(["bash", "-c", "exec " + lines[name]], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
                 for name in ("web", "worker")]
    try:
        def healthy():
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
            except requests.RequestException:  # refused while booting, or slow to answer under load
                return False

        wait_for(healthy, timeout=30, message="gunicorn to serve /healthz")
        login_page = requests.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert login_page.status_code == 200 and "Log in" in login_page.text

        job = get_queue().enqueue("tests.job_helpers.add", 2, 3)
        wait_for(lambda: Job.fetch(job.id, connection=redis_conn).get_status() == "finished", timeout=30,
                 message="the Procfile worker to run a job")
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    assert shlex.split(lines["worker"]) == ["python", "worker.py"]
