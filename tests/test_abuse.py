"""Hostile input and forged jobs: refused clearly, nothing called, nothing leaked, nothing crosses
accounts."""


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.tasks import run_ai_item, start_task
from models import AIPrompt, AITaskLog, Images, db
from tests import factories, ledger
from tests.api_helpers import GENERATE, PROMPTS, ApiClient
from tests.flow import generate, new_article, parked_queue, use_provider, wait_done
from tests.test_prompts import HOSTILE


@pytest.fixture
def api(client, personas, redis_conn):
    return ApiClient(client, personas.owner)


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_templates_are_refused_at_save_naming_the_placeholder(api, template):
    response = api.put(PROMPTS, json={"image_prompt_template": f"Picture of {template}"})
    ledger.bad_input("hostile template at save")
    assert response.status_code == 400
    assert template in response.get_json()["error"]


@pytest.mark.worker
@pytest.mark.parametrize("template", ["{post_title.__class__.__init__.__globals__}", "{image_prompt[0]}", "{foo}"])
def test_a_hostile_template_forced_into_the_database_fails_the_image_without_a_call(api, worker, fake_openai,
                                                                                      template):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    with db.connection_context():
        AIPrompt.create(account=factories.account_id("A"), prompt_type="image_prompt_template", prompt_value=template)
    ids = new_article(("Anything",))
    final = wait_done(api, generate(api, ids))
    ledger.bad_input("hostile template forced into the database")
    error = final["images"][0]["error"]
    assert final["images"][0]["status"] == "failed" and template in error
    assert "globals" not in error.replace(template, "") and "Traceback" not in error
    assert fake_openai.call_count == 0


@pytest.mark.worker
def test_a_title_with_braces_is_inserted_literally(api, worker, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai)
    with db.connection_context():
        _, ids = factories.article(factories.account_id("A"), title="Braces {image_type.__class__}",
                                   prompts=("x",))
    wait_done(api, generate(api, ids))
    assert "Braces {image_type.__class__}" in fake_openai.calls[0].prompt


def test_a_forged_job_for_account_a_naming_bs_image_does_nothing(personas, redis_conn):
    with db.connection_context():
        a, b = factories.account_id("A"), factories.account_id("B")
    factories.settings(a, provider="placeholder")
    factories.settings(b, provider="placeholder")
    b_ids = new_article(account="B")
    a_ids = new_article(account="A")
    with db.connection_context():
        task = start_task("generate_images_from_prompts", {"ids": a_ids[:1]}, a,
                          queue=parked_queue(redis_conn))
        # B's image claimed by nobody; a job for A's task names it.
        Images.update(task_id=task["task_id"], status="queued").where(Images.id == b_ids[0]).execute()
    result = run_ai_item(task["task_id"], b_ids[0])
    ledger.bad_input("forged job: account A naming B's image")
    assert result == {"success": True, "skipped": True}
    assert factories.image(b_ids[0]).status == "queued" and factories.image(b_ids[0]).file_path is None


def test_as_job_never_uses_bs_key(personas, redis_conn, fake_openai):
    from tests.fakes.openai_server import FakeOpenAI

    with db.connection_context():
        a, b = factories.account_id("A"), factories.account_id("B")
    with FakeOpenAI(api_key="sk-b-only") as b_fake:
        factories.settings(a, provider="openai", model="gpt-image-2", api_key=fake_openai.api_key,
                           base_url=fake_openai.base_url)
        factories.settings(b, provider="openai", model="gpt-image-2", api_key="sk-b-only", base_url=b_fake.base_url)
        ids = new_article(("Only A's key",))
        with db.connection_context():
            task = start_task("generate_images_from_prompts", {"ids": ids}, a, queue=parked_queue(redis_conn))
        run_ai_item(task["task_id"], ids[0])
        assert b_fake.call_count == 0
        assert fake_openai.calls[0].headers["Authorization"] == f"Bearer {fake_openai.api_key}"
    assert factories.image(ids[0]).status == "generated"



JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
ENDPOINTS = [("post", GENERATE), ("post", "/v1/writer/content/"), ("put", PROMPTS),
             ("put", "/v1/system/settings/integrations/image_generation/"), ("patch", "/v1/writer/images/1/")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=JSON_VALUES | st.fixed_dictionaries(
    {"ids": JSON_VALUES, "regenerate": JSON_VALUES}) | st.fixed_dictionaries(
    {"title": JSON_VALUES, "images": st.lists(st.fixed_dictionaries(
        {"image_type": st.sampled_from(["featured", "in_article", "x"]) | JSON_VALUES, "position": JSON_VALUES,
         "prompt": JSON_VALUES}), max_size=3)}))
def test_fuzzed_json_bodies_never_cause_a_500(api, endpoint, body):
    method, url = endpoint
    response = getattr(api, method)(url, json=body)
    ledger.bad_input("fuzzed JSON body")
    assert response.status_code < 500, (url, body, response.get_data(as_text=True)[:300])
    assert response.is_json


def test_nothing_is_queued_by_refused_requests(api, redis_conn, own_queue):
    """Requests enqueue to the test's own queue, which no worker drains: the count sees any job queued."""
    from rq import Queue

    factories.settings(factories.account_id("A"), provider="placeholder")
    for body in ({"ids": "1"}, {"ids": [[1]]}, {"ids": [1.0]}, {"ids": [-1]}, {"ids": [5, 5]},
                 {"ids": list(range(1, 10_001))}, [1], "x"):
        assert api.post(GENERATE, json=body).status_code == 400
        ledger.bad_input("malformed generate body")
    assert Queue(own_queue, connection=redis_conn).count == 0
    with db.connection_context():
        assert AITaskLog.select().count() == 0
