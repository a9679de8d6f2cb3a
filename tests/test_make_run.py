"""`make run`'s supervisor (scripts/run_dev.py): a child that exits is started again instead of taking
the whole service down, and Ctrl-C (SIGTERM here) still leaves no process behind."""

import os
import signal
import subprocess
import sys
import time

from config import load_config
from jobs.connection import redis_url
from tests.conftest import ROOT, _children, wait_for


def test_a_worker_that_dies_is_started_again_and_stopping_leaves_nothing(tmp_path, database, redis_conn):
    config = load_config()
    env = {**os.environ, "WORKERS": "1", "PORT": "0", "INSTANCE_PATH": str(tmp_path / "instance"),
           "DATABASE_URL": config.database_url, "REDIS_URL": redis_url(config), "RQ_QUEUE": "make-run-test"}
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        supervisor = subprocess.Popen([sys.executable, "scripts/run_dev.py"], cwd=ROOT, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: b"Ctrl-C stops" in log.read_bytes(), timeout=60, message="make run to start")
        workers = [pid for pid in _children(supervisor.pid) if b"worker.py" in _cmdline(pid)]
        assert len(workers) == 1
        group = [pid for pid in _all_pids() if _pgid(pid) == workers[0]]  # the worker and what it forked
        assert len(group) > 1
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: b"starting it again" in log.read_bytes(), timeout=30, message="the restart notice")
        wait_for(lambda: [p for p in _children(supervisor.pid) if b"worker.py" in _cmdline(p) and p != workers[0]],
                 timeout=30, message="a new worker")
        assert supervisor.poll() is None  # the service kept running
        wait_for(lambda: not [p for p in group if _alive(p)], timeout=10, message="the dead worker's forks to end")
    finally:
        started = _children(supervisor.pid)
        supervisor.send_signal(signal.SIGINT)
        supervisor.wait(timeout=60)
    time.sleep(0.5)
    assert not [pid for pid in started if os.path.exists(f"/proc/{pid}") and _alive(pid)], log.read_text()[-2000:]


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
