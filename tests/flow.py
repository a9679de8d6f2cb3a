"""Steps shared by the tests that drive generation end to end through the API."""

from models import db
from tests import factories
from tests.api_helpers import GENERATE, SETTINGS, progress_url
from tests.conftest import wait_for

PROMPTS = ("A lighthouse at dusk", "Gulls over waves", "A sandy path through dunes")


def use_provider(api, provider, model, fake, **extra):
    """Point account A at a fake provider server (its key and base_url)."""
    response = api.put(SETTINGS, json={"provider": provider, "model": model, "api_key": fake.api_key,
                                       "base_url": fake.base_url, "image_format": "png", **extra})
    assert response.status_code == 200, response.get_json()


def new_article(prompts=PROMPTS, account="A"):
    """An article of `account` with those prompts; returns its image ids (featured first)."""
    with db.connection_context():
        return factories.article(factories.account_id(account), prompts=prompts)[1]


def generate(api, ids, **body) -> str:
    response = api.post(GENERATE, json={"ids": ids, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["task_id"]


def progress(api, task_id) -> dict:
    return api.get(progress_url(task_id)).get_json()


def wait_done(api, task_id, timeout=60) -> dict:
    return wait_for(lambda: (v := progress(api, task_id))["state"] in ("done", "failed") and v,
                    timeout=timeout, message=f"task {task_id} to end")


def parked_queue(redis_conn):
    """A real queue of the test's own that no worker drains: the parent job waits there while the test
    drives the item jobs itself."""
    from uuid import uuid4

    from rq import Queue

    return Queue(f"parked-{uuid4().hex}", connection=redis_conn)
