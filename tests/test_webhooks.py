"""The webhook (issue #14): when a task ends, one signed POST of its final progress to the account's
webhook URL, retried by RQ on 5xx, timeouts and connection errors, never on a 4xx; the URL checked like a
provider's base URL, at save time and again before each delivery; the secret made by the server, shown
once, stored encrypted; every attempt a row that managers and platform admins can read.

The deliveries run in real worker processes (`python worker.py`, with its RQ scheduler for the retry
intervals) on a queue of the test's own, and go to a real HTTP server on 127.0.0.1 (OUTBOUND_ALLOW allows
it, as conftest sets)."""

import hashlib
import hmac
import inspect
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rq.registry import FailedJobRegistry

from jobs import image_settings, webhooks
from jobs.progress import task_progress
from models import AITaskLog, IntegrationSettings, WebhookDelivery, db
from tests import factories
from tests.api_helpers import SETTINGS, ApiClient
from tests.conftest import WorkerProcess, wait_for
from tests.flow import generate, new_article, progress, wait_done
from tests.page_helpers import Staff, running_task, section

PAGE = "/settings/integrations/image-generation"
DELIVERIES = "/settings/integrations/webhooks/deliveries"
FORM = {"provider": "placeholder", "model": "placeholder-v1", "image_type": "realistic",
        "max_in_article_images": "3", "image_format": "png", "is_active": "on"}


class Receiver:
    """A webhook receiver on 127.0.0.1: each POST gets the next scripted status (200 once the script is
    used up), after the next scripted delay; what arrived is kept, raw body and all."""

    def __init__(self):
        self.statuses: list[int] = []
        self.delays: list[float] = []
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path,
                                          "at": time.time()})
                if receiver.delays:
                    time.sleep(receiver.delays.pop(0))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/images"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def api(client, personas, redis_conn, own_queue):
    """The manager's API client; jobs go to this test's own queue."""
    return ApiClient(client, personas.owner)


@pytest.fixture
def start_worker(own_queue):
    """Start `python worker.py` on this test's queue, retrying webhooks after 1 s (not minutes)."""
    started = []

    def start(**env):
        worker = WorkerProcess("webhooks", extra_env={"WEBHOOK_RETRY_INTERVALS": "1,1,1", **env})
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def set_webhook(api, url, **extra) -> str | None:
    """Save the webhook URL (placeholder provider otherwise); the secret, when this save made one."""
    response = api.put(SETTINGS, json={"webhook_url": url, **extra})
    assert response.status_code == 200, response.get_json()
    return response.get_json().get("webhook_secret")


def finished_task(api, prompts=("A lighthouse at dusk",)) -> str:
    """A task run to its end by the worker (placeholder provider)."""
    task_id = generate(api, new_article(prompts=prompts))
    wait_done(api, task_id)
    return task_id


def announce(task_id) -> None:
    """What the engine calls when it writes a task's end. Calling it again once the engine does is
    harmless (one delivery job per task), so these tests pass with or without that wiring."""
    with db.connection_context():
        webhooks.task_finished(task_id)


def deliveries(task_id) -> list[WebhookDelivery]:
    with db.connection_context():
        return list(WebhookDelivery.select().where(WebhookDelivery.task_id == task_id).order_by(WebhookDelivery.id))


def wait_attempts(task_id, count, *, timeout=30) -> list[WebhookDelivery]:
    """The task's delivery rows once `count` of them have their outcome recorded."""
    return wait_for(lambda: (rows := deliveries(task_id)) and len(rows) >= count
                    and all(r.delivered or r.status_code or r.error for r in rows[:count]) and rows,
                    timeout=timeout, message=f"{count} webhook attempts for {task_id}")


