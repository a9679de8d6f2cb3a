"""Live progress while a provider works, and recovery when a worker dies mid-image."""

import os
import signal

import pytest
from rq.job import Job

from jobs.engine import item_job_ids
from models import AITaskLog, db
from tests import factories
from tests.api_helpers import GENERATE, ApiClient, progress_url
from tests.conftest import WorkerProcess, wait_for
from tests.flow import new_article, use_provider

pytestmark = pytest.mark.worker


@pytest.fixture
def api(client, personas, redis_conn):
    return ApiClient(client, personas.owner)


def test_progress_shows_each_image_moving_while_the_provider_works(api, worker, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.set_latency(2.5)
    ids = new_article(("First picture", "Second picture"))
    task_id = api.post(GENERATE, json={"ids": ids}).get_json()["task_id"]

    def view():
        return api.get(progress_url(task_id)).get_json()

    first = wait_for(lambda: (v := view())["images"][0]["progress"] >= 10 and v["phase"] == "AI_CALL" and v,
                     timeout=20, message="the first image's estimated progress")
    assert first["state"] == "running" and first["phase"] == "AI_CALL"
    assert first["message"] == "Generating image 1 of 2 with AI"
    assert first["images"][0]["status"] == "generating" and first["images"][0]["progress"] < 88
    assert first["images"][1]["status"] == "queued" and first["images"][1]["progress"] == 0
    assert 25 < first["percent"] < 98
    second = wait_for(lambda: (v := view())["images"][1]["status"] == "generating" and v, timeout=20,
                      message="the second image to start")
    assert second["images"][0]["status"] == "generated" and second["images"][0]["image_url"]
    assert second["message"] == "Generating image 2 of 2 with AI"
    final = wait_for(lambda: (v := view())["state"] == "done" and v, timeout=20, message="done")
    assert final["message"] == "2 images generated successfully"


def test_killing_the_work_horse_mid_call_fails_that_image_and_the_chain_goes_on(api, fake_openai, redis_conn,
                                                                                own_queue):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.set_latency(3)
    ids = new_article(("Doomed picture", "Next picture"))
    own = WorkerProcess("kill-horse")
    try:
        task_id = api.post(GENERATE, json={"ids": ids}).get_json()["task_id"]
        wait_for(lambda: fake_openai.call_count >= 1, timeout=20, message="the provider call")
        with db.connection_context():
            job_id = item_job_ids(AITaskLog.get(AITaskLog.task_id == task_id))[ids[0]]
        os.kill(own.horse_pid(), signal.SIGKILL)  # after the request left, before the answer

        final = wait_for(lambda: (v := api.get(progress_url(task_id)).get_json())["state"] == "done" and v,
                         timeout=60, message="the task to end after the kill")
        by_id = {i["id"]: i for i in final["images"]}
        assert by_id[ids[0]]["status"] == "failed"
        assert "worker process stopped" in by_id[ids[0]]["error"]
        assert by_id[ids[1]]["status"] == "generated"

        # Retry: the failed job is requeued and the image is generated exactly once more.
        Job.fetch(job_id, connection=redis_conn).requeue()
        wait_for(lambda: factories.image(ids[0]).status == "generated", timeout=30, message="the retry")
        assert fake_openai.prompt_counts()[fake_openai.calls[0].prompt] == 2  # the killed call + the retry
        assert factories.image(ids[0]).cost is not None
    finally:
        own.stop()
