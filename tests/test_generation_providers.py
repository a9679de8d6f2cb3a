"""Generation through the API and a real worker process against fake OpenAI and Runware servers
(real HTTP on 127.0.0.1, the providers' wire format): the issue's acceptance 2–4 and the plan's 6.3."""

import re
import threading

import pytest
from rq.job import Job

from jobs.engine import item_job_ids
from models import AITaskLog, db
from tests import factories
from tests.api_helpers import GENERATE, SETTINGS, ApiClient, progress_url
from tests.conftest import login, wait_for
from tests.fakes.faults import Fault
from tests.fakes.openai_server import FakeOpenAICompatible
from tests.fakes.runware_server import MODELS as RUNWARE_COSTS
from tests.flow import generate, new_article, use_provider, wait_done
from webapp import writer

pytestmark = pytest.mark.worker


@pytest.fixture
def api(client, personas, worker):
    return ApiClient(client, personas.owner)


@pytest.mark.parametrize("model, image_format, quality", [
    ("gpt-image-2", "webp", "medium"), ("gpt-image-2.5-sunburst", "jpg", "xhigh"),
    ("gpt-image-2.6-flare", "png", "low"),
])
def test_a_gpt_image_2_model_makes_each_placement_natively_and_costs_its_usage(api, fake_openai, model, image_format,
                                                                              quality):
    use_provider(api, "openai", model, fake_openai, image_format=image_format, quality=quality,
                 sizes={"featured": "1536x864", "in_article": "1024x1536"})
    ids = new_article()
    content_id = factories.image(ids[0]).content_id
    final = wait_done(api, generate(api, ids))
    assert final["message"] == "3 images generated successfully"
    assert fake_openai.call_count == 3
    bodies = [call.json for call in fake_openai.calls]
    wire_format = {"jpg": "jpeg"}.get(image_format, image_format)
    for body in bodies:
        assert "response_format" not in body
        assert (body["model"], body["output_format"], body["quality"]) == (model, wire_format, quality)
        assert body["background"] == "opaque" and body["moderation"] == "auto"
        # a stable id of the account that names nothing about it
        assert re.fullmatch(r"acct_[0-9a-f]{24}", body["user"]) and body["user"] == bodies[0]["user"]
        assert ("output_compression" in body) == (image_format != "png")
    assert [b["size"] for b in bodies] == ["1536x864", "1024x1536", "1024x1536"]
    rows = api.get(f"/v1/writer/content/{content_id}/").get_json()["images"]
    assert [(r["width"], r["height"]) for r in rows] == [(1536, 864), (1024, 1536), (1024, 1536)]
    # Each cost is the answer's usage priced per token: text in $5, image out $30 per 1M tokens.
    for row, body in zip(rows, bodies, strict=True):
        usage = fake_openai.usage_for(body)
        expected = (usage["input_tokens_details"]["text_tokens"] * 5 + usage["output_tokens"] * 30) / 1_000_000
        assert row["cost"] == pytest.approx(expected, abs=0.00005)
        assert row["status"] == "generated" and row["model"] == model and row["image_format"] == image_format
    assert [r["provider_request_id"] for r in rows] == fake_openai.request_ids
    assert final["totals"]["cost"] == pytest.approx(sum(r["cost"] for r in rows))
    # The prompt sent is the account's template filled with the article's title.
    assert all("A day at the sea" in call.prompt for call in fake_openai.calls)


def test_the_default_sizes_per_placement_are_what_is_requested_and_stored(api, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai, desktop_enabled=True, mobile_enabled=True)
    with db.connection_context():
        article = writer.create_content(factories.account_id("A"), {"title": "Sizes", "images": [
            {"image_type": t, "position": p, "prompt": f"{t} view"}
            for t, p in (("featured", 0), ("in_article", 1), ("desktop", 0), ("mobile", 0))]})
        ids = [i.id for i in writer.content_images(article.account_id, article.id)]
    wait_done(api, generate(api, ids))
    sizes = {call.json["prompt"]: call.json["size"] for call in fake_openai.calls}
    assert sorted(sizes.values()) == sorted(["1536x864", "1536x1024", "1536x864", "864x1536"]), sizes
    rows = {r["image_type"]: r for r in api.get(f"/v1/writer/content/{article.id}/").get_json()["images"]}
    assert (rows["featured"]["width"], rows["featured"]["height"]) == (1536, 864)
    assert (rows["in_article"]["width"], rows["in_article"]["height"]) == (1536, 1024)
    assert (rows["desktop"]["width"], rows["desktop"]["height"]) == (1536, 864)
    assert (rows["mobile"]["width"], rows["mobile"]["height"]) == (864, 1536)


