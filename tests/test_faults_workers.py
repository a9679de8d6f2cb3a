"""Worker and queue faults with real worker processes and real Redis: nothing is lost, nothing is
generated or charged twice (issue: prove it under faults)."""

import contextlib
import os
import signal
import threading
from collections import Counter

import pytest
from rq import Queue
from rq.job import Job

from jobs.engine import item_job_ids, save_job_id
from jobs.recovery import sweep_once
from models import AITaskLog, Images, db
from tests import factories, ledger
from tests.api_helpers import ApiClient
from tests.conftest import WorkerProcess, wait_for
from tests.flow import generate, new_article, use_provider, wait_done

pytestmark = pytest.mark.worker


@pytest.fixture
def api(client, personas, redis_conn, own_queue):
    """Every test here starts its own workers on its own queue."""
    return ApiClient(client, personas.owner)


def successes(fake) -> Counter:
    """Provider calls per prompt (each call of the fake answers with an image)."""
    return fake.prompt_counts()


def job_ids(task_id) -> dict:
    with db.connection_context():
        return item_job_ids(AITaskLog.get(AITaskLog.task_id == task_id))


def stored(storage, key) -> bool:
    from jobs.storage import NotStored

    try:
        with db.connection_context():
            storage.load(key)
    except NotStored:
        return False
    return True


def settle(ids, fake=None, allowed_calls=1):
    images = factories.images(ids)
    calls = Counter({p: n - (allowed_calls - 1) for p, n in (fake.prompt_counts() if fake else {}).items()})
    lost, duplicates = ledger.settle(images, calls)
    assert lost == 0, [(i.id, i.status) for i in images]
    assert duplicates == 0, calls
    return images


