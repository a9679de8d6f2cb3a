"""Restarts lose nothing. Heroku stops a dyno (every deploy, every daily restart) with SIGTERM to each of
its processes and SIGKILL 30 s later: no worker takes a new job, a job that can finish within the grace
does, one that cannot is interrupted before the SIGKILL (RQ's HerokuWorker), and after a new worker every
image has ended, generated or failed with a reason, none charged twice."""

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter

import pytest
from rq import Queue
from rq.job import Job

from jobs.engine import item_job_ids
from jobs.runtime import uninterrupted
from models import AITaskLog, ImageAttempt, db
from tests import factories, ledger
from tests.api_helpers import ApiClient
from tests.conftest import WorkerProcess, wait_for
from tests.fakes.faults import Fault
from tests.flow import generate, new_article, use_provider, wait_done

pytestmark = pytest.mark.worker

HEROKU_KILL_AFTER = 30  # seconds from SIGTERM to SIGKILL


@pytest.fixture
def api(client, personas, redis_conn, own_queue):
    """Every test here starts its own workers on its own queue."""
    return ApiClient(client, personas.owner)


def stop_like_heroku(dyno: WorkerProcess) -> dict:
    """SIGTERM to every process of the dyno, then, 30 s later, SIGKILL to whatever is still running
    (any process ever seen in it, work-horses in their own groups and orphans included)."""
    seen = set(dyno.signal_all(signal.SIGTERM))
    sent_at = time.monotonic()
    ledger.fault("SIGTERM to every process of a dyno (deploy, daily restart)")
    while time.monotonic() - sent_at < HEROKU_KILL_AFTER and dyno.process.poll() is None:
        seen |= set(dyno.pids())
        time.sleep(0.1)
    exited_after = time.monotonic() - sent_at
    left = [pid for pid in seen if _alive(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if dyno.process.poll() is None:
        dyno.process.wait(timeout=5)
    dyno.stop()
    return {"exited_after": exited_after, "killed": left, "returncode": dyno.process.returncode}


def attempts_of(ids) -> dict:
    """Each image's attempts, oldest first."""
    with db.connection_context():
        rows = list(ImageAttempt.select().where(ImageAttempt.image_id.in_(ids)).order_by(ImageAttempt.id))
    return {i: [a for a in rows if a.image_id == i] for i in ids}


def job_ids(task_id) -> list[str]:
    with db.connection_context():
        return list(item_job_ids(AITaskLog.get(AITaskLog.task_id == task_id)).values())


def calls_for(fake, prompt: str) -> int:
    """The provider calls made for an image (its prompt is part of the one sent)."""
    return sum(prompt in (call.prompt or "") for call in fake.calls)


def assert_every_image_ended_and_none_charged_twice(ids, fake) -> list:
    images = factories.images(ids)
    attempts = attempts_of(ids)
    charged = Counter({image.prompt: sum(a.charged_at is not None for a in attempts[image.id]) for image in images})
    lost, duplicates = ledger.settle(images, charged)
    assert lost == 0, [(i.id, i.status, i.error) for i in images]
    assert duplicates == 0, charged
    for image in images:
        assert image.status == "generated" or (image.status == "failed" and image.error), (image.id, image.error)
        mine = attempts[image.id]
        # Each call the provider saw is one attempt: charged once (the answer), or cut before its answer.
        assert calls_for(fake, image.prompt) == sum(a.called_at is not None for a in mine), image.prompt
        assert all(a.outcome is not None for a in mine), [(a.outcome, a.error) for a in mine]  # none left open
        paid = [a.cost for a in mine if a.charged_at is not None]
        assert (image.cost, len(paid)) == ((paid[0], 1) if paid else (None, 0)), (image.id, image.cost, paid)
    return images


def test_a_call_longer_than_the_grace_is_interrupted_before_the_sigkill_and_a_new_worker_ends_every_image(
        api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai, max_concurrent_calls=2)
    fake_openai.set_load(latency=0.5)
    for prompt in ("Cut one", "Cut two"):  # their first calls take longer than the grace, and than 30 s
        fake_openai.script(Fault("slow", delay=45), prompt=prompt)
    ids = new_article(("Cut one", "Cut two", "Waiting three"))
    dyno = WorkerProcess("heroku-stop", concurrency=3)
    task_id = generate(api, ids)
    wait_for(lambda: fake_openai.call_count == 2 and len(dyno.horse_pids()) == 2, timeout=30,
             message="two calls in flight")
    stopped = stop_like_heroku(dyno)
    assert stopped["killed"] == [] and stopped["returncode"] == 0, dyno.output()[-3000:]
    assert stopped["exited_after"] < HEROKU_KILL_AFTER - 5, stopped  # ended on its own, with time to spare
    assert "raising ShutDownImminentException to cancel job" in dyno.output()
    assert fake_openai.call_count == 2  # no new call was started while stopping
    # None is left `generating` with nothing to end it: a cut image failed with a reason, or its job went back
    # to the queue (jobs.engine); the image that had not started waits in RQ for the next worker.
    for image, job_id in zip(factories.images(ids), job_ids(task_id), strict=True):
        status = Job.fetch(job_id, connection=redis_conn).get_status()
        assert (image.status == "failed" and image.error) or status in ("queued", "rate_limited"), (image, status)
    assert factories.image(ids[2]).status == "queued"

    new = WorkerProcess("after-restart")
    try:
        final = wait_done(api, task_id, timeout=60)
    finally:
        new.stop()
    assert final["state"] == "done"
    images = assert_every_image_ended_and_none_charged_twice(ids, fake_openai)
    assert images[2].status == "generated" and calls_for(fake_openai, "Waiting three") == 1


def test_an_image_whose_request_was_out_when_a_restart_cut_it_fails_maybe_billed_and_is_not_called_again(
        api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.script(Fault("slow", delay=8), prompt="Cut mid-call")  # its first call only
    ids = new_article(("Cut mid-call",))
    dyno = WorkerProcess("cut", extra_env={"WORKER_SHUTDOWN_GRACE": "2"})
    task_id = generate(api, ids)
    wait_for(lambda: fake_openai.call_count == 1, timeout=30, message="the call")
    stopped = stop_like_heroku(dyno)
    assert stopped["killed"] == [], stopped
    new = WorkerProcess("cut-after")
    try:
        final = wait_done(api, task_id, timeout=60)
    finally:
        new.stop()
    image = factories.image(ids[0])
    # The provider may bill a request it received: the image says so, and no second call is made on our own.
    assert image.status == "failed" and image.charge_uncertain
    assert "may have billed" in image.error and final["totals"]["failed"] == 1
    assert calls_for(fake_openai, "Cut mid-call") == 1
    assert [a.outcome for a in attempts_of(ids)[ids[0]]] == ["failed"]


def test_an_image_cut_while_waiting_out_a_429_goes_back_to_its_queue_and_is_made_once(api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.script(Fault("rate_limit", retry_after="12"), prompt="Waits out a 429")
    ids = new_article(("Waits out a 429",))
    dyno = WorkerProcess("requeue", extra_env={"WORKER_SHUTDOWN_GRACE": "2"})
    task_id = generate(api, ids)
    wait_for(lambda: fake_openai.call_count == 1, timeout=30, message="the 429")
    stopped = stop_like_heroku(dyno)
    assert stopped["killed"] == [], stopped
    assert "queued again, a restart came before its call" in dyno.output()
    new = WorkerProcess("requeue-after")
    try:
        final = wait_done(api, task_id, timeout=60)
    finally:
        new.stop()
    images = assert_every_image_ended_and_none_charged_twice(ids, fake_openai)
    assert final["totals"]["generated"] == 1 and images[0].status == "generated"
    assert calls_for(fake_openai, "Waits out a 429") == 2  # the 429 (never billed), then the image
    assert [a.outcome for a in attempts_of(ids)[ids[0]]] == ["interrupted", "generated"]


def test_a_call_that_answers_within_the_grace_is_not_interrupted(api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai, max_concurrent_calls=2)
    fake_openai.set_load(latency=4.0)
    ids = new_article(("Within the grace", "Also within"))
    dyno = WorkerProcess("grace", concurrency=3)
    task_id = generate(api, ids)
    wait_for(lambda: fake_openai.call_count == 2, timeout=30, message="two calls in flight")
    stopped = stop_like_heroku(dyno)
    assert stopped["killed"] == [] and stopped["returncode"] == 0, dyno.output()[-3000:]
    assert stopped["exited_after"] < 10, stopped  # the calls' 4 s, not the grace
    assert "to cancel job" not in dyno.output()  # RQ: "raising ShutDownImminentException to cancel job"
    # Both answers are recorded (cost and all) and their SAVE jobs wait in the store queue.
    images = factories.images(ids)
    assert all(i.status == "generating" and i.cost is not None and i.answer_key for i in images)

    new = WorkerProcess("grace-after")
    try:
        final = wait_done(api, task_id, timeout=60)
    finally:
        new.stop()
    assert final["totals"]["generated"] == 2
    assert_every_image_ended_and_none_charged_twice(ids, fake_openai)
    assert fake_openai.call_count == 2  # stored from the answers, not called again
    assert all([a.outcome for a in rows] == ["generated"] for rows in attempts_of(ids).values())


# --- the steps a job marks uninterrupted() ------------------------------------------------------------

def steps(key: str, inside: float, after: float) -> str:
    """A job whose first `inside` seconds must not be cut, then `after` seconds that may be (a test job:
    the worker imports it by path)."""
    from rq import get_current_job

    connection = get_current_job().connection
    api_key = "sk-shutdown-test-secret"  # a local the interrupted frame holds, as a provider call's would  # noqa: F841
    with uninterrupted():
        time.sleep(inside)
        connection.set(f"{key}:inside", "done")
    time.sleep(after)
    connection.set(f"{key}:after", "done")
    return "finished"


def test_the_shutdown_waits_for_uninterrupted_steps_and_interrupts_the_job_right_after(redis_conn, own_queue,
                                                                                       database):
    dyno = WorkerProcess("uninterrupted", extra_env={"WORKER_SHUTDOWN_GRACE": "1"})
    try:
        wait_for(lambda: "Listening on" in dyno.output(), message="the worker")
        key = f"imggen:test-steps:{time.time_ns()}"
        job = Queue(own_queue, connection=redis_conn).enqueue("tests.test_worker_shutdown.steps", key, 4, 20)
        wait_for(lambda: Job.fetch(job.id, connection=redis_conn).get_status() == "started", message="the job")
        started = time.monotonic()
        dyno.signal_all(signal.SIGTERM)
        wait_for(lambda: Job.fetch(job.id, connection=redis_conn).get_status() == "failed", timeout=20,
                 message="the job interrupted")
        took = time.monotonic() - started
        dyno.process.wait(timeout=10)
    finally:
        dyno.stop()
    assert redis_conn.get(f"{key}:inside") == b"done"  # the grace (1 s) ran out inside: the steps went on
    assert redis_conn.get(f"{key}:after") is None  # and the job was interrupted as they ended
    assert 3 < took < 8, took
    result = Job.fetch(job.id, connection=redis_conn).latest_result()
    assert "ShutDownImminentException" in result.exc_string
    # HerokuWorker keeps the interrupted frame's variables on the exception, never in its text: RQ stores
    # that text with the failed job, and logs it.
    assert "sk-shutdown-test-secret" not in result.exc_string and "sk-shutdown-test-secret" not in dyno.output()


def test_an_idle_pool_stops_at_once_even_when_every_process_gets_the_sigterm(redis_conn, own_queue, database):
    """Heroku's SIGTERM reaches each worker with the pool's own SIGINT right behind it. Two ways a worker
    lost it, each seen here: the signal landed in RQ's command thread (noticed at the next wake-up, 15 s
    on), or in the sweep's error handler (caught, and the worker worked on). At various moments after
    the start, the first maintenance included, the pool must be gone within seconds."""
    for attempt, delay in enumerate((0, 0.05, 0.2, 0.5, 1.0, 2.0)):
        dyno = WorkerProcess(f"idle-{attempt}", concurrency=3)
        try:
            wait_for(lambda dyno=dyno: dyno.output().count("Listening on") == 3, message="three workers")
            time.sleep(delay)
            started = time.monotonic()
            dyno.signal_all(signal.SIGTERM)
            try:
                dyno.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"attempt {attempt}: the pool was still running 10 s after SIGTERM\n"
                            + dyno.output()[-3000:])
            assert time.monotonic() - started < 5, attempt
        finally:
            dyno.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
