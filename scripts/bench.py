"""Throughput under provider limits: `make bench` (or `python scripts/bench.py`).

Runs the real service — gunicorn serving the app, RQ worker processes, Redis (REDIS_URL or the
embedded one), the database (DATABASE_URL or a throwaway SQLite file) — against the fake OpenAI
server with a load model (latency L, concurrency cap C, calls per minute R, 429 + retry-after beyond
them), and prints one table of ratios and medians measured in this run. Not a test: no thresholds.
"""

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="bench-"))
os.environ["INSTANCE_PATH"] = str(WORK / "instance")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{WORK / 'bench.sqlite3'}")
os.environ["MEDIA_ROOT"] = str(WORK / "media")
os.environ["RQ_QUEUE"] = "bench"
os.environ["OUTBOUND_ALLOW"] = "127.0.0.1"  # the fake provider listens on loopback
# One worker dyno: one `python worker.py`, a pool of WORKER_CONCURRENCY processes (its default unless set).
CONCURRENCY = os.environ.get("WORKER_CONCURRENCY", "")
VERBOSE = bool(os.environ.get("BENCH_VERBOSE"))
ONLY = os.environ.get("BENCH_ONLY")  # "viewers": only the pollers' figures (while tuning them)
# As often as the progress panel asks; end times come from the database, so polling adds no lag.
POLL_SECONDS = 0.5

from rq.job import Job  # noqa: E402

import schema  # noqa: E402
from jobs.connection import get_queue, get_redis, redis_url  # noqa: E402
from jobs.engine import item_job_ids  # noqa: E402
from jobs.providers.catalog import PLACEMENT_PRESETS, models_for  # noqa: E402
from jobs.worker_pool import dyno_memory  # noqa: E402
from models import AITaskLog, db, open_database  # noqa: E402
from tests.fakes.images import photo_sized, prepare_images  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402
from webapp import accounts  # noqa: E402


