"""Redis lost for a few seconds mid-task: the workers ride it out, every image ends generated or failed
with a reason and none is charged twice; meanwhile the JSON progress answers from the database and
/healthz says Redis is down."""

import time

import pytest
import redis
from rq import Queue

from jobs import embedded_redis
from jobs.tasks import start_task
from models import Images, db
from tests import factories
from tests.api_helpers import ApiClient, progress_url
from tests.conftest import WorkerProcess, wait_for
from tests.flow import new_article, use_provider

pytestmark = pytest.mark.worker


def test_workers_ride_out_a_redis_outage_and_every_image_ends(app, personas, fake_openai, tmp_path, monkeypatch):
    instance = tmp_path / "outage-redis"
    instance.mkdir()
    server = embedded_redis.ensure_running(instance)
    url = embedded_redis.socket_url(instance / "redis.sock")
    worker = WorkerProcess("outage", extra_env={"REDIS_URL": url, "RQ_QUEUE": "outage"})
    api = ApiClient(app.test_client(), personas.owner)
    try:
        use_provider(api, "openai", "gpt-image-2", fake_openai)
        fake_openai.set_latency(2.0)
        ids = new_article()
        a = factories.account_id("A")
        with db.connection_context():
            task = start_task("generate_images_from_prompts", {"ids": ids}, a,
                              queue=Queue("outage", connection=redis.Redis.from_url(url)))
        wait_for(lambda: fake_openai.call_count >= 1, timeout=30, message="the first call")
        server.kill()
        server.wait()
        monkeypatch.setenv("REDIS_URL", url)
        down = api.get(progress_url(task["task_id"]))
        assert down.status_code == 200 and down.get_json()["live"] is False
        health = app.test_client().get("/healthz")
        assert health.status_code == 503 and health.get_json()["redis"] == "down"
        time.sleep(5)
        server = embedded_redis.ensure_running(instance)  # back, with what its append-only file kept
        assert app.test_client().get("/healthz").status_code == 200

        def ended():
            with db.connection_context():
                return all(i.status in ("generated", "failed") for i in Images.select().where(Images.id.in_(ids)))

        wait_for(ended, timeout=180, message="every image to end after the outage")
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        with db.connection_context():
            rows = list(Images.select().where(Images.id.in_(ids)))
        assert all(r.status == "generated" or r.error for r in rows), [(r.status, r.error) for r in rows]
        assert max(fake_openai.prompt_counts().values()) == 1  # none charged twice
        # Every call that was answered is recorded with its cost, whatever became of its image.
        called = {c.prompt for c in fake_openai.calls}
        assert all(r.cost is not None for r in rows if any(r.prompt in p for p in called))
    finally:
        worker.stop()
        server.kill()