def test_kill_the_whole_worker_while_another_is_alive(api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.set_latency(1.0)
    ids = [i for n in range(3) for i in new_article(tuple(f"Article {n} picture {k}" for k in range(4)))][:10]
    workers = {w.name: w for w in (WorkerProcess("doomed"), WorkerProcess("survivor"))}
    try:
        task_id = generate(api, ids)
        wait_for(lambda: fake_openai.call_count >= 3, timeout=30, message="three calls")

        wait_for(lambda: AITaskLog.get_or_none(AITaskLog.task_id == task_id).phase == "AI_CALL", message="fan-out")
        item_jobs = job_ids(task_id)

        def call_in_flight():
            for image in factories.images(ids):
                job_id = item_jobs[image.id]
                if image.status == "generating" and Job.exists(job_id, connection=redis_conn):
                    job = Job.fetch(job_id, connection=redis_conn)
                    if job.get_meta().get("phase") == "AI_CALL" and job.worker_name in workers:
                        return job
            return None

        job = wait_for(call_in_flight, timeout=30, message="an image in its provider call")
        # The worker holding that image dies with its work-horse, uncleanly, mid-call.
        doomed = workers[job.worker_name]
        horse = doomed.horse_pid()
        os.kill(doomed.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(horse, signal.SIGKILL)
        ledger.fault("kill -9 worker and work-horse (second worker alive)")
        try:
            final = wait_done(api, task_id, timeout=150)
        except AssertionError:  # say where it stuck: CI logs are all we will have
            print("images:", [(i.id, i.status, i.error) for i in factories.images(ids)])
            print("jobs:", [(i, Job.fetch(j, connection=redis_conn).get_status())
                            for i, j in item_jobs.items() if Job.exists(j, connection=redis_conn)])
            print("keys:", {k.decode(): redis_conn.pttl(k) for k in redis_conn.scan_iter("imggen:*")})
            for key in redis_conn.scan_iter("rq:rl:*"):
                if redis_conn.type(key) == b"zset":
                    print(key.decode(), redis_conn.zrange(key, 0, -1, withscores=True))
            for name, w in workers.items():
                print(f"worker {name}:", w.output()[-3000:])
            raise
        assert final["state"] == "done"
        images = settle(ids, fake_openai)
        assert sum(i.status == "generated" for i in images) >= 9
        assert all(i.error for i in images if i.status == "failed")
    finally:
        for worker in workers.values():
            worker.stop()


def test_warm_shutdown_finishes_the_current_image_and_the_next_worker_does_the_rest(api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.set_latency(1.0)
    ids = new_article(("Warm one", "Warm two", "Warm three", "Warm four"))
    first = WorkerProcess("warm-first")
    task_id = generate(api, ids)
    wait_for(lambda: fake_openai.call_count >= 1, timeout=20, message="the first call")
    first.process.send_signal(signal.SIGTERM)
    ledger.fault("SIGTERM (warm shutdown) mid-task")
    first.process.wait(timeout=30)
    first.stop()
    # The current image's call finished and its SAVE waits, durably, in the store queue.
    assert Job.fetch(save_job_id(task_id, ids[0]), connection=redis_conn).get_status() in ("queued", "finished")
    assert any(i.status == "queued" for i in factories.images(ids[1:]))  # the rest waited
    second = WorkerProcess("warm-second")
    try:
        final = wait_done(api, task_id, timeout=60)
        assert final["totals"]["generated"] == 4
        settle(ids, fake_openai)
    finally:
        second.stop()


def test_a_job_that_outlives_its_timeout_fails_with_timed_out_and_can_be_retried(api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.set_latency(6)
    ids = new_article(("Slow picture",))
    worker = WorkerProcess("short-timeout", extra_env={"IMAGE_JOB_TIMEOUT": "3"})
    try:
        task_id = generate(api, ids)
        final = wait_done(api, task_id, timeout=60)
        ledger.fault("job timeout")
        image = factories.image(ids[0])
        assert image.status == "failed" and "Timed out" in image.error
        assert final["images"][0]["error"] == image.error
        job = Job.fetch(job_ids(task_id)[ids[0]], connection=redis_conn)
        wait_for(lambda: job.get_status() == "failed", timeout=10, message="the job in the failed registry")
        calls = fake_openai.call_count
        threading.Event().wait(7)  # long enough for a late second run to show up
        assert fake_openai.call_count == calls == 1  # no late duplicate call
        fake_openai.set_latency(0)
        job.requeue()
        wait_for(lambda: factories.image(ids[0]).status == "generated", timeout=30, message="the retry")
    finally:
        worker.stop()


def test_a_poison_image_that_kills_its_process_every_time_ends_failed(api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.set_latency(2)
    ids = new_article(("Poison picture",))
    worker = WorkerProcess("poison")
    try:
        task_id = generate(api, ids)
        wait_for(lambda: Job.exists(job_ids(task_id).get(ids[0], "-"), connection=redis_conn), message="its job")
        job_id = job_ids(task_id)[ids[0]]
        killed = set()

        def new_call_pid():
            # This attempt's call is at the provider, so the worker's work-horse is the image's.
            pid = worker.horse_pid()
            return fake_openai.call_count > len(killed) and pid not in killed and pid

        for attempt in range(3):
            pid = wait_for(new_call_pid, timeout=30, message="the next attempt's call")
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
            ledger.fault("poison: work-horse killed every attempt")
            wait_for(lambda: factories.image(ids[0]).status == "failed", timeout=40, message="failed")
            wait_for(lambda: Job.fetch(job_id, connection=redis_conn).get_status() == "failed", timeout=10,
                     message="the job in the failed registry")
            if attempt < 2:
                Job.fetch(job_id, connection=redis_conn).requeue()  # ops retry it
        final = wait_done(api, task_id)
        assert final["images"][0]["status"] == "failed" and "worker process stopped" in final["images"][0]["error"]
        assert factories.image(ids[0]).attempts == 3
    finally:
        worker.stop()


def test_a_lost_job_is_enqueued_again_and_given_up_after_three_attempts(api, redis_conn, own_queue):
    factories.settings(factories.image(new_article(("x",))[0]).account_id, provider="placeholder")
    ids = new_article(("Lost picture",))
    task_id = generate(api, ids)  # no worker: the parent waits in the queue
    queue = Queue(own_queue, connection=redis_conn)
    queue.empty()  # Redis lost the jobs (as a restart without persistence does)
    ledger.fault("jobs lost from Redis")
    later = factories.image(ids[0]).updated_at.replace(year=2100)
    with db.connection_context():
        assert sweep_once(queue, now=later)["requeued"] == 1
    assert Job.fetch(job_ids(task_id)[ids[0]], connection=redis_conn).get_status() == "queued"
    with db.connection_context():
        Images.update(attempts=3).where(Images.id == ids[0]).execute()
    for key in redis_conn.scan_iter("rq:job:*"):
        redis_conn.delete(key)
    with db.connection_context():
        assert sweep_once(queue, now=later)["failed"] == 1
    image = factories.image(ids[0])
    assert image.status == "failed" and "Gave up after 3 attempts" in image.error
    settle(ids)


def test_redis_lost_mid_task_is_recovered_by_the_sweep(api, fake_openai, redis_conn, personas):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.set_latency(0.5)
    ids = new_article(("Redis one", "Redis two", "Redis three"))
    worker = WorkerProcess("redis-loss")
    try:
        task_id = generate(api, ids)
        wait_for(lambda: fake_openai.call_count >= 1, timeout=20, message="the first call")
        # Everything the queue knew is gone (a restart without persistence), the worker keeps running.
        for key in redis_conn.scan_iter("rq:job:*"):
            redis_conn.delete(key)
        for key in redis_conn.scan_iter("rq:queue:*"):
            redis_conn.delete(key)
        for key in redis_conn.scan_iter("rq:*registry*"):
            redis_conn.delete(key)
        ledger.fault("Redis data lost mid-task")
        final = wait_done(api, task_id, timeout=90)
        assert final["state"] == "done"
        images = settle(ids, fake_openai, allowed_calls=2)  # the image in flight may be called again
        assert all(i.status == "generated" for i in images), [(i.status, i.error) for i in images]
    finally:
        worker.stop()


def test_a_work_horse_killed_after_the_call_answered_stores_that_answer_without_a_second_call(api, redis_conn):
    """The answer (here a URL, downloaded by the SAVE job) is on the image's row with its cost before the
    SAVE job starts; its work-horse is killed mid-download, and the worker's handler saves it again."""
    from tests.fakes.openai_server import FakeOpenAICompatible

    with FakeOpenAICompatible(models=("sdxl-turbo",)) as server:
        use_provider(api, "openai_compatible", "sdxl-turbo", server, price_per_image="0.002")
        hold = threading.Event()
        server.before_download = lambda request: hold.wait(20)
        ids = new_article(("A paid answer",))
        worker = WorkerProcess("kill-after-call")
        try:
            task_id = generate(api, ids)
            wait_for(lambda: server.downloads, timeout=30, message="the SAVE job's download")
            image = factories.image(ids[0])
            assert image.status == "generating" and image.provider_url and float(image.cost) == 0.002
            os.kill(wait_for(worker.horse_pid, message="the SAVE job's work-horse"), signal.SIGKILL)
            ledger.fault("kill -9 of the work-horse after its call answered")
            server.before_download = None
            hold.set()
            final = wait_done(api, task_id)
        finally:
            worker.stop()
        assert final["totals"]["generated"] == 1, final
        assert server.call_count == 1 and len(server.downloads) == 2  # the answer fetched again, not made again
        image = factories.image(ids[0])
        assert float(image.cost) == 0.002 and image.file_path
        settle(ids, server)


@pytest.mark.skipif("postgres" not in os.environ.get("DATABASE_URL", ""),
                    reason="dropping a server-side connection needs PostgreSQL (runs in CI's PostgreSQL pass)")
def test_a_dropped_database_connection_after_the_provider_answered_saves_once(api, fake_openai):
    """The connection drops twice: during the provider call (the call's job) and during the download
    (the SAVE job, which then stores and records the image on a new connection)."""
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    ids = new_article(("Dropped connection",))

    dropped = []

    def drop_the_workers_connections(call):
        # Only the connections of this test's worker, which names itself through PGAPPNAME.
        with db.connection_context():
            dropped.extend(db.execute_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                          "WHERE application_name = 'imggen-db-drop-worker'").fetchall())

    fake_openai.before_reply = drop_the_workers_connections
    fake_openai.before_download = drop_the_workers_connections
    worker = WorkerProcess("db-drop", extra_env={"PGAPPNAME": "imggen-db-drop-worker"})
    try:
        task_id = generate(api, ids)
        ledger.fault("database connection dropped before the save")
        final = wait_done(api, task_id)
    finally:
        worker.stop()
    assert final["totals"]["generated"] == 1, final
    assert dropped, "the worker's connection was not dropped"
    assert "reconnecting" in worker.output()  # the SAVE job's write met the dropped connection
    images = settle(ids, fake_openai)
    assert images[0].cost is not None and images[0].file_path


def test_jobs_are_enqueued_only_after_the_claim_is_committed(personas, redis_conn, database, own_queue):
    """A queue that, at the moment of enqueue, reads the images through another connection."""
    from jobs.tasks import start_task

    seen = []

    class WatchingQueue(Queue):
        def enqueue(self, *args, **kwargs):
            other = type(database)(database.database, **database.connect_params)
            other.connect()
            rows = other.execute_sql("SELECT status FROM images WHERE task_id IS NOT NULL").fetchall()
            seen.append([r[0] for r in rows])
            other.close()
            return super().enqueue(*args, **kwargs)

    with db.connection_context():
        account = factories.account_id("A")
    factories.settings(account, provider="placeholder")
    ids = new_article()
    with db.connection_context():
        start_task("generate_images_from_prompts", {"ids": ids}, account,
                   queue=WatchingQueue(own_queue, connection=redis_conn))
        assert AITaskLog.select().count() == 1
    assert seen == [["queued", "queued", "queued"]]


def test_requeue_of_a_generated_images_job_makes_no_call(api, fake_openai, redis_conn, own_queue):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    ids = new_article(("Already done",))
    worker = WorkerProcess("requeue-generated")
    try:
        task_id = generate(api, ids)
        wait_done(api, task_id)
        before = factories.image(ids[0])
        # What a requeue from rq-dashboard runs again: the same job, same arguments.
        rerun = Queue(own_queue, connection=redis_conn).enqueue(
            "jobs.tasks.run_ai_item", task_id, ids[0], job_id=job_ids(task_id)[ids[0]])
        ledger.fault("requeue of a generated image's job")
        wait_for(lambda: rerun.get_status() == "finished", timeout=20, message="the re-run")
        assert rerun.return_value() == {"success": True, "skipped": True}
        after = factories.image(ids[0])
        assert fake_openai.call_count == 1
        assert (after.cost, after.file_path, after.attempts) == (before.cost, before.file_path, before.attempts)
        settle(ids, fake_openai)
    finally:
        worker.stop()


def test_regenerate_makes_one_new_call_and_replaces_the_file_only_after_storing(api, fake_openai, redis_conn):
    from config import load_config
    from jobs.storage import get_storage

    use_provider(api, "openai", "gpt-image-2", fake_openai)
    ids = new_article(("Make me once",))
    worker = WorkerProcess("regenerate")
    storage = get_storage(load_config())
    try:
        wait_done(api, generate(api, ids))
        first = factories.image(ids[0])
        assert stored(storage, first.file_path)
        api.patch(f"/v1/writer/images/{ids[0]}/", json={"prompt": "Make me again, differently"})
        fake_openai.set_latency(1.0)
        task_id = generate(api, ids, regenerate=True)
        wait_for(lambda: fake_openai.call_count == 2, timeout=20, message="the second call")
        # While the new image is being made, the old one is still stored and served.
        assert stored(storage, first.file_path) and factories.image(ids[0]).image_url == first.image_url
        wait_done(api, task_id)
        second = factories.image(ids[0])
        assert second.status == "generated" and fake_openai.call_count == 2
        assert second.file_path != first.file_path and second.image_url != first.image_url
        # The old file stays while its public URL still answers (PUBLIC_URL_GRACE_HOURS), then the sweep removes it.
        assert stored(storage, second.file_path) and stored(storage, first.file_path)
        ledger.fault("regenerate a generated image")
        settle(ids, fake_openai)
    finally:
        worker.stop()
