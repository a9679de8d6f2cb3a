"""`GET /v1/system/tasks/`: the account's runs, newest first, a page at a time, with who started each,
its articles, counts, cost and state, read from the database after Redis has forgotten the jobs."""

import pytest

from tests.api_helpers import SETTINGS, ApiClient
from tests.flow import generate, new_article, progress, use_provider, wait_done

pytestmark = pytest.mark.worker

TASKS = "/v1/system/tasks/"


def test_runs_are_listed_newest_first_with_who_started_them_and_what_they_did(
        client, personas, fake_compatible, worker, redis_conn):
    owner, staff = ApiClient(client, personas.owner), ApiClient(client.application.test_client(), personas.staff)
    outsider = ApiClient(client.application.test_client(), personas.outsider)
    use_provider(owner, "openai_compatible", "flux-local", fake_compatible, price_per_image="0.05")
    use_provider(outsider, "openai_compatible", "flux-local", fake_compatible, price_per_image="0.05")
    first = wait_done(owner, generate(owner, new_article(prompts=("one", "two"))))
    fake_compatible.script("bad_request", prompt="broken")
    second = wait_done(staff, generate(staff, new_article(prompts=("fine", "broken"))))
    wait_done(outsider, generate(outsider, new_article(prompts=("theirs",), account="B")))
    for key in redis_conn.scan_iter("rq:job:*"):  # the history does not depend on RQ's results
        redis_conn.delete(key)

    body = owner.get(TASKS).get_json()
    assert body["count"] == 2 and body["page"] == 1 and body["next"] is None
    newest, oldest = body["results"]
    assert [newest["task_id"], oldest["task_id"]] == [second["task_id"], first["task_id"]]
    assert newest["created_by"] == "staff@a.test" and oldest["created_by"] == "owner@a.test"
    assert newest["state"] == "done" and newest["totals"]["generated"] == 1 and newest["totals"]["failed"] == 1
    assert oldest["totals"]["generated"] == 2 and oldest["cost"] == pytest.approx(0.10)
    assert oldest["function_name"] == "generate_images_from_prompts"
    assert oldest["articles"] == [{"id": oldest["articles"][0]["id"], "title": "A day at the sea"}]
    assert oldest["finished_at"] >= oldest["created_at"] and oldest["duration_seconds"] >= 0
    # The outsider sees only its own run; a staff member sees the account's.
    assert [r["created_by"] for r in outsider.get(TASKS).get_json()["results"]] == ["outsider@b.test"]
    assert staff.get(TASKS).get_json()["count"] == 2


def test_runs_are_paginated_with_a_next_link(client, personas, redis_conn, own_queue):
    api = ApiClient(client, personas.owner)
    assert api.put(SETTINGS, json={"provider": "placeholder", "model": "placeholder-v1"}).status_code == 200
    ids = [i for n in range(7) for i in new_article(prompts=(f"a{n}", f"b{n}", f"c{n}"))]
    tasks = [generate(api, [image_id]) for image_id in ids]  # queued: no worker takes own_queue
    page_one = api.get(TASKS).get_json()
    assert page_one["count"] == 21 and len(page_one["results"]) == 20
    assert page_one["results"][0]["task_id"] == tasks[-1] and page_one["results"][0]["state"] == "queued"
    assert page_one["next"].endswith("/v1/system/tasks/?page=2")
    page_two = api.get(TASKS, query_string={"page": 2}).get_json()
    assert [r["task_id"] for r in page_two["results"]] == [tasks[0]] and page_two["next"] is None


def test_an_old_run_reads_as_it_ran_after_its_images_were_regenerated(client, personas, fake_compatible, worker):
    api = ApiClient(client, personas.owner)
    use_provider(api, "openai_compatible", "flux-local", fake_compatible, price_per_image="0.05")
    fake_compatible.script("bad_request", prompt="broken")
    ids = new_article(prompts=("fine", "broken"))
    first = wait_done(api, generate(api, ids))
    use_provider(api, "openai_compatible", "flux-local", fake_compatible, price_per_image="0.02")
    second = wait_done(api, generate(api, ids, regenerate=True))
    assert second["totals"]["generated"] == 2 and second["totals"]["cost"] == pytest.approx(0.04)
    again = progress(api, first["task_id"])
    assert [i["status"] for i in again["images"]] == ["generated", "failed"]
    assert again["images"][0]["cost"] == pytest.approx(0.05)
    assert again["images"][1]["error"] == first["images"][1]["error"]
    assert again["totals"] == first["totals"] and again["state"] == "done"
