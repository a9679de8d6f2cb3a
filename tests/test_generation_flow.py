"""The whole path through the HTTP API and a real RQ worker process, on the placeholder provider
(the run command's default): the plan's section 6.2, step by step."""

import io

import pytest
from PIL import Image
from rq.job import Job

from jobs.engine import done_job_id, item_job_id, save_job_id
from models import AITaskLog, db
from tests import factories
from tests.api_helpers import GENERATE, ApiClient, progress_url
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture
def api(client, personas, worker):
    api = ApiClient(client, personas.owner)
    saved = api.put("/v1/system/settings/integrations/image_generation/",
                    json={"provider": "placeholder", "model": "placeholder-v1", "image_format": "webp"})
    assert saved.status_code == 200
    return api


def run_to_end(api, task_id, timeout=60):
    seen = []

    def finished():
        view = api.get(progress_url(task_id)).get_json()
        seen.append(view)
        return view if view["state"] in ("done", "failed") else None

    final = wait_for(finished, timeout=timeout, interval=0.05, message="the task to end")
    return final, seen


def test_three_prompts_end_as_three_stored_images_in_the_accounts_format(api, redis_conn):
    created = api.post("/v1/writer/content/", json={"title": "Kites", "images": [
        {"image_type": "featured", "position": 0, "prompt": "A red kite in a blue sky"},
        {"image_type": "in_article", "position": 1, "prompt": "Children running on a beach"},
        {"image_type": "in_article", "position": 2, "prompt": "A kite string on a spool"},
    ]}).get_json()
    ids = [i["id"] for i in created["images"]]

    started = api.post(GENERATE, json={"ids": ids}).get_json()
    assert started["success"] and started["message"] == "Image generation started"
    final, seen = run_to_end(api, started["task_id"])

    assert final["state"] == "done" and final["phase"] == "DONE" and final["percent"] == 100
    assert final["message"] == "3 images generated successfully"
    assert final["totals"] == {"total": 3, "generated": 3, "failed": 0, "not_started": 0, "skipped": 0,
                               "cost": 0}
    assert [i["id"] for i in final["images"]] == ids  # featured first, then by position
    assert all(set(view["images"][0]) >= {"id", "status", "progress", "image_url", "error", "cost"} for view in seen)

    for row in api.get(f"/v1/writer/images/?content_id={created['id']}").get_json()["results"]:
        assert row["status"] == "generated" and row["image_format"] == "webp" and row["error"] is None
        assert row["provider"] == "placeholder" and row["cost"] == 0
        response = api.get(row["image_url"])
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/webp"
        picture = Image.open(io.BytesIO(response.data))
        assert picture.format == "WEBP" and picture.size == (row["width"], row["height"])
        etag = response.headers["ETag"]
        assert api.get(row["image_url"], headers={"If-None-Match": etag}).status_code == 304

    # The task's own record and the RQ jobs agree.
    with db.connection_context():
        task = AITaskLog.get(AITaskLog.task_id == started["task_id"])
    assert task.state == "done" and task.totals["generated"] == 3
    task_id = started["task_id"]
    done = Job.fetch(done_job_id(task_id), connection=redis_conn)
    wait_for(lambda: done.get_status() == "finished", message="the DONE job")  # it may run after the saves
    # The finisher depends on every image's job (RQ dependencies ops see in rq-dashboard) and ran after
    # all of them; its result counts what had ended by then (saves run beside the calls).
    item_jobs = [Job.fetch(item_job_id(task_id, n, i), connection=redis_conn) for n, i in enumerate(ids)]
    assert sorted(done.dependency_ids) == sorted(job.id for job in item_jobs)
    assert all(done.started_at >= job.ended_at for job in item_jobs)
    assert done.return_value()["images_failed"] == 0 and done.return_value()["images_generated"] <= 3
    # Each image's job made its call, kept the answer and handed it to a SAVE job in the store queue,
    # which stored it; the job's meta holds only the live view (no image bytes, nothing else).
    for n, image_id in enumerate(ids):
        assert item_jobs[n].return_value() == {"success": True, "saving": True}
        assert set(item_jobs[n].get_meta()) <= {"phase", "call_started_at", "expected_seconds"}
        save = Job.fetch(save_job_id(task_id, image_id), connection=redis_conn)
        assert save.origin.endswith("-store") and save.args == (task_id, image_id)
        assert save.return_value()["image_url"] == factories.image(image_id).image_url
        assert factories.image(image_id).answer_key is None  # the staged answer is gone once stored


def test_sizes_follow_the_image_type(api):
    with db.connection_context():
        a = factories.account_id("A")
    content = api.post("/v1/writer/content/", json={"title": "Sizes", "images": [
        {"image_type": "featured", "position": 0, "prompt": "wide"},
        {"image_type": "in_article", "position": 1, "prompt": "square"},
        {"image_type": "mobile", "position": 0, "prompt": "tall"},
    ]}).get_json()
    factories.settings(a, mobile_enabled=True)
    task_id = api.post(GENERATE, json={"ids": [i["id"] for i in content["images"]]}).get_json()["task_id"]
    run_to_end(api, task_id)
    sizes = {i["image_type"]: (i["width"], i["height"])
             for i in api.get(f"/v1/writer/content/{content['id']}/").get_json()["images"]}
    # The defaults per placement: featured 16:9, in-article 3:2, mobile 9:16.
    assert sizes == {"featured": (1536, 864), "in_article": (1536, 1024), "mobile": (864, 1536)}


def test_an_image_job_run_again_after_success_calls_nothing(api, redis_conn):
    with db.connection_context():
        a = factories.account_id("A")
    _, ids = factories.article(a)
    task_id = api.post(GENERATE, json={"ids": ids}).get_json()["task_id"]
    run_to_end(api, task_id)
    before = factories.image(ids[0])
    from jobs.connection import get_queue
    rerun = get_queue().enqueue("jobs.tasks.run_ai_item", task_id, ids[0])
    wait_for(lambda: Job.fetch(rerun.id, connection=redis_conn).get_status() == "finished", message="rerun")
    assert Job.fetch(rerun.id, connection=redis_conn).return_value() == {"success": True, "skipped": True}
    after = factories.image(ids[0])
    assert (after.updated_at, after.attempts, after.file_path) == (before.updated_at, before.attempts, before.file_path)
