"""Driving the staff pages as htmx does: a logged-in session, the CSRF header, parsed fragments."""

import re
import uuid

from rq import Queue

from jobs.connection import get_redis
from models import AITaskLog, Images, db
from tests.conftest import login


class Staff:
    """A logged-in browser session: `post` sends the CSRF header the way base.html makes htmx send it."""

    def __init__(self, client, user):
        self.client = client
        self.token = login(client, user)

    def get(self, url, htmx=False, **kw):
        return self.client.get(url, headers=_headers(htmx), **kw)

    def post(self, url, data=None, htmx=True, csrf=True, **kw):
        headers = _headers(htmx)
        if csrf:
            headers["X-CSRFToken"] = self.token
        return self.client.post(url, data=data or {}, headers=headers, **kw)


def _headers(htmx: bool) -> dict:
    return {"HX-Request": "true"} if htmx else {}


def park_jobs(monkeypatch) -> Queue:
    """Send this test's jobs to a queue no worker reads, so a task stays exactly as started."""
    name = f"pages-parked-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("RQ_QUEUE", name)
    return Queue(name, connection=get_redis())


def running_task(account_id: int, ids, statuses=None, task_id=None) -> str:
    """A task in the middle of its run, written the way the engine writes one (no queue involved)."""
    task_id = task_id or uuid.uuid4().hex
    statuses = statuses or ["generating"] + ["queued"] * (len(ids) - 1)
    with db.connection_context():
        AITaskLog.create(task_id=task_id, account=account_id, function_name="generate_images_from_prompts",
                         # Not what the panel shows: it says which image is being made from the images.
                         state="running", phase="AI_CALL", message="(the engine's last task message)",
                         item_ids=list(ids), totals={"total": len(ids), "skipped": 0})
        for image_id, status in zip(ids, statuses, strict=True):
            Images.update(status=status, task_id=task_id).where(Images.id == image_id).execute()
    return task_id


def ids_in(html: str, name: str = "ids") -> list[int]:
    """The values of the hidden inputs called `name`, in page order."""
    return [int(v) for v in re.findall(rf'name="{name}" value="(\d+)"', html)]


def section(html: str, element_id: str) -> str:
    """The outer HTML of the element with this id (the fragments here never nest their own tag)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"', html)
    assert match, f"no element #{element_id}"
    tag = match.group(1)
    depth, pos = 0, match.start()
    for token in re.finditer(rf"<(/?){tag}\b[^>]*>", html[match.start():]):
        depth += -1 if token.group(1) else 1
        if depth == 0:
            return html[pos:match.start() + token.end()]
    raise AssertionError(f"#{element_id} is not closed")
