"""Estimates before a run, budgets during it, and usage after: through the API, real RQ workers and a
priced fake provider (an OpenAI-compatible server the account prices at $0.05 per image)."""

import datetime as dt
from decimal import Decimal

import pytest
from rq import Queue

from jobs.connection import get_queue
from jobs.providers import catalog
from models import AITaskLog, ImageAttempt, Images, db
from tests import factories
from tests.api_helpers import GENERATE, SETTINGS, ApiClient
from tests.conftest import WorkerProcess, wait_for
from tests.flow import generate, new_article, use_provider, wait_done

pytestmark = pytest.mark.worker

USAGE = "/v1/system/usage/"
PRICE = 0.05


@pytest.fixture
def api(client, personas, redis_conn):
    return ApiClient(client, personas.owner)


def priced(api, fake, **extra):
    use_provider(api, "openai_compatible", "flux-local", fake, price_per_image=str(PRICE), **extra)


def nothing_queued(redis_conn, ids):
    assert len(get_queue()) == 0
    with db.connection_context():
        assert AITaskLog.select().count() == 0
    assert {i.status for i in factories.images(ids)} == {"pending"}


def test_dry_run_answers_the_sum_of_the_models_estimates_and_queues_nothing(api, fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai, quality="medium",
                 sizes={"featured": "1536x864", "in_article": "1024x1024"})
    ids = new_article()  # a featured image and two in-article ones
    answer = api.post(GENERATE, json={"ids": ids, "dry_run": True})
    assert answer.status_code == 200, answer.get_json()
    spec = catalog.models_for("openai")["gpt-image-2"]
    expected = spec.estimate(1536, 864, "medium") + 2 * spec.estimate(1024, 1024, "medium")
    body = answer.get_json()
    assert body["success"] and body["dry_run"] and body["images"] == 3
    assert body["estimated_cost"] == pytest.approx(float(expected)) and body["estimated_cost"] > 0
    assert body["budget"] == {"monthly_limit": None, "run_limit": None, "spent_this_month": 0.0, "remaining": None}
    nothing_queued(redis_conn, ids)
    assert fake_openai.calls == []


def test_a_request_over_the_monthly_budget_is_refused_naming_what_is_left(api, fake_compatible, redis_conn):
    priced(api, fake_compatible, monthly_budget=0.10)
    ids = new_article(prompts=("one", "two", "three", "four"))
    refused = api.post(GENERATE, json={"ids": ids})
    assert refused.status_code == 400
    assert refused.get_json() == {
        "type": "BudgetExceeded",
        "error": "$0.10 is left of this month's $0.10 budget, and these 4 images are estimated at $0.20. "
                 "Generate fewer, or raise the budget in Settings."}
    nothing_queued(redis_conn, ids)
    # The dry run says the same without refusing.
    estimate = api.post(GENERATE, json={"ids": ids, "dry_run": True}).get_json()
    assert estimate["estimated_cost"] == pytest.approx(0.20)
    assert estimate["budget"] == {"monthly_limit": 0.1, "run_limit": None, "spent_this_month": 0.0, "remaining": 0.1}


def test_a_run_over_the_per_run_budget_is_refused(api, fake_compatible, redis_conn):
    priced(api, fake_compatible, run_budget=0.10)
    ids = new_article(prompts=("one", "two", "three"))
    refused = api.post(GENERATE, json={"ids": ids})
    assert refused.status_code == 400 and refused.get_json()["type"] == "BudgetExceeded"
    assert "over the $0.10 budget per run" in refused.get_json()["error"]
    nothing_queued(redis_conn, ids)


def test_a_second_request_counts_what_the_first_holds(api, fake_compatible, redis_conn, own_queue):
    """No worker takes own_queue: the first task's images stay queued, holding their estimate."""
    priced(api, fake_compatible, monthly_budget=0.10)
    first, second = new_article(prompts=("one", "two")), new_article(prompts=("three",))
    generate(api, first)
    refused = api.post(GENERATE, json={"ids": second})
    assert refused.status_code == 400
    assert refused.get_json()["error"].startswith("$0.00 is left of this month's $0.10 budget")


