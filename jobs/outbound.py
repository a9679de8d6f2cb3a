"""Every request this service sends to an address someone typed (a provider's base URL) or that an
answer named (an image URL) goes through here: the host is resolved once, every address it resolves to
must be public unless the operator allows it (`OUTBOUND_ALLOW`), and the connection goes to the very
address that was checked, so a second DNS answer cannot swap in an internal one (DNS rebinding).

`OUTBOUND_ALLOW` is a comma-separated list of `host` or `host:port` entries (`127.0.0.1,
10.0.0.5:7860`): a self-hosted image server on the operator's own network.
"""

import contextlib
import contextvars
import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

DEFAULT_PORTS = {"http": 80, "https": 443}


class OutboundRefused(Exception):
    """A URL this service will not send a request to; the message names the host, never the URL."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.host if self.port in DEFAULT_PORTS.values() else f"{self.host}:{self.port}"


def url_problem(url: str) -> str | None:
    """What makes `url` unfit as a base URL, before any lookup: only http(s), no credentials, query
    or fragment (the provider's own path is joined to it), no spaces or control characters."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        return "it contains spaces, line breaks, backslashes or control characters"
    parts = urlsplit(url)
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.netloc:
        return "it is not an http(s) URL"
    if "@" in parts.netloc:
        return "it carries a user name or password"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "it has a query or a fragment (the provider's own path is added to it)"
    host = (parts.hostname or "").rstrip(".")
    if not host or not host.isascii():
        return "its host is missing or not plain ASCII"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "its port is not a number from 0 to 65535"
    return None


def allowed_by_operator(host: str, port: int) -> bool:
    """Whether OUTBOUND_ALLOW names this host (any port) or this host:port."""
    for entry in os.environ.get("OUTBOUND_ALLOW", "").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        parts = urlsplit("//" + entry)
        if (parts.hostname or "").rstrip(".") == host and parts.port in (None, port):
            return True
    return False


def check(url: str) -> Target:
    """The target of `url`, resolved, with every address public or allowed; OutboundRefused otherwise."""
    problem = url_problem(url)
    if problem:
        raise OutboundRefused(f"the URL is refused: {problem}")
    parts = urlsplit(url)
    host = parts.hostname.rstrip(".").lower()
    port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
    addresses = resolve(host, port)
    if not allowed_by_operator(host, port):
        for address in addresses:
            if not is_public(ipaddress.ip_address(address)):
                raise OutboundRefused(
                    f"{host} resolves to {address}, a private, loopback or otherwise internal address; "
                    "only public addresses are reached (the operator can allow one in OUTBOUND_ALLOW)")
    return Target(host, port, addresses)


def resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise OutboundRefused(f"{host} could not be resolved") from None
    return tuple(dict.fromkeys(info[4][0] for info in infos))


def is_public(ip) -> bool:
    if ip.version == 6:
        # An IPv6 address can carry an IPv4 one that the network will route to (mapped, 6to4, Teredo).
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if any(v4 is not None and not is_public(v4) for v4 in embedded):
            return False
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                                 or ip.is_multicast or ip.is_unspecified)


# --- pinned connections: requests/urllib3 dial the checked address instead of resolving again ---

_PINS: contextvars.ContextVar[dict] = contextvars.ContextVar("outbound_pins")


@contextlib.contextmanager
def pinned(*targets: Target):
    """Within this block, connections to these targets go to their checked addresses (and only
    there: a connection to any other host is refused)."""
    pins = dict(_PINS.get({}))
    token = _PINS.set(pins)
    try:
        for target in targets:
            pin(target)
        yield
    finally:
        _PINS.reset(token)


def pin(target: Target) -> None:
    """Add a target checked inside a `pinned` block (a redirect's next hop)."""
    _PINS.get()[(target.host, target.port)] = target.addresses


class _PinnedConnectionMixin:
    def _new_conn(self):
        addresses = _PINS.get({}).get((self.host, self.port))
        if not addresses:
            raise OutboundRefused(f"{self.host} was not checked before connecting")
        error = None
        for address in addresses:
            try:
                return create_connection((address, self.port), self.timeout,
                                         source_address=self.source_address, socket_options=self.socket_options)
            except TimeoutError as exc:
                error = ConnectTimeoutError(self, f"Connection to {self.host} timed out")
                error.__cause__ = exc
            except OSError as exc:
                error = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
                error.__cause__ = exc  # callers tell "refused" from "unreachable" by the cause
        raise error


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class _PinnedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PinnedHTTPPool, "https": _PinnedHTTPSPool}


def session(headers: dict | None = None) -> requests.Session:
    """A requests session whose connections only go to pinned targets."""
    new = requests.Session()
    # No proxies or .netrc from the environment: a proxy would make the address checks meaningless.
    new.trust_env = False
    new.headers.update(headers or {})
    adapter = _PinnedAdapter(max_retries=0)
    new.mount("http://", adapter)
    new.mount("https://", adapter)
    return new
