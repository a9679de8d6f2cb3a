"""Real services for every test: the database and Redis from DATABASE_URL / REDIS_URL, or the
embedded defaults (a SQLite file, the embedded Redis) when they are unset — never a fake.

A service that is configured but unreachable makes the tests fail, never skip.
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def procfile() -> dict:
    """The Procfile's process types and their commands (comment lines skipped, as Heroku does)."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict((name.strip(), command.strip()) for name, command in
                (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#")))


_SESSION_DIR = Path(tempfile.mkdtemp(prefix="imggen-tests-"))
# Before any app module reads the environment: the tests' own instance folder.
os.environ["INSTANCE_PATH"] = str(_SESSION_DIR / "instance")
os.environ.setdefault("MEDIA_ROOT", str(_SESSION_DIR / "media"))
# The fake providers listen on loopback, which the outbound guard refuses unless the operator allows it
# (as a deployment with a self-hosted server on its own network would); workers inherit this.
os.environ["OUTBOUND_ALLOW"] = "127.0.0.1"
# One worker per `python worker.py`, as before the pool: tests that want N parallel workers start N
# processes, and a test of the pool asks for one (WorkerProcess(concurrency=N)).
os.environ["WORKER_CONCURRENCY"] = "1"

from config import load_config  # noqa: E402
from jobs.connection import get_queue, get_redis, redis_label  # noqa: E402
from models import ALL_MODELS, db, open_database  # noqa: E402
from tests.browser_fixtures import chromium, live_server  # noqa: E402, F401 - fixtures for every test
from tests.fakes.fixtures import fake_compatible, fake_openai, fake_runware  # noqa: E402, F401 - fixtures for every test


def pytest_report_header(config):
    cfg = load_config()
    redis = redis_label(cfg.redis_url) if cfg.redis_url else f"embedded Redis ({cfg.embedded_redis_socket})"
    return [f"database: {cfg.database_url.split('@')[-1]} | redis: {redis}"]


def pytest_terminal_summary(terminalreporter):
    from tests import ledger

    if ledger.faults or ledger.bad_inputs:
        terminalreporter.section("fault and abuse summary")
        for line in ledger.table():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def service_config():
    return load_config()


@pytest.fixture(scope="session")
def database(service_config):
    import schema

    database = open_database(service_config.database_url)
    database.connect(reuse_if_open=True)
    # A clean schema for the session: drop what an earlier run left, then migrate from zero.
    database.drop_tables([schema.SchemaVersion, *ALL_MODELS], safe=True, cascade=True) if _is_pg(database) \
        else database.drop_tables([schema.SchemaVersion, *ALL_MODELS], safe=True)
    schema.upgrade()
    database.close()
    yield database


def _is_pg(database) -> bool:
    return "postgres" in type(database).__name__.lower()


@pytest.fixture(scope="session")
def redis_conn(service_config):
    connection = get_redis(service_config)
    connection.ping()
    yield connection
    if not service_config.redis_url:
        # The server drops the connection as it exits, which redis-py reports as an error.
        with contextlib.suppress(Exception):
            connection.shutdown(nosave=True)


@pytest.fixture(autouse=True)
def clean_state(request, database):
    """Each test starts with empty tables and an empty queue."""
    database.connect(reuse_if_open=True)
    tables = [m._meta.table_name for m in reversed(ALL_MODELS)]
    if _is_pg(database):
        quoted = ", ".join(f'"{t}"' for t in tables)
        database.execute_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
    else:
        for table in tables:
            database.execute_sql(f'DELETE FROM "{table}"')
    if "redis_conn" in request.fixturenames or "worker" in request.fixturenames:
        connection = request.getfixturevalue("redis_conn")
        get_queue().empty()
        # The app's keys, and RQ's rate-limit registries: account ids restart in every test, so a slot a
        # previous test's job still holds would otherwise hold this test's images back.
        for pattern in ("imggen:*", "rq:rl:*"):
            for key in connection.scan_iter(pattern):
                connection.delete(key)
        connection.delete("rq:rl-keys")
    yield
    if not db.is_closed():
        db.close()


@pytest.fixture
def app(database):
    from webapp import create_app

    app = create_app({"TESTING": True})
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Personas:
    """An owner (the manager) and an admin in account A, a staff member of A, an outsider in account B
    (with their passwords)."""

    password = "correct horse battery"

    def __init__(self):
        from webapp import accounts

        self.owner = accounts.create_user("owner@a.test", self.password, account_name="A", role="manager")
        self.admin = accounts.create_user("admin@a.test", self.password, account_name="A", is_admin=True,
                                          role="manager")
        self.staff = accounts.create_user("staff@a.test", self.password, account_name="A", role="staff")
        self.outsider = accounts.create_user("outsider@b.test", self.password, account_name="B", role="manager")


@pytest.fixture
def personas(app):
    with db.connection_context():
        return Personas()


def csrf_token(client) -> str:
    client.get("/login")
    with client.session_transaction() as session:
        return session["csrf_token"]


def login(client, user, password=Personas.password):
    token = csrf_token(client)
    response = client.post("/login", data={"email": user.email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.data
    return csrf_token(client)


def _children(pid: int) -> list[int]:
    """The ids of a process's children (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in task.read_text().split()]
    return found


class WorkerProcess:
    """`python worker.py` as the Procfile runs it, on the tests' database and Redis: one worker, or with
    `concurrency` a pool of that many (the dyno's default when `concurrency="default"`)."""

    def __init__(self, name="test", extra_env=None, concurrency=None):
        env = {**os.environ, **(extra_env or {})}
        if concurrency == "default":
            env.pop("WORKER_CONCURRENCY", None)
        elif concurrency is not None:
            env["WORKER_CONCURRENCY"] = str(concurrency)
        self.log = _SESSION_DIR / f"worker-{name}-{time.time_ns()}.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.name = f"{name}-{time.time_ns()}"
        self.process = subprocess.Popen([sys.executable, "worker.py", "--name", self.name],
                                        cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def stop(self):
        """End the worker and everything it started, now (a test's teardown; no job needs finishing)."""
        # RQ puts each work-horse in a process group of its own: a horse waiting for a provider slot
        # would outlive its worker (and a warm shutdown would wait for it), then stand in the next
        # test's line. End them first.
        for pid in self.horse_pids() if self.process.poll() is None else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # A worker killed by a test leaves its RQ scheduler (and a pool its workers) behind; they share
        # the first process' group, so end the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._fh.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> list[int]:
        """This process and every process under it: a pool's workers, the scheduler, work-horses."""
        from jobs.worker_pool import process_tree

        return process_tree(self.process.pid) if self.process.poll() is None else []

    def worker_pids(self) -> list[int]:
        """A pool's worker processes (without a pool: none)."""
        return _children(self.process.pid) if self.process.poll() is None else []

    def horse_pids(self) -> list[int]:
        """The work-horses running jobs now: RQ forks each into a process group of its own, which tells
        it from a worker's other child, its scheduler."""
        found = []
        for pid in self.pids()[1:]:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) == pid:
                    found.append(pid)
        return found

    def horse_pid(self) -> int | None:
        """The work-horse running this worker's current job (with a pool, one of them)."""
        horses = self.horse_pids()
        return horses[0] if horses else None

    def signal_all(self, sig) -> list[int]:
        """`sig` to every process of this dyno at once, as Heroku stops one; the pids signalled."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids


@pytest.fixture
def own_queue(monkeypatch, redis_conn):
    """A queue of this test's own, so only the workers it starts (not the session's) take its jobs."""
    name = f"test-{time.time_ns()}"
    monkeypatch.setenv("RQ_QUEUE", name)
    return name


@pytest.fixture(scope="session")
def session_worker(redis_conn, database):
    worker = WorkerProcess("session")
    yield worker
    worker.stop()


@pytest.fixture
def worker(session_worker, clean_state):
    assert session_worker.process.poll() is None, session_worker.output()[-3000:]
    return session_worker


def wait_for(predicate, timeout=30.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
