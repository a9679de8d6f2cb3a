"""The progress everyone watching a task shares: built once for all its pollers, dropped when an image
ends, never shown to another account, and answered 304 to a poller whose view has not changed."""

import time

import pytest
from rq.job import Job

from jobs import progress_cache
from jobs.engine import done_job_id
from models import db
from tests import factories
from tests.api_helpers import ApiClient, progress_url
from tests.conftest import wait_for
from tests.flow import generate, new_article, use_provider, wait_done

pytestmark = pytest.mark.worker


@pytest.fixture
def api(client, personas, redis_conn):
    api = ApiClient(client, personas.owner)
    assert api.put("/v1/system/settings/integrations/image_generation/",
                   json={"provider": "placeholder", "model": "placeholder-v1"}).status_code == 200
    return api


@pytest.fixture
def statements():
    """Counts the SQL statements the app runs."""
    counter = {"n": 0, "sql": []}
    original = db.obj.execute_sql

    def counting(sql, params=None, *args, **kwargs):
        counter["n"] += 1
        counter["sql"].append(sql)
        return original(sql, params, *args, **kwargs)

    db.obj.execute_sql = counting
    yield counter
    db.obj.execute_sql = original


def test_a_poller_whose_view_has_not_changed_gets_304(api, worker):
    task_id = generate(api, new_article())
    wait_done(api, task_id)
    first = api.get(progress_url(task_id))
    assert first.status_code == 200 and first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = api.get(progress_url(task_id), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    stale = api.get(progress_url(task_id), headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.get_json() == first.get_json()
    # The panel's fragment too, as htmx asks for it (the browser revalidates what it holds).
    fragment = api.get(f"/writer/tasks/{task_id}/progress", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and fragment.headers["ETag"] and b"progress-panel" in fragment.data
    unchanged = api.get(f"/writer/tasks/{task_id}/progress",
                        headers={"HX-Request": "true", "If-None-Match": fragment.headers["ETag"]})
    assert unchanged.status_code == 304


def test_pollers_of_a_task_share_one_view(api, worker, redis_conn, statements):
    task_id = generate(api, new_article())
    wait_done(api, task_id)
    # The finisher drops the view when it writes the task's end; build it after that.
    finisher = Job.fetch(done_job_id(task_id), connection=redis_conn)
    wait_for(lambda: finisher.get_status() == "finished", timeout=30, message="the finisher")
    redis_conn.delete(progress_cache.KEY.format(task_id))
    api.get(progress_url(task_id))  # builds the view
    statements["sql"].clear()
    for _ in range(5):
        assert api.get(progress_url(task_id)).status_code == 200
    # Only the bearer token's own lookups: no poll read the task or its images again.
    tables = ('"images"', '"ai_task_log"', '"image_attempt"')
    assert not [sql for sql in statements["sql"] if any(t in sql for t in tables)], statements["sql"]
    assert redis_conn.pttl(progress_cache.KEY.format(task_id)) > progress_cache.RUNNING_MS


def test_a_view_cached_for_one_account_is_a_404_for_another(api, client, personas, worker):
    task_id = generate(api, new_article())
    wait_done(api, task_id)
    assert api.get(progress_url(task_id)).status_code == 200  # cached for A
    outsider = ApiClient(client.application.test_client(), personas.outsider)
    missing = outsider.get(progress_url("0" * 32))
    theirs = outsider.get(progress_url(task_id))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json() == missing.get_json()


def test_the_end_of_an_image_shows_at_the_next_poll(api, fake_compatible, worker):
    use_provider(api, "openai_compatible", "flux-local", fake_compatible)
    fake_compatible.set_load(latency=0.5)
    ids = new_article(prompts=("one",))
    task_id = generate(api, ids)
    # Polled faster than the cache lives: when the image ends, the cache holds a view from before.
    deadline = time.monotonic() + 30
    while factories.image(ids[0]).status != "generated":
        assert time.monotonic() < deadline, "the image did not end"
        assert api.get(progress_url(task_id)).status_code == 200
        time.sleep(0.05)
    time.sleep(0.1)  # the end's bookkeeping; far less than the second a running task's view lives
    view = api.get(progress_url(task_id)).get_json()
    assert view["images"][0]["status"] == "generated" and view["state"] == "done"