def test_a_moderation_refusal_fails_only_that_image_and_says_to_edit_the_prompt(api, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.on_prompt("Gulls", "moderation_blocked")
    ids = new_article()
    final = wait_done(api, generate(api, ids))
    assert final["message"] == "2 images generated, 1 failed"
    by_id = {i["id"]: i for i in final["images"]}
    assert by_id[ids[1]]["status"] == "failed"
    assert by_id[ids[1]]["error"] == ("OpenAI's safety system refused this image (violence). Edit the prompt and "
                                      "generate it again.")
    assert by_id[ids[0]]["status"] == by_id[ids[2]]["status"] == "generated"
    gulls = next(c for c in fake_openai.calls if "Gulls" in c.prompt)
    assert fake_openai.prompt_counts()[gulls.prompt] == 1  # never retried
    # support asks for the refused call's id
    assert factories.image(ids[1]).provider_request_id == fake_openai.request_id_of(gulls)


@pytest.mark.parametrize("fault, sentence", [
    ("insufficient_quota", "has no credit left (insufficient_quota). Add credit in OpenAI's billing settings, "
                           "then retry."),
    ("billing_hard_limit", "billing hard limit of the account behind this API key has been reached"),
])
def test_no_credit_fails_after_one_call_and_pauses_the_key_until_a_person_retries(api, fake_openai, fault,
                                                                                  sentence):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.script(fault)
    ids = new_article()
    final = wait_done(api, generate(api, ids))
    assert final["totals"]["failed"] == 3
    assert fake_openai.call_count == 1  # the other images did not spend calls on a key with no credit
    assert all(sentence in i["error"] for i in final["images"]), final["images"]
    # Credit added: pressing Retry lifts the pause and the images are made.
    again = wait_done(api, generate(api, ids))
    assert again["totals"]["generated"] == 3 and fake_openai.call_count == 4


@pytest.mark.parametrize("status", [404, 400])
def test_model_not_found_says_the_model_is_gone_and_which_setting_to_change(api, fake_openai, status):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.model_not_found_status = status
    fake_openai.script("model_not_found")
    ids = new_article(("One image",))
    final = wait_done(api, generate(api, ids))
    assert final["images"][0]["error"] == (
        "OpenAI says the model gpt-image-2 does not exist any more or this key cannot use it (model_not_found). "
        "Choose another model in Settings → Image generation → Model.")
    assert fake_openai.call_count == 1


def test_an_answered_image_that_turns_out_damaged_keeps_its_cost_in_the_task(api, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.on_prompt("Gulls", "truncated_image")  # billed by the provider, unusable for us
    ids = new_article()
    final = wait_done(api, generate(api, ids))
    assert final["message"] == "2 images generated, 1 failed"
    damaged = factories.image(ids[1])
    gulls = next(c for c in fake_openai.calls if "Gulls" in c.prompt)
    usage = fake_openai.usage_for(gulls.json)
    expected = (usage["input_tokens_details"]["text_tokens"] * 5 + usage["output_tokens"] * 30) / 1_000_000
    assert damaged.status == "failed", damaged.error
    assert float(damaged.cost) == pytest.approx(expected, abs=1e-6), (gulls.json, [c.json for c in fake_openai.calls])
    assert damaged.provider_request_id == fake_openai.request_id_of(gulls)
    rows = {r["id"]: r for r in api.get(f"/v1/writer/images/?content_id={damaged.content_id}").get_json()["results"]}
    assert final["totals"]["cost"] == pytest.approx(sum(r["cost"] for r in rows.values()))
    assert final["totals"]["cost"] > sum(r["cost"] for r in rows.values() if r["status"] == "generated")


def test_runware_sends_safety_checks_its_negative_prompt_sizes_and_format_and_costs_what_it_says(api, fake_runware):
    use_provider(api, "runware", "runware:101@1", fake_runware, image_format="webp",
                 sizes={"featured": "1344x768", "in_article": "1024x1024"})
    api.put("/v1/thinker/prompts/", json={"negative_prompt": "no people"})
    ids = new_article()
    final = wait_done(api, generate(api, ids))
    assert final["totals"]["generated"] == 3
    tasks = [call.json[-1] for call in fake_runware.calls]
    assert all(t["negativePrompt"] == "no people" and t["outputFormat"] == "WEBP" for t in tasks)
    assert all(t["safety"] == {"checkContent": True} and t["includeCost"] is True for t in tasks)
    assert fake_runware.deprecated_fields == []  # no checkNsfw
    assert sorted((t["width"], t["height"]) for t in tasks) == [(1024, 1024), (1024, 1024), (1344, 768)]
    assert all(i["status"] == "generated" for i in final["images"])
    assert final["totals"]["cost"] == pytest.approx(3 * RUNWARE_COSTS["runware:101@1"])
    rows = api.get(f"/v1/writer/images/?content_id={factories.image(ids[0]).content_id}").get_json()["results"]
    assert sorted(r["provider_request_id"] for r in rows) == sorted(t["taskUUID"] for t in tasks)


def test_runware_takes_another_air_id_the_account_types(api, fake_runware):
    fake_runware.extra_models["civitai:4384@128713"] = 0.002
    use_provider(api, "runware", "civitai:4384@128713", fake_runware)
    final = wait_done(api, generate(api, new_article(("One image",))))
    assert final["totals"]["generated"] == 1 and final["totals"]["cost"] == pytest.approx(0.002)


@pytest.mark.parametrize("answer_with", ["url", "b64"])
def test_an_openai_compatible_server_without_usage_and_with_its_own_models_makes_images(api, answer_with):
    with FakeOpenAICompatible(models=("flux-local", "sdxl-turbo")) as server:
        server.answer_with = answer_with
        use_provider(api, "openai_compatible", "sdxl-turbo", server, price_per_image="0.002",
                     sizes={"featured": "1000x600"})
        ids = new_article()
        final = wait_done(api, generate(api, ids))
        assert final["totals"]["generated"] == 3, final
        assert [c.json["model"] for c in server.calls] == ["sdxl-turbo"] * 3
        assert "1000x600" in [c.json["size"] for c in server.calls]
        rows = api.get(f"/v1/writer/images/?content_id={factories.image(ids[0]).content_id}").get_json()["results"]
        assert all(r["cost"] == pytest.approx(0.002) and r["model"] == "sdxl-turbo" for r in rows)
        assert final["totals"]["cost"] == pytest.approx(0.006)


def test_a_429_with_retry_after_is_waited_out_and_succeeds(api, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.script(Fault("rate_limit", retry_after=2))
    ids = new_article(("One image",))
    final = wait_done(api, generate(api, ids))
    assert final["totals"]["generated"] == 1
    first, second = fake_openai.calls
    assert second.at - first.at >= 2.0


def test_an_invalid_key_fails_every_image_with_a_readable_reason(api, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    api.put(SETTINGS, json={"api_key": "sk-wrong-key-0000"})
    ids = new_article()
    final = wait_done(api, generate(api, ids))
    assert final["totals"]["failed"] == 3
    assert all(i["error"] == "OpenAI rejected the API key (invalid_api_key): check the key in Settings → Image "
               "generation." for i in final["images"])
    assert "sk-wrong-key-0000" not in str(final)


def test_two_identical_requests_sent_together_generate_each_image_once(app, personas, api, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
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
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    fake_openai.on_prompt("Gulls", Fault("server_error", status=500))
    ids = new_article()
    task_id = generate(api, ids)
    final = wait_done(api, task_id)
    assert final["totals"]["failed"] == 1 and final["totals"]["generated"] == 2
    with db.connection_context():
        failed_job = Job.fetch(item_job_ids(AITaskLog.get(AITaskLog.task_id == task_id))[ids[1]],
                               connection=redis_conn)
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