def verifies(request, secret) -> bool:
    """What a receiver does: the HMAC of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(request["headers"]["X-Signature"], expected)


def settings_row() -> IntegrationSettings:
    with db.connection_context():
        return image_settings.settings_row(factories.account_id("A"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- delivery ------------------------------------------------------------------------------------


@pytest.mark.worker
def test_a_finished_task_is_posted_once_signed_with_the_secret(api, receiver, start_worker, own_queue):
    start_worker()
    secret = set_webhook(api, receiver.url)
    assert secret
    task_id = finished_task(api)
    announce(task_id)
    wait_for(lambda: receiver.requests, message="the webhook")
    announce(task_id)  # the engine sees a task's end more than once (late items, the finisher)
    time.sleep(1.5)
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    headers = request["headers"]
    assert request["path"] == "/hooks/images"
    assert headers["Content-Type"] == "application/json"
    assert verifies(request, secret)
    assert not verifies(request, secret + "x")
    assert headers["X-Event-Id"] == f"{task_id}.task.finished"
    assert abs(int(headers["X-Timestamp"]) - request["at"]) < 5
    body = json.loads(request["body"])
    shown = progress(api, task_id)  # what GET /v1/system/task_progress/<id>/ answers
    shown.pop("live")
    assert body == {**shown, "event": "task.finished"}
    assert body["state"] == "done" and body["totals"]["generated"] == 1
    with db.connection_context():
        view = json.loads(json.dumps(task_progress(task_id, factories.account_id("A"))))
    assert body == {**view, "event": "task.finished"}
    [row] = deliveries(task_id)
    assert (row.attempt, row.status_code, row.error, row.delivered) == (1, 200, None, True)
    assert row.event_id == headers["X-Event-Id"] and row.url == receiver.url


@pytest.mark.worker
def test_a_receiver_that_fails_twice_gets_the_third_attempt(api, receiver, start_worker):
    start_worker(WEBHOOK_RETRY_INTERVALS="2,2,2")
    receiver.statuses = [500, 503]
    secret = set_webhook(api, receiver.url)
    task_id = finished_task(api)
    announce(task_id)
    rows = wait_attempts(task_id, 3)
    assert [(r.attempt, r.status_code, r.delivered) for r in rows] == [(1, 500, False), (2, 503, False),
                                                                      (3, 200, True)]
    assert "answered HTTP 500" in rows[0].error and rows[2].error is None
    assert len(receiver.requests) == 3
    assert {r["headers"]["X-Event-Id"] for r in receiver.requests} == {f"{task_id}.task.finished"}
    assert all(verifies(r, secret) for r in receiver.requests)
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    # RQ's scheduler waited between attempts (it keeps due times in whole seconds, so 2 s is more than 1).
    assert all(gap > 1 for gap in gaps), gaps


@pytest.mark.worker
def test_it_gives_up_after_the_last_retry_and_the_job_fails(api, receiver, start_worker, own_queue, redis_conn):
    start_worker(WEBHOOK_RETRY_INTERVALS="1,1")  # the fewest the contract allows: 3 attempts in all
    receiver.statuses = [500] * 10
    set_webhook(api, receiver.url)
    task_id = finished_task(api)
    announce(task_id)
    wait_for(lambda: webhooks.job_id(task_id) in FailedJobRegistry(own_queue, connection=redis_conn).get_job_ids(),
             message="the delivery job to fail")
    rows = deliveries(task_id)
    assert [(r.attempt, r.status_code, r.delivered) for r in rows] == [(1, 500, False), (2, 500, False),
                                                                      (3, 500, False)]
    assert len(receiver.requests) == 3


@pytest.mark.worker
@pytest.mark.parametrize("status, says", [(400, "answered HTTP 400"), (302, "a redirect (HTTP 302), which is not "
                                                                              "followed")])
def test_a_4xx_or_a_redirect_is_final_and_not_retried(api, receiver, start_worker, own_queue, redis_conn, status,
                                                      says):
    start_worker()
    receiver.statuses = [status]
    set_webhook(api, receiver.url)
    task_id = finished_task(api)
    announce(task_id)
    [row] = wait_attempts(task_id, 1)
    assert (row.status_code, row.delivered) == (status, False) and says in row.error
    wait_for(lambda: webhooks.job_id(task_id) in FailedJobRegistry(own_queue, connection=redis_conn).get_job_ids(),
             message="the delivery job to fail")
    time.sleep(2.5)  # longer than two retry intervals
    assert len(receiver.requests) == 1 and len(deliveries(task_id)) == 1


@pytest.mark.worker
def test_a_refused_connection_is_retried(api, start_worker):
    start_worker(WEBHOOK_RETRY_INTERVALS="1,1")
    set_webhook(api, f"http://127.0.0.1:{free_port()}/hooks")  # nothing listens there
    task_id = finished_task(api)
    announce(task_id)
    rows = wait_attempts(task_id, 3)
    assert [r.attempt for r in rows] == [1, 2, 3]
    assert all("refused the connection" in r.error and r.status_code is None and not r.delivered for r in rows)


@pytest.mark.worker
def test_a_receiver_that_does_not_answer_in_time_is_retried(api, receiver, start_worker):
    start_worker()
    receiver.delays = [webhooks.TIMEOUT[1] + 1]  # the first attempt waits past the read timeout
    secret = set_webhook(api, receiver.url)
    task_id = finished_task(api)
    announce(task_id)
    rows = wait_attempts(task_id, 2, timeout=40)
    assert f"did not answer within {webhooks.TIMEOUT[1]} s" in rows[0].error and not rows[0].delivered
    assert rows[1].delivered and rows[1].attempt == 2
    assert all(verifies(r, secret) for r in receiver.requests)


@pytest.mark.worker
def test_the_engine_announces_a_task_that_ends(api, receiver, start_worker):
    """No announce() here: the engine's own call when it writes the task's end."""
    start_worker()
    secret = set_webhook(api, receiver.url)
    task_id = finished_task(api, prompts=("one", "two"))
    wait_for(lambda: receiver.requests, timeout=20, message="the engine's webhook")
    assert verifies(receiver.requests[0], secret)
    assert json.loads(receiver.requests[0]["body"])["task_id"] == task_id
    time.sleep(1.5)
    assert len(receiver.requests) == 1  # however many times the engine saw the end


def test_only_an_ended_task_is_announced_and_only_with_a_webhook(api, receiver, redis_conn, own_queue):
    task_id = running_task(factories.account_id("A"), new_article(prompts=("one",)))
    with db.connection_context():
        AITaskLog.update(state="canceled").where(AITaskLog.task_id == task_id).execute()
        assert webhooks.task_finished(task_id) is None  # no webhook URL
    set_webhook(api, receiver.url)
    with db.connection_context():
        AITaskLog.update(state="running").where(AITaskLog.task_id == task_id).execute()
        assert webhooks.task_finished(task_id) is None  # not ended
        AITaskLog.update(state="canceled").where(AITaskLog.task_id == task_id).execute()
        assert webhooks.task_finished(task_id) == webhooks.job_id(task_id)
        assert webhooks.task_finished(task_id) is None  # one delivery job per task
        assert webhooks.task_finished("no-such-task") is None


# --- the address ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.1:{port}/hooks", "127.0.0.1"),
    ("http://10.0.0.1/hooks", "10.0.0.1"),
    ("http://169.254.169.254/latest", "169.254.169.254"),
    ("http://localhost:{port}/hooks", "localhost resolves to"),
    ("http://[::1]:{port}/hooks", "::1"),
    ("ftp://example.com/hooks", "not an http(s) URL"),
    ("https://user:pw@example.com/hooks", "user name or password"),
    ("https://example.com/hooks?token=1", "a query or a fragment"),
    ("http://no-such-host.invalid/hooks", "could not be resolved"),
])
def test_an_internal_or_malformed_webhook_url_is_refused_at_save_time(api, monkeypatch, url, says):
    monkeypatch.setenv("OUTBOUND_ALLOW", "")
    response = api.put(SETTINGS, json={"webhook_url": url.format(port=free_port())})
    assert response.status_code == 400, response.get_json()
    assert says in response.get_json()["fields"]["webhook_url"]
    shown = api.get(SETTINGS).get_json()
    assert shown["webhook_url"] is None and shown["webhook_secret_set"] is False  # nothing was stored


@pytest.mark.worker
def test_an_address_refused_after_it_was_saved_is_refused_before_delivery(api, receiver, start_worker, own_queue,
                                                                         redis_conn):
    set_webhook(api, receiver.url)  # allowed now (OUTBOUND_ALLOW=127.0.0.1)...
    start_worker(OUTBOUND_ALLOW="")  # ...and no longer where the delivery runs
    task_id = finished_task(api)
    announce(task_id)
    [row] = wait_attempts(task_id, 1)
    assert "Refused before sending" in row.error and "127.0.0.1" in row.error
    assert row.status_code is None and not row.delivered
    wait_for(lambda: webhooks.job_id(task_id) in FailedJobRegistry(own_queue, connection=redis_conn).get_job_ids(),
             message="the delivery job to fail")
    time.sleep(1.5)
    assert receiver.requests == [] and len(deliveries(task_id)) == 1  # nothing sent, not retried


def test_an_unreadable_secret_is_recorded_and_nothing_is_sent(api, receiver, redis_conn, own_queue):
    """deliver() run inline, as the job runs it."""
    set_webhook(api, receiver.url)
    task_id = running_task(factories.account_id("A"), new_article(prompts=("one",)))
    with db.connection_context():
        AITaskLog.update(state="failed").where(AITaskLog.task_id == task_id).execute()
        IntegrationSettings.update(webhook_secret_encrypted="not-fernet").execute()
    with pytest.raises(webhooks.WebhookFailed, match="ENCRYPTION_KEYS"):
        webhooks.deliver(task_id)
    [row] = deliveries(task_id)
    assert "generate a new one" in row.error and not row.delivered
    assert receiver.requests == []


# --- the secret -----------------------------------------------------------------------------------


def test_the_secret_is_made_shown_once_and_stored_encrypted(api, client, personas, receiver):
    first = api.put(SETTINGS, json={"webhook_url": receiver.url})
    body = first.get_json()
    secret = body["webhook_secret"]
    assert len(secret) >= 40 and body["webhook_secret_set"] is True and body["webhook_url"] == receiver.url
    again = api.get(SETTINGS)
    assert "webhook_secret" not in again.get_json() and secret not in again.get_data(as_text=True)
    assert again.get_json()["webhook_secret_set"] is True
    later = api.put(SETTINGS, json={"image_format": "png"})
    assert "webhook_secret" not in later.get_json() and secret not in later.get_data(as_text=True)
    html = Staff(client, personas.owner).get(PAGE).get_data(as_text=True)
    assert secret not in html and 'id="webhook-secret-once"' not in html
    row = settings_row()
    assert secret not in json.dumps(row.__data__, default=str)
    assert image_settings.secret_box().decrypt(row.webhook_secret_encrypted) == secret
    # A new URL keeps the secret; asking for a new one makes one (shown once); clearing the URL removes it.
    moved = api.put(SETTINGS, json={"webhook_url": receiver.url + "/v2"}).get_json()
    assert "webhook_secret" not in moved
    assert image_settings.secret_box().decrypt(settings_row().webhook_secret_encrypted) == secret
    rotated = api.put(SETTINGS, json={"new_webhook_secret": True}).get_json()["webhook_secret"]
    assert rotated != secret
    assert image_settings.secret_box().decrypt(settings_row().webhook_secret_encrypted) == rotated
    cleared = api.put(SETTINGS, json={"webhook_url": None}).get_json()
    assert cleared["webhook_url"] is None and cleared["webhook_secret_set"] is False
    assert settings_row().webhook_secret_encrypted is None


def test_rotating_the_encryption_keys_rewrites_the_webhook_secret_too(api, receiver, monkeypatch):
    from cryptography.fernet import Fernet

    from config import load_config
    from secret_box import SecretBox

    secret = set_webhook(api, receiver.url)
    new_key = Fernet.generate_key().decode()
    monkeypatch.setenv("ENCRYPTION_KEYS", ",".join([new_key, *load_config().encryption_keys]))
    with db.connection_context():
        assert image_settings.rotate_keys() == 1
    assert SecretBox([new_key]).decrypt(settings_row().webhook_secret_encrypted) == secret


def test_a_manager_may_bring_their_own_secret_which_is_never_echoed(api, receiver):
    own = "a-secret-of-our-own-1234"
    answer = api.put(SETTINGS, json={"webhook_url": receiver.url, "webhook_secret": own})
    assert answer.status_code == 200 and "webhook_secret" not in answer.get_json()
    assert own not in answer.get_data(as_text=True)
    assert image_settings.secret_box().decrypt(settings_row().webhook_secret_encrypted) == own
    short = api.put(SETTINGS, json={"webhook_secret": "short"})
    assert short.status_code == 400 and "16 to 200 characters" in short.get_json()["fields"]["webhook_secret"]
    api.put(SETTINGS, json={"webhook_url": ""})
    orphan = api.put(SETTINGS, json={"webhook_secret": own})
    assert orphan.status_code == 400 and "webhook URL" in orphan.get_json()["fields"]["webhook_secret"]
    assert api.put(SETTINGS, json={"new_webhook_secret": True}).status_code == 400


def test_the_page_shows_a_new_secret_once_in_a_notice(client, personas, receiver):
    owner = Staff(client, personas.owner)
    saved = owner.post(PAGE, {**FORM, "webhook_url": receiver.url})
    assert saved.status_code == 200 and saved.headers["Cache-Control"] == "no-store"
    html = saved.get_data(as_text=True)
    notice = section(html, "webhook-secret-once")
    secret = image_settings.secret_box().decrypt(settings_row().webhook_secret_encrypted)
    assert secret in notice and html.count(secret) == 1
    assert "Settings saved." in html
    shown = owner.get(PAGE).get_data(as_text=True)
    assert secret not in shown and f'value="{receiver.url}"' in shown and 'id="new_webhook_secret"' in shown
    kept = owner.post(PAGE, {**FORM, "webhook_url": receiver.url}).get_data(as_text=True)
    assert 'id="webhook-secret-once"' not in kept  # saving again keeps the secret, and shows nothing
    # "Generate a new secret", posted without htmx: the page itself, not a redirect whose flash would carry it.
    renewed = owner.post(PAGE, {**FORM, "webhook_url": receiver.url, "new_webhook_secret": "on"}, htmx=False)
    assert renewed.status_code == 200 and renewed.headers["Cache-Control"] == "no-store"
    new_secret = image_settings.secret_box().decrypt(settings_row().webhook_secret_encrypted)
    assert new_secret != secret and new_secret in section(renewed.get_data(as_text=True), "webhook-secret-once")
    assert new_secret not in owner.get(PAGE).get_data(as_text=True)


def test_a_refused_webhook_url_is_shown_beside_its_field(client, personas, monkeypatch):
    monkeypatch.setenv("OUTBOUND_ALLOW", "")
    refused = Staff(client, personas.owner).post(PAGE, {**FORM, "webhook_url": "http://10.1.2.3/hooks"})
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "10.1.2.3" in section(html, "webhook_url-error") and 'aria-describedby="webhook_url-error"' in html
    assert settings_row() is None


def test_staff_cannot_set_the_webhook(app, personas, receiver):
    staff_api = ApiClient(app.test_client(), personas.staff)
    refused = staff_api.put(SETTINGS, json={"webhook_url": receiver.url})
    assert refused.status_code == 403
    staff = Staff(app.test_client(), personas.staff)
    assert staff.post(PAGE, {**FORM, "webhook_url": receiver.url}).status_code == 403
    assert settings_row() is None
    ApiClient(app.test_client(), personas.owner).put(SETTINGS, json={"webhook_url": receiver.url})
    html = staff.get(PAGE).get_data(as_text=True)
    assert '<fieldset class="bare" disabled>' in html and f'value="{receiver.url}"' in html
    assert 'id="new_webhook_secret"' in html and 'id="webhook-deliveries"' not in html
    shown = staff_api.get(SETTINGS).get_json()
    assert shown["webhook_secret_set"] is True and "webhook_secret" not in shown


# --- who sees the deliveries ----------------------------------------------------------------------


def test_managers_and_platform_admins_see_the_accounts_deliveries(app, personas):
    with db.connection_context():
        a, b = factories.account_id("A"), factories.account_id("B")
        WebhookDelivery.create(account=a, task_id="task-a", event_id="task-a.task.finished", url="https://a.test/h",
                               attempt=2, status_code=503, error="the receiver at a.test answered <b>HTTP 503</b>")
        WebhookDelivery.create(account=b, task_id="task-b", event_id="task-b.task.finished", url="https://b.test/h",
                               attempt=1, status_code=200, delivered=True)
    owner = Staff(app.test_client(), personas.owner)
    html = owner.get(DELIVERIES).get_data(as_text=True)
    table = section(html, "deliveries")
    assert "task-a" in table and "HTTP 503" in table and "&lt;b&gt;" in table and "task-b" not in table
    assert 'id="webhook-deliveries"' in owner.get(PAGE).get_data(as_text=True)  # linked from Settings
    assert owner.get(DELIVERIES + f"?account={b}").status_code == 404  # like an account that does not exist
    admin = Staff(app.test_client(), personas.admin)
    assert "task-a" in admin.get(DELIVERIES).get_data(as_text=True)
    other = admin.get(DELIVERIES + f"?account={b}").get_data(as_text=True)
    assert "task-b" in section(other, "deliveries") and "task-a" not in other
    assert admin.get(DELIVERIES + "?account=99999").status_code == 404
    assert Staff(app.test_client(), personas.staff).get(DELIVERIES).status_code == 403
    outsider = Staff(app.test_client(), personas.outsider).get(DELIVERIES).get_data(as_text=True)
    assert "task-b" in outsider and "task-a" not in outsider


# --- why not RQ's own ----------------------------------------------------------------------------


def test_rqs_own_job_webhooks_are_not_what_a_task_needs():
    """RQ 3.0 can post when a job ends (`enqueue(..., webhooks=[Webhook(url, "finished")])`), but:
    a task ends over many jobs (whichever item or finisher is last), not when one job does; the payload is
    the job's (with its traceback on failure), not the task's progress; nothing is signed; a failed post
    is logged and dropped, never retried; and urllib resolves the host itself, follows redirects and
    honours proxy variables, so no address check would hold."""
    from rq.webhook import Webhook

    parameters = inspect.signature(Webhook.__init__).parameters
    assert not {"secret", "signature", "retry"} & set(parameters)
    source = inspect.getsource(Webhook.send)
    assert "urlopen" in source and "except Exception" in source and "raise" not in source.split("except")[1]
    assert "exc_info" in inspect.getsource(Webhook.get_payload)
