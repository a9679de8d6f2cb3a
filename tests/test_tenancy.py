"""Another account's objects answer exactly like missing ones — same status, same body — on every
endpoint, page, fragment, image file and task-progress URL, and nothing is queued."""

import os
import re

import pytest
from rq import Queue

from jobs.tasks import run_ai_item, start_task
from models import AITaskLog, Images, db
from tests import factories, ledger
from tests.api_helpers import ApiClient
from tests.flow import parked_queue
from tests.page_helpers import Staff

MISSING_ID = 987654
MISSING_TASK = "f" * 32



@pytest.fixture(autouse=True)
def _nothing_drains_the_queue(own_queue):
    """Requests here enqueue to a queue of the test's own that no worker takes from, so a count of it
    sees every job a refused request might have queued (the session worker would drain the default)."""


@pytest.fixture
def owned(personas, redis_conn):
    """Account A's article with one generated image (stored, with a file) and its task."""
    with db.connection_context():
        a = factories.account_id("A")
    factories.settings(a, provider="placeholder", image_format="png")
    factories.settings(factories.account_id("B"), provider="placeholder")
    content, ids = factories.article(a, prompts=("Owned picture", "Another"))
    with db.connection_context():
        task = start_task("generate_images_from_prompts", {"ids": ids[:1]}, a, queue=parked_queue(redis_conn))
    run_ai_item(task["task_id"], ids[0])  # inline: saves inline too
    image = factories.image(ids[0])
    assert image.status == "generated" and image.file_path
    return {"content": content.id, "image": ids[0], "pending": ids[1], "task": task["task_id"],
            "file": image.image_url.split("?")[0]}


def _requests(o):
    """(name, method, url for A's object, url for a missing one, json/form body builder)."""
    return [
        ("api content", "get", f"/v1/writer/content/{o['content']}/", f"/v1/writer/content/{MISSING_ID}/", None),
        ("api prompt edit", "patch", f"/v1/writer/images/{o['pending']}/", f"/v1/writer/images/{MISSING_ID}/",
         lambda _: {"prompt": "hijacked"}),
        ("api generate", "post", "/v1/writer/images/generate_images/", "/v1/writer/images/generate_images/",
         lambda i: {"ids": [i]}),
        ("api regenerate", "post", "/v1/writer/images/generate_images/", "/v1/writer/images/generate_images/",
         lambda i: {"ids": [i], "regenerate": True}),
        ("api task progress", "get", f"/v1/system/task_progress/{o['task']}/",
         f"/v1/system/task_progress/{MISSING_TASK}/", None),
        ("image file", "get", o["file"], o["file"].replace(f"/{o['image']}.", f"/{MISSING_ID}."), None),
    ]


def _pages(o):
    return [
        ("article fragment", "get", f"/writer/images/articles/{o['content']}",
         f"/writer/images/articles/{MISSING_ID}", None),
        ("page prompt edit", "post", f"/writer/images/{o['pending']}/prompt", f"/writer/images/{MISSING_ID}/prompt",
         lambda _: {"prompt": "hijacked"}),
        ("page generate", "post", "/writer/images/generate", "/writer/images/generate", lambda i: {"ids": str(i)}),
        ("page generate article", "post", "/writer/images/generate", "/writer/images/generate",
         lambda i: {"content_id": str(i)}),
        ("progress panel", "get", f"/writer/tasks/{o['task']}/progress", f"/writer/tasks/{MISSING_TASK}/progress",
         None),
    ]


def _same(a_response, missing_response, o):
    if a_response.status_code != missing_response.status_code:
        return False
    body = a_response.get_data(as_text=True)
    if body == missing_response.get_data(as_text=True):
        return True
    # Bodies that name the id they were asked for: compare with the ids swapped.
    for value in (o["content"], o["image"], o["pending"]):
        body = re.sub(rf"(?<![\w.-]){value}(?![\w-])", str(MISSING_ID), body)
    body = body.replace(o["task"], MISSING_TASK)
    return a_response.status_code == missing_response.status_code and body == missing_response.get_data(as_text=True)


def _state(redis_conn):
    with db.connection_context():
        images = [(i.id, i.status, i.prompt, i.task_id) for i in Images.select().order_by(Images.id)]
        return images, AITaskLog.select().count(), Queue(os.environ["RQ_QUEUE"], connection=redis_conn).count


def test_the_api_and_image_files_answer_an_outsider_like_missing_objects(app, personas, owned, redis_conn):
    outsider = ApiClient(app.test_client(), personas.outsider)
    before = _state(redis_conn)
    for name, method, theirs, missing, body in _requests(owned):
        target = owned["content"] if "content" in name else owned["image"] if "generate" in name else None
        kwargs = {"json": body(owned["pending"] if name == "api generate" else target)} if body else {}
        missing_kwargs = {"json": body(MISSING_ID)} if body else {}
        a = getattr(outsider, method)(theirs, **kwargs)
        m = getattr(outsider, method)(missing, **missing_kwargs)
        ledger.bad_input("another account's object through the API")
        assert a.status_code in (400, 404), (name, a.status_code)
        assert _same(a, m, owned), (name, a.get_data(as_text=True)[:200], m.get_data(as_text=True)[:200])
    assert _state(redis_conn) == before


def test_pages_and_fragments_answer_an_outsider_like_missing_objects(app, personas, owned, redis_conn):
    outsider = Staff(app.test_client(), personas.outsider)
    before = _state(redis_conn)
    for name, method, theirs, missing, body in _pages(owned):
        target = owned["content"] if "article" in name else owned["pending"]
        a = getattr(outsider, method)(theirs, **({"data": body(target)} if body else {}))
        m = getattr(outsider, method)(missing, **({"data": body(MISSING_ID)} if body else {}))
        ledger.bad_input("another account's object through a page")
        assert a.status_code == 404, (name, a.status_code)
        assert _same(a, m, owned), (name, a.get_data(as_text=True)[:300], m.get_data(as_text=True)[:300])
    assert _state(redis_conn) == before


def test_the_owner_reaches_every_one_of_them(app, personas, owned):
    owner = ApiClient(app.test_client(), personas.owner)
    assert owner.get(f"/v1/writer/content/{owned['content']}/").status_code == 200
    assert owner.get(f"/v1/system/task_progress/{owned['task']}/").status_code == 200
    assert owner.get(owned["file"]).status_code == 200
    page = Staff(app.test_client(), personas.owner)
    assert page.get(f"/writer/images/articles/{owned['content']}").status_code == 200
    assert page.get(f"/writer/tasks/{owned['task']}/progress").status_code == 200
