"""POST generate_images: every refusal is a clear 400 (or 404) and queues nothing."""

import os

import pytest
from rq import Queue
from rq.job import Job

from models import AITaskLog, db
from tests import factories
from tests.api_helpers import GENERATE, ApiClient


@pytest.fixture(autouse=True)
def _nothing_drains_the_queue(own_queue):
    """Requests here enqueue to a queue of the test's own that no worker takes from, so a count of it
    sees every job a refused request might have queued (the session worker would drain the default)."""


@pytest.fixture
def api(client, personas, redis_conn):
    return ApiClient(client, personas.owner)


@pytest.fixture
def a_ids(api):
    with db.connection_context():
        a = factories.account_id("A")
    factories.settings(a, provider="placeholder", model="placeholder-v1")
    return factories.article(a)[1]


def queued_jobs(redis_conn):
    return Queue(os.environ["RQ_QUEUE"], connection=redis_conn).count


@pytest.mark.parametrize("body,message", [
    ({}, "No IDs provided"),
    ({"ids": []}, "No IDs provided"),
    ({"ids": "1,2"}, "must be a list"),
    ({"ids": [[1]]}, "positive whole numbers"),
    ({"ids": [1.5]}, "positive whole numbers"),
    ({"ids": [-3]}, "positive whole numbers"),
    ({"ids": [0]}, "positive whole numbers"),
    ({"ids": [True]}, "positive whole numbers"),
    ({"ids": [1, 1]}, "more than once"),
    ({"ids": list(range(1, 10_001))}, "At most 200"),
    ({"ids": [1], "regenerate": "yes"}, "regenerate"),
])
def test_malformed_ids_are_a_400_and_nothing_is_queued(api, a_ids, redis_conn, body, message):
    response = api.post(GENERATE, json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert response.get_json()["type"] == "ValidationError"
    assert queued_jobs(redis_conn) == 0
    with db.connection_context():
        assert AITaskLog.select().count() == 0


def test_a_body_that_is_not_an_object_is_a_400(api, a_ids):
    assert api.post(GENERATE, json=[1, 2]).status_code == 400
    assert api.client.post(GENERATE, data="ids=1", headers=api.headers).status_code == 400


def test_no_settings_is_a_400_that_says_so(client, personas, redis_conn):
    api = ApiClient(client, personas.owner)
    with db.connection_context():
        a = factories.account_id("A")
    ids = factories.article(a)[1]
    response = api.post(GENERATE, json={"ids": ids})
    assert response.status_code == 400
    assert "No active image-generation settings" in response.get_json()["error"]
    assert [i.status for i in factories.images(ids)] == ["pending"] * 3


def test_an_invalid_model_stored_in_settings_is_a_400(api, a_ids, redis_conn):
    with db.connection_context():
        from models import IntegrationSettings
        row = IntegrationSettings.get()
        row.config = {**row.config, "provider": "openai", "model": "dall-e-9"}
        row.save()
    response = api.post(GENERATE, json={"ids": a_ids})
    assert response.status_code == 400 and "dall-e-9" in response.get_json()["error"]
    assert queued_jobs(redis_conn) == 0


def test_openai_without_a_key_is_a_400(api, a_ids):
    factories.settings(factories.image(a_ids[0]).account_id, provider="openai", model="gpt-image-2")
    response = api.post(GENERATE, json={"ids": a_ids})
    assert response.status_code == 400 and "API key" in response.get_json()["error"]


@pytest.mark.parametrize("model, date, replacement", [("dall-e-3", "2026-05-12", "gpt-image-2.6-sunburst"),
                                                      ("gpt-image-1-mini", "2026-12-01", "gpt-image-2.6-flare")])
def test_a_retired_model_is_refused_before_any_call_naming_its_replacement(api, a_ids, redis_conn, fake_openai, model,
                                                                          date, replacement):
    with db.connection_context():
        from models import IntegrationSettings
        factories.settings(factories.image(a_ids[0]).account_id, provider="openai", model="gpt-image-2",
                           api_key=fake_openai.api_key, base_url=fake_openai.base_url)
        row = IntegrationSettings.get()
        row.config = {**row.config, "model": model}  # saved before OpenAI shut the model down
        row.save()
    before = queued_jobs(redis_conn)
    response = api.post(GENERATE, json={"ids": a_ids})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert model in error and date in error and replacement in error, error
    assert queued_jobs(redis_conn) == before and fake_openai.call_count == 0
    assert [i.status for i in factories.images(a_ids)] == ["pending"] * 3
    shown = api.get("/v1/system/settings/integrations/image_generation/").get_json()
    assert shown["model"] == model  # the row is not rewritten behind the account's back
    assert shown["model_status"] == {"state": "retired", "shutdown_date": date, "replacement": replacement}


def test_another_accounts_ids_answer_like_missing_ones(app, personas, a_ids, redis_conn):
    outsider = ApiClient(app.test_client(), personas.outsider)
    with db.connection_context():
        factories.settings(factories.account_id("B"), provider="placeholder")
    theirs = outsider.post(GENERATE, json={"ids": [a_ids[0]]})
    missing = outsider.post(GENERATE, json={"ids": [999999]})
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json()["error"].replace(str(a_ids[0]), "N") == missing.get_json()["error"].replace("999999", "N")
    assert factories.image(a_ids[0]).status == "pending"
    assert queued_jobs(redis_conn) == 0


def test_images_without_prompts_are_skipped_with_a_warning(api, a_ids):
    with db.connection_context():
        from models import Images
        Images.update(prompt="").where(Images.id == a_ids[1]).execute()
    response = api.post(GENERATE, json={"ids": a_ids})
    assert response.status_code == 200
    assert response.get_json()["skipped"] == [{"id": a_ids[1], "reason": "it has no prompt"}]
    assert [i.status for i in factories.images(a_ids)] == ["queued", "pending", "queued"]


def test_only_images_without_prompts_is_a_400(api, a_ids):
    with db.connection_context():
        from models import Images
        Images.update(prompt="").execute()
    response = api.post(GENERATE, json={"ids": a_ids})
    assert response.status_code == 400 and "no prompt" in response.get_json()["error"]


def test_it_answers_at_once_with_the_task_id(api, a_ids, redis_conn):
    response = api.post(GENERATE, json={"ids": a_ids})
    body = response.get_json()
    assert response.status_code == 200
    assert body["success"] is True and body["message"] == "Image generation started" and body["task_id"]
    assert [i.status for i in factories.images(a_ids)] == ["queued"] * 3
    # The parent job, named after the task; it fans out when a worker runs it.
    assert Job.exists(body["task_id"], connection=redis_conn)


def test_a_second_request_for_queued_images_is_told_they_are_in_progress(api, a_ids, redis_conn):
    assert api.post(GENERATE, json={"ids": a_ids}).status_code == 200
    second = api.post(GENERATE, json={"ids": a_ids})
    assert second.status_code == 400
    assert "already being generated" in second.get_json()["error"]
    with db.connection_context():
        assert AITaskLog.select().count() == 1


def test_generated_images_are_skipped_unless_regenerate(api, a_ids, redis_conn):
    with db.connection_context():
        from models import Images
        Images.update(status="generated").where(Images.id == a_ids[0]).execute()
    response = api.post(GENERATE, json={"ids": [a_ids[0]]})
    assert response.status_code == 400 and "regenerate" in response.get_json()["error"]
    again = api.post(GENERATE, json={"ids": [a_ids[0]], "regenerate": True})
    assert again.status_code == 200
    assert factories.image(a_ids[0]).status == "queued"


def test_task_progress_of_another_account_is_a_404(app, api, personas, a_ids):
    task_id = api.post(GENERATE, json={"ids": a_ids}).get_json()["task_id"]
    assert api.get(f"/v1/system/task_progress/{task_id}/").status_code == 200
    outsider = ApiClient(app.test_client(), personas.outsider)
    theirs = outsider.get(f"/v1/system/task_progress/{task_id}/")
    missing = outsider.get("/v1/system/task_progress/nope/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json() == missing.get_json()
