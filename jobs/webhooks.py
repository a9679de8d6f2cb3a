"""Tell an account's webhook that a task ended: one signed POST per task, retried by RQ.

When a task ends (done, failed or canceled) the engine calls `task_finished(task_id)`, which enqueues
one `deliver` job per task (a fixed job id, enqueued `unique`: the engine may see the same end several
times, as each late item and the finisher call `finish()`). The job POSTs the task's final progress JSON
(`jobs.progress.task_progress`, what GET /v1/system/task_progress/<id>/ answers) plus
`"event": "task.finished"`, with

    Content-Type: application/json
    X-Event-Id:   <task_id>.task.finished   the same on every attempt: receivers de-duplicate on it
    X-Timestamp:  unix seconds of this attempt (informational: it is NOT in the signed material)
    X-Signature:  sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret's UTF-8 bytes>

Only the raw body is signed (docs/api: "the raw body"). It carries `task_id` and `event`, so the event
id a receiver de-duplicates on can be recomputed from signed data; a replayed body is an event it has
already seen.

Each attempt is a `WebhookDelivery` row, written before the request and completed after it. A 2xx is
delivered; a 5xx, 408, 429, a timeout or a connection error asks RQ for a retry (the job *returns*
`Retry`, so that a 4xx, a refused address or an unreadable secret can fail the job at once: a Retry given
at enqueue time would retry those too); anything else is final and fails the job, so ops find it in RQ's
failed registry and can requeue it. A job that runs again after a delivery returns early.

Why not RQ's own job webhooks (`rq.webhook.Webhook`): see tests/test_webhooks.py.
"""

import hashlib
import hmac
import json
import logging
import os
import time
from urllib.parse import urlsplit

import requests
from redis.exceptions import RedisError
from rq import Retry, get_current_job
from rq.exceptions import DuplicateJobError
from rq.timeouts import JobTimeoutException

from jobs import outbound
from jobs.connection import get_queue
from jobs.image_settings import secret_box, settings_row
from jobs.runtime import ensure_database
from models import AITaskLog, WebhookDelivery, db
from secret_box import SecretBoxError

log = logging.getLogger(__name__)

EVENT = "task.finished"
ENDED = ("done", "failed", "canceled")
TIMEOUT = (5, 10)  # connect, read (seconds)
# Seconds before each retry: 4 attempts in all over about 6 minutes, enough to ride out a receiver's
# deploy or restart. WEBHOOK_RETRY_INTERVALS ("1,1") shortens them (tests); it is read by the worker.
DEFAULT_INTERVALS = (10, 60, 300)
# The job's own bound: a receiver sending its status line a byte at a time restarts the read timeout on
# every byte; RQ's job timeout ends that attempt, which is then retried like any other timeout.
JOB_TIMEOUT = 60
RESULT_TTL = 600
FAILURE_TTL = 7 * 24 * 3600
RETRYABLE_STATUSES = (408, 429)  # 4xx answers that mean "later", not "never"
USER_AGENT = "imggen-webhook/1"


class WebhookFailed(Exception):
    """A final failure: the job fails and is not retried (the reason is on the delivery row too)."""


def event_id(task_id: str) -> str:
    return f"{task_id}.{EVENT}"


def job_id(task_id: str) -> str:
    return f"{task_id}-webhook"


def sign(secret: str, body: bytes) -> str:
    """The X-Signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_intervals() -> list[int]:
    raw = os.environ.get("WEBHOOK_RETRY_INTERVALS", "").strip()
    if not raw:
        return list(DEFAULT_INTERVALS)
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) < 2 or not all(p.isascii() and p.isdigit() for p in parts):
        # Fewer than 2 retries would break the contract (at least 3 attempts in all).
        log.warning("WEBHOOK_RETRY_INTERVALS=%r is not 2 or more whole seconds; using %s", raw, DEFAULT_INTERVALS)
        return list(DEFAULT_INTERVALS)
    return [int(p) for p in parts]


def task_finished(task_id: str) -> str | None:
    """The engine's call when it has written a task's end: enqueue its delivery if the account has a
    webhook. Safe to call any number of times, and it never raises: a webhook must not fail the task whose
    end it reports (what went wrong is logged). The job id, or None when nothing was enqueued."""
    try:
        task = AITaskLog.get_or_none(AITaskLog.task_id == task_id)
        if task is None or task.state not in ENDED or not _webhook_url(task.account_id):
            return None
        if _delivered(event_id(task_id)):
            return None
        get_queue().enqueue("jobs.webhooks.deliver", task_id, job_id=job_id(task_id), unique=True,
                            job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
                            description=f"webhook: task {task_id} ended ({task.state})")
        return job_id(task_id)
    except DuplicateJobError:
        return None  # enqueued already: queued, waiting for a retry, or ended (its rows say how)
    except RedisError as exc:
        log.warning("task %s: its webhook was not enqueued, Redis is unreachable: %s", task_id, exc)
        return None
    except Exception:
        log.exception("task %s: its webhook was not enqueued", task_id)
        return None


def deliver(task_id: str):
    """One attempt (the RQ job): a dict when delivered or nothing to do, Retry for a transient failure;
    WebhookFailed for a final one."""
    ensure_database()
    with db.connection_context():
        task = AITaskLog.get_or_none(AITaskLog.task_id == task_id)
        if task is None:
            return {"skipped": "the task no longer exists"}
        event = event_id(task_id)
        if _delivered(event):
            return {"delivered": True, "already": True}
        row = settings_row(task.account_id)
        url = _webhook_url(task.account_id, row)
        if not url:
            return {"skipped": "the account has no webhook URL now"}
        attempt = WebhookDelivery.select().where(WebhookDelivery.event_id == event).count() + 1
        delivery = WebhookDelivery.create(account=task.account_id, task_id=task_id, event_id=event, url=url,
                                          attempt=attempt)
        try:
            secret = secret_box().decrypt(row.webhook_secret_encrypted) if row.webhook_secret_encrypted else None
        except SecretBoxError:
            secret = None
        if not secret:
            raise _final(delivery, "The webhook secret cannot be read with this server's ENCRYPTION_KEYS (or "
                                    "is missing): generate a new one in Settings → Image generation.")
        body = _body(task_id, task.account_id)
        return _post(delivery, url, body, secret, attempt)


def recent_deliveries(account_id, limit: int = 100) -> list[WebhookDelivery]:
    """The account's latest attempts, newest first."""
    return list(WebhookDelivery.select().where(WebhookDelivery.account == account_id)
                .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit))


