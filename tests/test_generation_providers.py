"""Generation through the API and a real worker process against fake OpenAI and Runware servers
(real HTTP on 127.0.0.1, the providers' wire format): the issue's acceptance 2–4 and the plan's 6.3."""

import threading

import pytest
from rq.job import Job

from jobs.engine import item_job_id
from tests import factories
from tests.api_helpers import GENERATE, SETTINGS, ApiClient, progress_url
from tests.conftest import login, wait_for
from tests.fakes.faults import Fault
from tests.flow import generate, new_article, use_provider, wait_done

pytestmark = pytest.mark.worker


@pytest.fixture
def api(client, personas, worker):
    return ApiClient(client, personas.owner)


@pytest.mark.parametrize("model", ["dall-e-3", "gpt-image-1"])
def test_openai_models_work_through_base_url(api, fake_openai, model):
    use_provider(api, "openai", model, fake_openai)
    ids = new_article()
    content_id = factories.image(ids[0]).content_id
    final = wait_done(api, generate(api, ids))
    assert final["message"] == "3 images generated successfully"
    assert fake_openai.call_count == 3
    rows = api.get(f"/v1/writer/content/{content_id}/").get_json()["images"]
    assert all(r["status"] == "generated" and r["model"] == model and r["cost"] > 0 for r in rows)
    featured = rows[0]
    assert (featured["width"], featured["height"]) == ((1792, 1024) if model == "dall-e-3" else (1536, 1024))
    if model == "dall-e-3":
        assert featured["revised_prompt"]  # dall-e-3 rewrites prompts and says so
    assert final["totals"]["cost"] == pytest.approx(sum(r["cost"] for r in rows))
    # The prompt sent is the account's template filled with the article's title.
    assert all("A day at the sea" in call.prompt for call in fake_openai.calls)


def test_runware_works_with_its_negative_prompt(api, fake_runware):
    use_provider(api, "runware", "runware:100@1", fake_runware, image_format="webp")
    api.put("/v1/thinker/prompts/", json={"negative_prompt": "no people"})
    ids = new_article()
    final = wait_done(api, generate(api, ids))
    assert final["totals"]["generated"] == 3
    tasks = [call.json[-1] for call in fake_runware.calls]
    assert all(t["negativePrompt"] == "no people" and t["outputFormat"] == "WEBP" for t in tasks)
    assert all(i["status"] == "generated" for i in final["images"])


def test_a_content_policy_refusal_fails_only_that_image_with_the_providers_reason(api, fake_openai):
    use_provider(api, "openai", "dall-e-3", fake_openai)
    fake_openai.on_prompt("Gulls", "content_policy")
    ids = new_article()
    final = wait_done(api, generate(api, ids))
    assert final["message"] == "2 images generated, 1 failed"
    by_id = {i["id"]: i for i in final["images"]}
    assert by_id[ids[1]]["status"] == "failed"
    assert by_id[ids[1]]["error"].startswith("OpenAI rejected the prompt under its content policy")
    assert by_id[ids[0]]["status"] == by_id[ids[2]]["status"] == "generated"
    assert fake_openai.prompt_counts()[fake_openai.calls[1].prompt] == 1  # never retried


def test_a_429_with_retry_after_is_waited_out_and_succeeds(api, fake_openai):
    use_provider(api, "openai", "gpt-image-1", fake_openai)
    fake_openai.script(Fault("rate_limit", retry_after=2))
    ids = new_article(("One image",))
    final = wait_done(api, generate(api, ids))
    assert final["totals"]["generated"] == 1
    first, second = fake_openai.calls
    assert second.at - first.at >= 2.0


def test_an_invalid_key_fails_every_image_with_a_readable_reason(api, fake_openai):
    use_provider(api, "openai", "dall-e-3", fake_openai)
    api.put(SETTINGS, json={"api_key": "sk-wrong-key-0000"})
    ids = new_article()
    final = wait_done(api, generate(api, ids))
    assert final["totals"]["failed"] == 3
    assert all(i["error"] == "OpenAI: invalid API key" for i in final["images"])
    assert "sk-wrong-key-0000" not in str(final)


def test_two_identical_requests_sent_together_generate_each_image_once(app, personas, api, fake_openai):
    use_provider(api, "openai", "gpt-image-1", fake_openai)
    fake_openai.set_latency(0.2)
    ids = new_article()
    barrier = threading.Barrier(2)
    answers = []

    def send():
        client = ApiClient(app.test_client(), personas.owner)
        barrier.wait()
        answers.append(client.post(GENERATE, json={"ids": ids}))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 400], [a.get_json() for a in answers]
    refused = next(a for a in answers if a.status_code == 400).get_json()
    assert "already being generated" in refused["error"]
    task_id = next(a for a in answers if a.status_code == 200).get_json()["task_id"]
    wait_done(api, task_id)
    assert fake_openai.call_count == 3
    assert sorted(fake_openai.prompt_counts().values()) == [1, 1, 1]


def test_requeueing_a_failed_image_job_after_the_fix_regenerates_exactly_that_image(app, personas, api, fake_openai,
                                                                                   redis_conn):
    use_provider(api, "openai", "dall-e-3", fake_openai)
    fake_openai.on_prompt("Gulls", Fault("server_error", status=500))
    ids = new_article()
    task_id = generate(api, ids)
    final = wait_done(api, task_id)
    assert final["totals"]["failed"] == 1 and final["totals"]["generated"] == 2
    failed_job = Job.fetch(item_job_id(task_id, ids[1]), connection=redis_conn)
    assert failed_job.get_status() == "failed"  # it sits in RQ's failed registry for ops
    calls_before = fake_openai.call_count

    fake_openai.reset()  # the provider recovers
    ops = app.test_client()
    csrf = login(ops, personas.admin)
    requeued = ops.post(f"/rq/job/{failed_job.id}/requeue", headers={"X-CSRFToken": csrf})  # rq-dashboard's button
    assert requeued.status_code == 200, requeued.data
    fixed = wait_for(lambda: (v := api.get(progress_url(task_id)).get_json())["totals"]["generated"] == 3 and v,
                     timeout=30, message="the requeued image")
    assert fixed["state"] == "done" and fixed["message"] == "3 images generated successfully"
    assert fake_openai.call_count == 1 and "Gulls" in fake_openai.calls[0].prompt
    assert calls_before >= 3  # the 500s were retried before the image failed