class Finished(Exception):
    """The scenarios BENCH_ONLY asked for have run."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """gunicorn + workers as the Procfile runs them, on this benchmark's database and Redis."""

    def __init__(self):
        self.env = {**os.environ, "REDIS_URL": redis_url()}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", "init-db"], cwd=ROOT, env=self.env,
                       check=True, capture_output=True)
        self.procs = [subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-b", f"127.0.0.1:{self.port}", "-w", "2",
             "--threads", "8", "webapp:create_app()"], cwd=ROOT, env=self.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        self.dyno = subprocess.Popen([sys.executable, "worker.py", "--name", f"bench-{os.getpid()}"], cwd=ROOT,
                                     env=self.env, start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.procs.append(self.dyno)
        self.heaviest = None
        self._sampling = threading.Event()
        threading.Thread(target=self._sample_memory, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self._healthy():
            if time.monotonic() > deadline:
                self.stop()  # leave no process behind
                raise RuntimeError("the web server did not start within 30 s")
            time.sleep(0.2)
        time.sleep(2)  # workers register

    def _sample_memory(self):
        """The worker dyno at its heaviest, sampled every 0.2 s (PSS: each page shared after fork once)."""
        while not self._sampling.wait(0.2):
            with contextlib.suppress(Exception):
                now = dyno_memory(self.dyno.pid)
                if self.heaviest is None or now.pss > self.heaviest.pss:
                    self.heaviest = now

    def _healthy(self) -> bool:
        try:
            return requests.get(self.base + "/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self):
        self._sampling.set()
        for p in self.procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


class Account:
    def __init__(self, service, name, fake, *, max_concurrent, per_minute=None, image_format="webp"):
        with db.connection_context():
            user = accounts.create_user(f"{name}@bench.test", "bench-password", account_name=name,
                                        role="manager")
            self.token = accounts.create_token(user)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.base = service.base
        answer = self.http.put(self.base + "/v1/system/settings/integrations/image_generation/", json={
            "provider": "openai", "model": "gpt-image-2", "api_key": fake.api_key, "base_url": fake.base_url,
            "image_format": image_format, "max_in_article_images": 4, "max_concurrent_calls": max_concurrent or "",
            "calls_per_minute": per_minute or ""})
        answer.raise_for_status()

    def images(self, n: int) -> list[int]:
        ids = []
        for article in range((n + 4) // 5):
            count = min(5, n - len(ids))
            body = {"title": f"Bench article {article}", "images": [
                {"image_type": "featured" if k == 0 else "in_article", "position": k, "prompt": f"Scene {article}.{k}"}
                for k in range(count)]}
            answer = self.http.post(self.base + "/v1/writer/content/", json=body)
            answer.raise_for_status()
            ids += [i["id"] for i in answer.json()["images"]]
        return ids

    def generate(self, ids) -> str:
        answer = self.http.post(self.base + "/v1/writer/images/generate_images/", json={"ids": ids})
        answer.raise_for_status()
        return answer.json()["task_id"]

    def wait(self, task_id, timeout=600) -> dict:
        deadline = time.monotonic() + timeout
        shown = None
        while time.monotonic() < deadline:
            view = self.http.get(f"{self.base}/v1/system/task_progress/{task_id}/").json()
            if view["state"] in ("done", "failed"):
                return view
            if VERBOSE and (line := f"{view['state']} {view['message']} {view['totals']}") != shown:
                print(f"  {time.strftime('%X')} {line}", flush=True)
                shown = line
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"task {task_id} did not end in {timeout} s")


def run(account, fake, n) -> tuple[float, dict, str]:
    ids = account.images(n)
    started, posted_at = time.monotonic(), time.time()
    task_id = account.generate(ids)
    view = account.wait(task_id)
    wall = took(task_id, posted_at, time.monotonic() - started)
    starts = sorted(call.at for call in fake.calls if call.at >= posted_at)
    if VERBOSE and starts:
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        print(f"  request → first call {(starts[0] - posted_at) * 1000:.0f} ms; last call start → done "
              f"{(posted_at + wall - starts[-1]) * 1000:.0f} ms; call starts {len(starts)}, "
              f"median gap {statistics.median(gaps) * 1000 if gaps else 0:.0f} ms", flush=True)
        print("  call starts (ms): " + " ".join(f"{(at - posted_at) * 1000:.0f}" for at in starts), flush=True)
        redis = get_redis()
        parent = Job.fetch(task_id, connection=redis)
        with db.connection_context():
            first_job = next(iter(item_job_ids(AITaskLog.get(AITaskLog.task_id == task_id)).values()))
        first = Job.fetch(first_job, connection=redis)
        print("  start (ms after the request): " + ", ".join(
            f"{label} {(moment.replace(tzinfo=UTC).timestamp() - posted_at) * 1000:.0f}" for label, moment in [
                ("parent enqueued", parent.enqueued_at), ("parent started", parent.started_at),
                ("parent ended", parent.ended_at), ("first item started", first.started_at)]), flush=True)
    return wall, view, task_id


def warm_up(account, fake):
    """One small task first, so that no measured run pays for first connections and cold caches."""
    fake.set_load(latency=0.1, max_concurrent=4)
    account.wait(account.generate(account.images(8)))
    fake.reset()


def took(task_id: str, posted_at: float, polled: float) -> float:
    """Seconds from the request to the task's end as the service recorded it (not the poller's lag)."""
    with db.connection_context():
        finished_at = AITaskLog.get(AITaskLog.task_id == task_id).finished_at
    return finished_at.replace(tzinfo=UTC).timestamp() - posted_at if finished_at else polled


def redis_per_image(service, fake, n=20) -> tuple[float, float]:
    """Redis memory a finished task leaves behind, per image, with answers as large as real ones; and the
    size of one answer (KB)."""
    account = Account(service, "memory", fake, max_concurrent=4, image_format="png")
    fake.photo_sized = True
    fake.set_load(latency=0.2, max_concurrent=4)
    redis = get_redis()
    ids = account.images(n)
    before = redis.info("memory")["used_memory"]
    account.wait(account.generate(ids))
    time.sleep(1.0)  # the last SAVE job's bookkeeping
    after = redis.info("memory")["used_memory"]
    answer = len(photo_sized(*models_for("openai")["gpt-image-2"].default_size("in_article"), "png")[0])
    fake.photo_sized = False
    return (after - before) / n / 1024, answer / 1024


def poll(service, account, path, *, htmx, viewers, seconds, interval) -> dict:
    command = [sys.executable, str(ROOT / "scripts" / "pollers.py"), service.base + path, account.token,
               "--viewers", str(viewers), "--seconds", str(seconds), "--interval", str(interval)]
    answer = subprocess.run(command + (["--htmx"] if htmx else []), capture_output=True, text=True, check=True)
    return json.loads(answer.stdout)


def many_viewers(service, fake) -> list[tuple]:
    """50 viewers of one running task, each polling once a second as the panel does, for the JSON
    endpoint and the fragment; then as many polls per second as the web server answers."""
    account = Account(service, "viewers", fake, max_concurrent=1)
    fake.set_load(latency=1.0, max_concurrent=1)
    task_id = account.generate(account.images(30))
    rows = []
    for label, path, htmx in (("JSON", f"/v1/system/task_progress/{task_id}/", False),
                              ("fragment", f"/writer/tasks/{task_id}/progress", True)):
        steady = poll(service, account, path, htmx=htmx, viewers=50, seconds=10, interval=1.0)
        flat_out = poll(service, account, path, htmx=htmx, viewers=16, seconds=4, interval=0)
        rows.append((f"50 viewers polling the {label} once a second", f"p50 {steady['p50']:.1f} ms",
                     f"p95 {steady['p95']:.1f} ms", f"{steady['not_modified']}/{steady['requests']} 304",
                     f"errors {steady['errors'] + flat_out['errors']}",
                     f"saturation {flat_out['per_second']:.0f} polls/s (p95 {flat_out['p95']:.0f} ms)", ""))
    account.wait(task_id)
    return rows


def rq_overhead(n=60) -> tuple[float, float]:
    queue = get_queue()
    started = time.monotonic()
    jobs = [queue.enqueue("tests.job_helpers.add", 1, k) for k in range(n)]
    while any(j.get_status() != "finished" for j in jobs):
        time.sleep(0.02)
    total = time.monotonic() - started
    waits = [(j.ended_at - j.enqueued_at).total_seconds() for j in (Job.fetch(j.id, connection=queue.connection)
                                                                     for j in jobs)]
    return total / n * 1000, statistics.median(waits) * 1000


def main():
    open_database(os.environ["DATABASE_URL"])
    with db.connection_context():
        schema.upgrade()
    service = Service()
    rows = []
    try:
        with FakeOpenAI() as fake:
            # Every placement's default size for the bench's model, so no timed answer encodes one.
            spec = models_for("openai")["gpt-image-2"]
            for size in {spec.default_size(placement) for placement in PLACEMENT_PRESETS}:
                prepare_images(*size, "webp")
            warm_up(Account(service, "warm-up", fake, max_concurrent=4), fake)
            if ONLY == "viewers":
                rows += many_viewers(service, fake)
                raise Finished
            n, latency = 20, 1.0
            fake.set_load(latency=latency, max_concurrent=1)
            wall, view, seq_task = run(Account(service, "seq", fake, max_concurrent=1), fake, n)
            bound = n * latency
            rows.append(("sequential C=1, N=20, L=1s", f"{wall:.2f} s", f"bound N·L {bound:.1f} s",
                         f"ratio {bound / wall:.3f}", f"429s {fake.load.rejected}",
                         f"critical path/image {(wall - bound) / n * 1000:.0f} ms", view["message"]))

            fake.set_load(latency=latency, max_concurrent=4)
            wall, view, par_task = run(Account(service, "par", fake, max_concurrent=4), fake, n)
            bound = n * latency / 4
            rows.append(("parallel C=4, N=20, L=1s", f"{wall:.2f} s", f"bound N·L/C {bound:.1f} s",
                         f"ratio {bound / wall:.3f}", f"429s {fake.load.rejected}", "", view["message"]))

            fake.set_load(latency=0.25, max_concurrent=8)
            big, small = Account(service, "big", fake, max_concurrent=2), Account(service, "small", fake,
                                                                                    max_concurrent=1)
            big_ids, small_ids = big.images(200), small.images(3)
            big_started, big_posted = time.monotonic(), time.time()
            big_task = big.generate(big_ids)
            time.sleep(1.0)
            small_started, small_posted = time.monotonic(), time.time()
            small_task = small.generate(small_ids)
            small_view = small.wait(small_task)
            small_wall = took(small_task, small_posted, time.monotonic() - small_started)
            big_view = big.wait(big_task)
            big_wall = took(big_task, big_posted, time.monotonic() - big_started)
            rows.append(("fairness: 200 + 3 images, L=0.25s", f"3 images in {small_wall:.2f} s",
                         f"= {small_wall / 0.25:.1f} image-times", f"200 images in {big_wall:.1f} s",
                         f"429s {fake.load.rejected}", "", f"{small_view['message']} / {big_view['message']}"))

            fake.set_load(latency=0.5, max_concurrent=2)
            fake.reset()
            fake.set_load(latency=0.5, max_concurrent=2)
            wall, view, auto_task = run(Account(service, "auto", fake, max_concurrent=None), fake, 40)
            calls = fake.call_count
            rows.append(("unknown limit (fake caps C=2), N=40, L=0.5s", f"{wall:.2f} s",
                         f"bound {40 * 0.5 / 2:.1f} s", f"ratio {10 / wall:.3f}",
                         f"429s {fake.load.rejected}/{calls} = {fake.load.rejected / max(calls, 1):.1%}", "",
                         view["message"]))
            rows += many_viewers(service, fake)
            per_image, answer_kb = redis_per_image(service, fake)
            rows.append(("Redis after a 20-image task (C=4)", f"{per_image:.1f} KB per image",
                         f"answers {answer_kb:.0f} KB each (PNG)", "", "", "", ""))
        per_job, wait = rq_overhead()
    except Finished:
        per_job = wait = float("nan")
    finally:
        service.stop()
        if redis_url().startswith("unix://"):
            # The embedded Redis outlives its callers by design; this one belongs to the throwaway folder.
            with contextlib.suppress(Exception):
                get_redis().shutdown(nosave=True)

    print(f"\nBenchmark — one worker dyno (WORKER_CONCURRENCY {CONCURRENCY or 'default'}), "
          f"{os.environ['DATABASE_URL'].split(':')[0]}, "
          f"{'embedded Redis' if redis_url().startswith('unix') else 'Redis'}\n")
    for row in rows:
        print("  " + " | ".join(cell for cell in row if cell))
    print(f"  RQ overhead: {per_job:.1f} ms per empty job through the workers, median enqueue→end {wait:.1f} ms")
    print(f"  worker dyno at its heaviest: {service.heaviest}\n")


if __name__ == "__main__":
    main()
