"""HTTP plumbing shared by the providers: one bounded POST, readable transport errors, retries."""

import contextlib
import contextvars
import json
import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
import urllib3

from jobs import outbound
from jobs.providers.base import ProviderError

log = logging.getLogger(__name__)

# A 1536x1024 PNG in base64 is ~4 MiB; 64 MiB leaves room for any real answer and stops a runaway one.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024
MAYBE_CHARGED = ("the provider may still have made the image and charged for it. Generate it again if you "
                 "want another try.")


class CallTimeout(tuple):
    """(connect, read) as requests takes them, plus `deadline`: the most seconds the whole call may take,
    connecting, waiting and reading the answer included. A read timeout restarts on every packet, so on
    its own it never ends an answer that trickles in one byte a second. A plain (connect, read) tuple
    gets its read timeout as the deadline."""

    deadline: float

    def __new__(cls, connect: float, read: float, deadline: float | None = None):
        timeout = super().__new__(cls, (connect, read))
        timeout.deadline = read if deadline is None else deadline
        return timeout

    def __repr__(self):
        return f"CallTimeout(connect={self[0]!r}, read={self[1]!r}, deadline={self.deadline!r})"


@dataclass
class Answer:
    status: int
    headers: requests.structures.CaseInsensitiveDict
    body: bytes

    def json(self):
        """The body as JSON, or None when it is not JSON (proxies answer text/plain or HTML)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def snippet(self, limit=200) -> str:
        text = " ".join(self.body[:limit * 4].decode("utf-8", "replace").split())
        return text[:limit] + ("…" if len(text) > limit else "")


def post_json(url: str, payload, *, headers: dict, timeout: tuple[float, float], label: str,
              max_bytes: int = MAX_ANSWER_BYTES) -> Answer:
    """POST `payload` as JSON and read the whole answer, within `max_bytes` and the read timeout."""
    return _request("POST", url, payload, headers=headers, timeout=timeout, label=label, max_bytes=max_bytes)


def get_json(url: str, *, headers: dict, timeout: tuple[float, float], label: str,
             max_bytes: int = 4 * 1024 * 1024) -> Answer:
    """GET a JSON document (a provider's model list) the same bounded way."""
    return _request("GET", url, None, headers=headers, timeout=timeout, label=label, max_bytes=max_bytes)


def _request(method: str, url: str, payload, *, headers: dict, timeout: tuple[float, float], label: str,
             max_bytes: int) -> Answer:
    """The call runs in a thread of its own, and the caller waits for it until the deadline only: a read
    timeout bounds each wait for a packet, never the whole answer, and no timeout at all reaches a
    status line or headers that trickle in. At the deadline the caller (and the image's slot) moves
    on, and once the answer has begun its connection is shut so that the thread ends too (before
    that, the thread's own timeouts end it; only headers trickling in keep it, in a work-horse that
    exits after its job)."""
    call = _Call(getattr(timeout, "deadline", timeout[1]))
    outcome: dict = {}
    done = threading.Event()

    def run():
        try:
            outcome["answer"] = _call(call, method, url, payload, headers, timeout, label, max_bytes)
        except BaseException as exc:  # handed to the caller, whatever it is
            outcome["error"] = exc
        finally:
            done.set()

    # A thread starts with an empty context: copying the caller's keeps the call seeing what it would
    # see without the thread (outbound's pins of an enclosing block, for one).
    worker = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True,
                              name=f"provider call ({label})")
    worker.start()
    try:
        if not done.wait(max(0.0, call.remaining())):
            raise call.overdue(label)
    finally:
        if not done.is_set():
            call.abort()  # the deadline passed, or the job was stopped while waiting
    if "error" in outcome:
        raise outcome.pop("error")
    return outcome["answer"]