def _post(delivery: WebhookDelivery, url: str, body: bytes, secret: str, attempt: int):
    label = _label(url)
    try:
        # Right before the call, and pinned to the very addresses checked: the URL was checked when it
        # was saved, but DNS (or OUTBOUND_ALLOW) may say otherwise now.
        target = outbound.check(url)
    except outbound.OutboundRefused as refused:
        if "could not be resolved" in str(refused):
            return _retry(delivery, f"{label} could not be resolved", attempt)
        raise _final(delivery, f"Refused before sending: {refused}.") from None
    headers = {"Content-Type": "application/json", "X-Event-Id": delivery.event_id,
               "X-Timestamp": str(int(time.time())), "X-Signature": sign(secret, body)}
    try:
        with outbound.pinned(target), outbound.session({"User-Agent": USER_AGENT}) as session:
            # A redirect is not followed: it would carry the signed event somewhere nobody checked.
            response = session.post(url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False,
                                    stream=True)
            response.close()  # the status is the answer; the body is not read
    except requests.RequestException as exc:
        return _retry(delivery, _transport_error(exc, label), attempt)
    except JobTimeoutException:
        return _retry(delivery, f"{label} did not answer within the delivery's {JOB_TIMEOUT} s", attempt)
    status = response.status_code
    if 200 <= status < 300:
        _record(delivery, status_code=status, delivered=True)
        log.info("webhook %s delivered to %s (attempt %d)", delivery.event_id, label, attempt)
        return {"delivered": True, "status": status, "attempt": attempt}
    if status >= 500 or status in RETRYABLE_STATUSES:
        return _retry(delivery, f"{label} answered HTTP {status}", attempt, status_code=status)
    if 300 <= status < 400:
        raise _final(delivery, f"{label} answered a redirect (HTTP {status}), which is not followed",
                     status_code=status)
    raise _final(delivery, f"{label} answered HTTP {status}", status_code=status)


def _body(task_id: str, account_id: int) -> bytes:
    # Imported here: jobs.progress imports the engine, which calls task_finished() from this module.
    from jobs.progress import task_progress

    job = get_current_job()
    view = task_progress(task_id, account_id, job.connection if job is not None else None)
    return json.dumps({**view, "event": EVENT}, separators=(",", ":"), default=str).encode()


def _retry(delivery, reason: str, attempt: int, status_code=None) -> Retry:
    _record(delivery, status_code=status_code, error=reason)
    intervals = retry_intervals()
    log.warning("webhook %s, attempt %d: %s; RQ retries it (at most %d attempts)", delivery.event_id, attempt,
                reason, len(intervals) + 1)
    return Retry(max=len(intervals), interval=intervals)


def _final(delivery, reason: str, status_code=None) -> WebhookFailed:
    """Record a final failure; the error for the job to raise."""
    _record(delivery, status_code=status_code, error=reason)
    log.warning("webhook %s, attempt %d: %s; not retried", delivery.event_id, delivery.attempt, reason)
    return WebhookFailed(reason)


def _record(delivery, *, status_code=None, error=None, delivered=False) -> None:
    (WebhookDelivery.update(status_code=status_code, error=error[:2000] if error else None, delivered=delivered)
     .where(WebhookDelivery.id == delivery.id).execute())


def _delivered(event: str) -> bool:
    return WebhookDelivery.select().where((WebhookDelivery.event_id == event) & WebhookDelivery.delivered).exists()


def _webhook_url(account_id, row=None) -> str | None:
    row = row or settings_row(account_id)
    return (row.config or {}).get("webhook_url") if row else None


def _label(url: str) -> str:
    """The receiver as logs and rows name it: the host (and port), not the path."""
    parts = urlsplit(url)
    return f"the receiver at {parts.netloc}"


def _transport_error(exc: requests.RequestException, label: str) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return f"{label} could not be reached within {TIMEOUT[0]} s"
    if isinstance(exc, requests.ReadTimeout):
        return f"{label} did not answer within {TIMEOUT[1]} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"the TLS connection to {label} failed (certificate or protocol)"
    if any(isinstance(cause, ConnectionRefusedError) for cause in _causes(exc)):
        return f"{label} refused the connection"
    return f"could not reach {label} ({type(exc).__name__})"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (requests → urllib3 → socket), outermost first."""
    seen, todo = [], [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return seen