def test_a_run_stops_calling_at_the_cap_and_says_why(api, client, personas, fake_compatible, own_queue):
    priced(api, fake_compatible, monthly_budget=0.15, max_concurrent_calls=1)
    fake_compatible.set_load(latency=1.5)
    ids = new_article(prompts=("one", "two", "three"))
    worker = WorkerProcess("budget")
    try:
        task_id = generate(api, ids)  # $0.15 estimated: within the budget
        wait_for(lambda: len(fake_compatible.calls) == 1, timeout=30, message="the first call")
        # The manager lowers the cap while the first call is in flight: it is paid for, no other fits.
        lowered = api.put(SETTINGS, json={"monthly_budget": 0.05})
        assert lowered.status_code == 200, lowered.get_json()
        final = wait_done(api, task_id, timeout=60)
    finally:
        worker.stop()
    assert len(fake_compatible.calls) == 1
    assert final["totals"]["generated"] == 1 and final["totals"]["failed"] == 2
    assert final["totals"]["cost"] == pytest.approx(PRICE)
    assert final["message"] == "1 image generated, 2 failed"
    stopped = [i for i in final["images"] if i["status"] == "failed"]
    for image in stopped:
        assert image["error"].startswith("Monthly budget reached: $0.05 of this month's $0.05 is spent or in "
                                         "flight, and this image is estimated at $0.05")
        assert image["cost"] is None  # never called, never charged
    usage = api.get(USAGE).get_json()
    assert usage["spent"] == pytest.approx(PRICE) and usage["images_generated"] == 1
    assert usage["images_failed"] == 2
    assert usage["budget"]["remaining"] == 0.0


def test_usage_matches_the_images_costs_by_model_and_by_day_and_stays_in_its_account(
        api, client, personas, fake_compatible, worker):
    other = ApiClient(client.application.test_client(), personas.outsider)
    priced(other, fake_compatible)
    outsider_ids = new_article(prompts=("elsewhere",), account="B")
    assert wait_done(other, generate(other, outsider_ids))["state"] == "done"

    priced(api, fake_compatible)
    flux = new_article(prompts=("one", "two", "three"))
    assert wait_done(api, generate(api, flux))["totals"]["generated"] == 3
    use_provider(api, "openai_compatible", "sdxl-turbo", fake_compatible, price_per_image="0.02")
    turbo = new_article(prompts=("four", "five"))
    final = wait_done(api, generate(api, turbo))
    assert final["totals"]["generated"] == 2
    # One of the sdxl images was charged yesterday (the ledger's day, as a month's first day would be).
    yesterday = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=1)
    with db.connection_context():
        ImageAttempt.update(charged_at=yesterday).where(ImageAttempt.image_id == turbo[0]).execute()
        costs = {i.id: i.cost for i in Images.select().where(Images.id.in_(flux + turbo))}

    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    usage = api.get(USAGE, query_string={"month": yesterday.strftime("%Y-%m")}).get_json()
    if yesterday.strftime("%Y-%m") == month:
        assert usage["spent"] == pytest.approx(float(sum(costs.values())))
        assert usage["by_model"] == {"flux-local": {"images": 3, "cost": pytest.approx(3 * PRICE)},
                                     "sdxl-turbo": {"images": 2, "cost": pytest.approx(0.04)}}
        today = dt.datetime.now(dt.UTC).date().isoformat()
        assert usage["by_day"] == {yesterday.date().isoformat(): pytest.approx(float(costs[turbo[0]])),
                                   today: pytest.approx(float(sum(costs.values()) - costs[turbo[0]]))}
        assert usage["images_generated"] == 5 and usage["images_failed"] == 0
    else:  # today is the 1st: yesterday's charge belongs to last month
        assert usage["spent"] == pytest.approx(float(costs[turbo[0]]))
    assert sum(Decimal(str(v)) for v in usage["by_day"].values()) == Decimal(str(usage["spent"]))
    # The outsider's spend is its own.
    theirs = other.get(USAGE).get_json()
    assert theirs["spent"] == pytest.approx(PRICE) and list(theirs["by_model"]) == ["flux-local"]
    assert api.get(USAGE, query_string={"month": "2026-13"}).status_code == 400


def test_staff_see_usage_and_may_not_set_budgets(client, personas, fake_compatible):
    staff = ApiClient(client, personas.staff)
    assert staff.get(USAGE).status_code == 200
    assert staff.put(SETTINGS, json={"monthly_budget": 1000}).status_code == 403


def test_budgets_are_validated(api):
    answer = api.put(SETTINGS, json={"monthly_budget": "-3", "run_budget": "lots"})
    assert answer.status_code == 400
    fields = answer.get_json()["fields"]
    assert set(fields) >= {"monthly_budget", "run_budget"}
    assert api.put(SETTINGS, json={"monthly_budget": "12.50", "run_budget": ""}).status_code == 200
    view = api.get(SETTINGS).get_json()
    assert view["monthly_budget"] == 12.5 and view["run_budget"] is None


def test_a_dry_run_with_regenerate_estimates_generated_images_and_claims_none(api, fake_compatible, redis_conn):
    priced(api, fake_compatible)
    ids = new_article(prompts=("one",))
    with db.connection_context():
        Images.update(status="generated").where(Images.id.in_(ids)).execute()
    body = api.post(GENERATE, json={"ids": ids, "regenerate": True, "dry_run": True}).get_json()
    assert body["images"] == 1 and body["estimated_cost"] == pytest.approx(PRICE)
    assert {i.status for i in factories.images(ids)} == {"generated"}
    assert Queue(get_queue().name, connection=redis_conn).count == 0