class _Call:
    """One call's deadline and how far it got, shared by its thread and the caller waiting for it."""

    def __init__(self, limit: float):
        self.limit = limit  # seconds
        self.deadline = time.monotonic() + limit
        self.sending = False  # the address is checked and the request on its way: the provider may bill it
        self.response = None  # set once the status line and headers have arrived
        self.clamped = False  # whether the wait for the headers was cut short for the deadline
        self._lock = threading.Lock()
        self._socket = None  # our own handle on the answer's connection, to shut it from the caller's thread

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def headers_timeout(self, read_timeout: float) -> float:
        """The read timeout for the status line and headers: not past the deadline, so that the thread
        of a provider that says nothing ends when its caller stops waiting."""
        remaining = max(self.remaining(), 0.001)
        self.clamped = remaining < read_timeout
        return min(read_timeout, remaining)

    def answered(self, response) -> None:
        """The headers are in: keep a handle on the connection. The connection object lets go of its
        socket when the server says `Connection: close`, so the handle is a duplicate of the socket's
        descriptor, taken while the answer holds it open (a number looked up later could by then
        name another connection)."""
        self.response = response
        with contextlib.suppress(OSError, ValueError):  # no descriptor: the answer is already read
            fd = response.raw.fileno()
            with self._lock:
                self._socket = socket.socket(fileno=os.dup(fd))

    def release(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def abort(self) -> None:
        """Wake the call's thread if it is blocked reading the answer, so that it ends and closes its
        connection instead of reading on after nobody waits for it. A shutdown wakes a read blocked in
        another thread; closing would not (the file waits for that read first)."""
        with self._lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):  # already shut by the server
                    self._socket.shutdown(socket.SHUT_RDWR)

    def overdue(self, label: str) -> ProviderError:
        if not self.sending:  # stuck resolving the host: nothing was sent, so nothing can be billed
            return ProviderError(f"{label} could not be reached within {self.limit:g} s", permanent=False,
                                 code="transport_error")
        return _too_slow(label, self.limit, self.response)


def _call(call: _Call, method, url, payload, headers, timeout, label, max_bytes) -> Answer:
    connect_timeout, read_timeout = timeout
    try:
        target = outbound.check(url)
    except outbound.OutboundRefused as refused:
        raise ProviderError(f"{label} was not called: {refused} Check the base URL in Settings → Image generation.",
                            permanent=True, code="outbound_refused") from None
    try:
        with outbound.pinned(target), outbound.session() as session:
            call.sending = True
            # An API never redirects; following one could carry the key's request somewhere else.
            response = session.request(method, url, json=payload, headers=headers, stream=True,
                                       timeout=(connect_timeout, call.headers_timeout(read_timeout)),
                                       allow_redirects=False)
            call.answered(response)
            try:
                with response:
                    body = _read_bounded(response, call, max_bytes, label)
                    return Answer(response.status_code, response.headers, body)
            finally:
                call.release()
    except requests.RequestException as exc:
        error = transport_error(exc, label, timeout)
        if error.code == "timeout" and call.response is None and call.clamped:
            # The read timeout that fired was the one cut short for the deadline: say which limit it was.
            raise _too_slow(label, call.limit) from exc
        raise error from exc


def _too_slow(label: str, limit: float, response=None) -> ProviderError:
    """The deadline passed, before the answer began (no `response`) or while it arrived. Never retried:
    the provider had the request and may still finish (and bill) it."""
    if response is None:
        return ProviderError(f"{label} did not answer within {limit:g} s; {MAYBE_CHARGED}",
                             permanent=True, maybe_charged=True, code="timeout")
    return ProviderError(f"{label} did not finish its answer within {limit:g} s; {MAYBE_CHARGED}",
                         permanent=True, maybe_charged=True, status=response.status_code, code="timeout")


def warm_up() -> None:
    """Prepare a request once, sending nothing, so that processes forked after this (RQ work-horses)
    find requests' lazy imports done (netrc and its parser: ~4 ms); otherwise every image's first
    provider call pays them between getting its slot and reaching the provider."""
    with requests.Session() as session:
        request = session.prepare_request(requests.Request("POST", "https://provider.invalid/v1/images", json={}))
        session.merge_environment_settings(request.url, {}, None, None, None)


def _read_bounded(response, call: _Call, max_bytes, label) -> bytes:
    """The body, read as it arrives. iter_content would not do: its reads wait for a whole chunk, so
    an answer trickling a byte a second would not be looked at again for hours. A read that waits
    past the deadline is woken by the caller's abort()."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_big(label, max_bytes, response.status_code)
    body = bytearray()
    while True:
        if call.remaining() <= 0:
            raise _too_slow(label, call.limit, response)
        chunk = _read1(response)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_bytes:
            raise _too_big(label, max_bytes, response.status_code)


def _read1(response) -> bytes:
    """What has arrived of the body (at most _CHUNK bytes, b"" at its end), urllib3's errors turned into
    the ones requests' own iter_content raises, so transport_error names them the same way."""
    try:
        return response.raw.read1(_CHUNK, decode_content=True)
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc


