"""Download a provider's image URL without letting that URL reach anything it should not.

Provider URLs expire after an hour, so the worker downloads the bytes at once; the URL comes from a
provider's answer, so it is treated as untrusted: only http(s), only hosts the provider declared
(`ProviderImage.download_hosts`), never a private or reserved address, at most 3 redirects (each
checked like the first), a byte cap and a total deadline.

Allowed-host entries:
  "cdn.example.com"       that host on the scheme's default port
  ".blob.core.windows.net" any subdomain of it, default port
  "127.0.0.1:8123"        exactly that host and port — and ONLY this kind may resolve to a private
                          address: it is how a configured self-hosted base_url (and the tests' local
                          servers) are reached. Never build one from a provider's answer.

The connection goes to the address that was checked, not to a second DNS answer (DNS rebinding).
Signed URLs are secrets-ish, so logs and messages name the host, never the URL.
"""

import ipaddress
import logging
import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from urllib3.exceptions import ReadTimeoutError

from jobs import outbound
from jobs.outbound import Target

log = logging.getLogger(__name__)


class _DropQueryStrings(logging.Filter):
    """urllib3 logs each request line at DEBUG, signature and all; keep everything before the '?'."""

    def filter(self, record):
        if isinstance(record.args, tuple):
            record.args = tuple(a.split("?", 1)[0] + "?…" if isinstance(a, str) and "?" in a else a
                                for a in record.args)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_DropQueryStrings())

MAX_BYTES = 25 * 1024 * 1024
MAX_REDIRECTS = 3
DEFAULT_PORTS = {"http": 80, "https": 443}
CHUNK = 64 * 1024


class FetchError(Exception):
    """Base of the two below; `reason` is a sentence for staff that names the host, never the URL."""

    def __init__(self, reason: str, *, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class FetchRefused(FetchError):
    """The URL was refused before any connection was made (scheme, host, address, redirect)."""


class FetchFailed(FetchError):
    """The download went wrong: unreachable, an error status, too large, too slow, cut short."""


def fetch_image(url: str, allowed_hosts: tuple[str, ...], *, max_bytes: int = MAX_BYTES,
                timeout: tuple[float, float] = (5, 30), total_deadline: float = 60) -> bytes:
    """The body of `url`, following at most 3 redirects, each checked against `allowed_hosts`."""
    deadline = time.monotonic() + total_deadline
    with outbound.pinned(), _session() as session:
        for hop in range(MAX_REDIRECTS + 1):
            try:
                target = _check(url, allowed_hosts)
            except FetchRefused as refused:
                if hop:
                    raise FetchRefused(f"the image URL redirected somewhere refused: {refused.reason}") from None
                raise
            outbound.pin(target)
            log.info("fetching an image from %s", target.host)
            with _get(session, url, target, timeout, deadline) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchFailed(_status_reason(response.status_code), status=response.status_code)
                return _read_body(response, target.host, max_bytes, timeout[1], deadline, total_deadline)
        raise FetchFailed(f"the provider's image URL redirected more than {MAX_REDIRECTS} times")


def _check(url: str, allowed_hosts) -> Target:
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise FetchRefused("the image URL contains spaces, backslashes or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise FetchRefused(f"only http and https image URLs are fetched, not {scheme or 'a URL without scheme'}")
    if "@" in parts.netloc:
        raise FetchRefused("image URLs with a user name or password are not fetched")
    host = (parts.hostname or "").rstrip(".")
    if not host or not host.isascii():
        raise FetchRefused("the image URL has no host, or one that is not plain ASCII")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise FetchRefused(f"the image URL for {host} has an invalid port") from None
    allowed, exact = _allowance(host, port, DEFAULT_PORTS[scheme], allowed_hosts)
    label = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if not allowed:
        log.warning("refused an image URL on %s: not an allowed host", label)
        raise FetchRefused(f"{label} is not a host this provider's images are downloaded from")
    addresses = _resolve(host, port)
    if not exact:
        for address in addresses:
            if not outbound.is_public(ipaddress.ip_address(address)):
                log.warning("refused an image URL on %s: it resolves to %s", label, address)
                raise FetchRefused(f"{label} resolves to a private or reserved address ({address}), "
                                   "which is never fetched")
    return Target(host, port, addresses)


def _allowance(host: str, port: int, default_port: int, allowed_hosts) -> tuple[bool, bool]:
    """(allowed, by an exact host:port entry) — the second lets a private address through."""
    allowed = False
    for entry in allowed_hosts:
        entry = entry.strip().lower()
        if entry.startswith("."):
            allowed |= port == default_port and host.endswith(entry) and len(host) > len(entry)
            continue
        entry_parts = urlsplit("//" + entry)
        entry_host = (entry_parts.hostname or "").rstrip(".")
        if entry_parts.port is None:
            allowed |= host == entry_host and port == default_port
        elif host == entry_host and port == entry_parts.port:
            return True, True
    return allowed, False


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        return outbound.resolve(host, port)
    except outbound.OutboundRefused:
        raise FetchFailed(f"could not resolve {host}") from None


def _get(session, url, target: Target, timeout, deadline) -> requests.Response:
    remaining = max(deadline - time.monotonic(), 0.001)
    try:
        return session.get(url, allow_redirects=False, stream=True,
                           timeout=(min(timeout[0], remaining), min(timeout[1], remaining)))
    except requests.exceptions.ConnectTimeout:
        raise FetchFailed(f"timed out connecting to {target.host}") from None
    except requests.exceptions.SSLError:
        raise FetchFailed(f"the TLS connection to {target.host} failed (certificate or protocol)") from None
    except requests.exceptions.Timeout:
        raise FetchFailed(f"{target.host} did not answer in time") from None
    except requests.exceptions.RequestException:
        # `from None`: requests' own messages carry the full URL, signature included.
        raise FetchFailed(f"could not connect to {target.host}") from None


def _read_body(response, host, max_bytes, read_timeout, deadline, total_deadline) -> bytes:
    too_large = f"image larger than {_size_label(max_bytes)}"
    too_slow = f"{host} took too long to send the image (limit: {total_deadline:g} s)"
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise FetchFailed(too_large)
    body = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchFailed(too_slow)
        connection = response.raw.connection
        if connection is not None and connection.sock is not None:
            # The read timeout restarts on every packet; clamping it keeps a slow drip inside the deadline.
            connection.sock.settimeout(min(read_timeout, remaining))
        try:
            chunk = response.raw.read1(CHUNK, decode_content=True)
        except ReadTimeoutError:
            if time.monotonic() >= deadline:
                raise FetchFailed(too_slow) from None
            raise FetchFailed(f"{host} stopped sending the image") from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise FetchFailed(f"the download from {host} was cut short") from None
        if not chunk:
            break
        body += chunk
        if len(body) > max_bytes:
            raise FetchFailed(too_large)
    if not body:
        raise FetchFailed(f"{host} answered with an empty body instead of an image")
    return bytes(body)


def _status_reason(status: int) -> str:
    if status in (403, 404, 410):
        return f"the provider's image URL answered {status} (it may have expired)"
    return f"the provider's image URL answered {status}"


def _size_label(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):g} MB"
    return f"{limit / 1024:g} KB" if limit >= 1024 else f"{limit} bytes"


def _session() -> requests.Session:
    return outbound.session({"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "imggen-fetch/1"})