def _too_big(label, max_bytes, status):
    return ProviderError(f"{label} sent an answer larger than {max_bytes // (1024 * 1024)} MiB; gave up reading it",
                         permanent=True, status=status, code="answer_too_large")


def transport_error(exc: requests.RequestException, label: str, timeout: tuple[float, float]) -> ProviderError:
    """A readable ProviderError for a request that got no usable answer. Never includes headers."""
    connect_timeout, read_timeout = timeout
    causes = _causes(exc)
    names = {type(c).__name__ for c in causes}
    if isinstance(exc, requests.ConnectTimeout) or "ConnectTimeoutError" in names:
        message = f"{label} could not be reached within {connect_timeout:g} s"
    elif isinstance(exc, requests.ReadTimeout) or "ReadTimeoutError" in names:
        # The provider had the request and may still finish (and bill) it: never retried blindly.
        return ProviderError(f"{label} did not answer within {read_timeout:g} s; {MAYBE_CHARGED}",
                             permanent=True, maybe_charged=True, code="timeout")
    elif isinstance(exc, requests.exceptions.SSLError):
        return ProviderError(f"{label}: the TLS connection failed ({type(causes[-1]).__name__})",
                             permanent=True, code="tls_error")
    elif isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                    | requests.exceptions.InvalidSchema):
        return ProviderError(f"{label}: the base URL is not a valid http(s) URL", permanent=True,
                             code="invalid_url")
    elif isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in names:
        message = f"{label} broke off its answer mid-way"
    elif any(isinstance(c, ConnectionRefusedError) for c in causes):
        message = f"{label} refused the connection"
    elif any(isinstance(c, ConnectionResetError) for c in causes) or "RemoteDisconnected" in names:
        message = f"{label} closed the connection before answering"
    elif "NameResolutionError" in names:
        message = f"{label}'s host name could not be resolved"
    else:
        message = f"{label} could not be reached ({type(causes[-1]).__name__})"
    return ProviderError(message, permanent=False, code="transport_error")


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (requests → urllib3 → socket), outermost first."""
    seen, todo = [], [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen) or not isinstance(current, BaseException):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return seen


def retry_after_seconds(headers, *, now: datetime | None = None) -> float | None:
    """What the server asked us to wait: `retry-after-ms`, else `retry-after` in seconds or as an HTTP date."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no stated zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def host_key(url: str) -> str:
    """"host:port" of a configured base URL (the scheme's default port filled in), the form storage
    trusts exactly — even on a private address. Never build one from a URL in a provider's answer."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def error_text(answer: "Answer", message, label: str) -> str:
    """What staff may read of an error answer: the provider's own JSON error message, never a raw body
    (an internal service's answer could carry anything). The raw body goes to the worker log, cut short."""
    if isinstance(message, str) and message.strip():
        return message
    log.warning("%s answered HTTP %s without a JSON error message: %s", label, answer.status, answer.snippet())
    return f"HTTP {answer.status}"


def redact(text: str, secret: str | None) -> str:
    """Text from the provider with our key blanked out, in case a server echoes it back."""
    return text.replace(secret, "[key]") if secret and len(secret) >= 4 else text


def call_with_retries(attempt_fn, *, max_attempts=3, base_delay=0.5, max_delay=8.0, max_retry_after=120.0,
                      sleep=time.sleep, on_retry=None):
    """Call `attempt_fn()` until it succeeds, retrying only transient ProviderErrors.

    Waits what the provider asked (retry_after; giving up when that is over max_retry_after), else a
    capped exponential backoff with full jitter so that many workers do not retry in step.
    on_retry(error, delay) is called before each wait.
    """
    for attempt in range(1, max_attempts + 1):
        try:
            return attempt_fn()
        except ProviderError as error:
            if error.permanent or attempt >= max_attempts:
                raise
            if error.retry_after is not None:
                if error.retry_after > max_retry_after:
                    raise
                delay = error.retry_after
            else:
                delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            if on_retry is not None:
                on_retry(error, delay)
            sleep(delay)
    raise AssertionError("unreachable")
