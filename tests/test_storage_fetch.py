"""fetch_image against real HTTP servers on 127.0.0.1, with a canary listener that must never be reached.

A guard on socket.connect records every connection attempt and stops any to a non-loopback address
before a packet leaves, so a broken check fails the test instead of reaching 10.x or 169.254.x.
"""

import ipaddress
import logging
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from jobs.storage import fetch
from jobs.storage.fetch import FetchFailed, FetchRefused, fetch_image

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"not really a png, fetch does not care" * 10


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        # A client hanging up mid-request is what fetch_image is meant to do to bad servers.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """A local HTTP server; `routes` maps a path to a function that answers through the handler."""

    def __init__(self):
        self.routes = {}
        self.requests = []  # (path, Host header)
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Host")))
                route = server.routes.get(urlsplit(self.path).path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, *args):
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.entry = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Canary:
    """A listener that records every connection it accepts."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed.is_set():
            try:
                conn, address = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(address)
            conn.close()

    def connections(self):
        time.sleep(0.15)  # let the accept loop see anything the kernel queued
        return list(self.accepted)

    def close(self):
        self._closed.set()
        self.sock.close()


def send(handler, body, status=200, content_type="image/png", length=True, headers=()):
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    else:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def redirect_to(location, status=302):
    return lambda handler: send(handler, b"", status=status, headers=[("Location", location)])


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


@pytest.fixture
def canary():
    listener = Canary()
    yield listener
    listener.close()


@pytest.fixture(autouse=True)
def attempts(monkeypatch):
    """Every address a socket tried to connect to; non-loopback ones are stopped before connecting."""
    seen = []
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        seen.append(address[:2])
        if not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
            raise OSError(f"test guard: no traffic to {address[0]}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return seen


# URL, extra allowed-host entries; "{canary}" becomes the canary's port. Each is refused before connecting.
REFUSED = {
    "metadata-service": ("http://169.254.169.254/latest/meta-data/", ("169.254.169.254",)),
    "metadata-service-on-canary-port": ("http://169.254.169.254:{canary}/", ("169.254.169.254",)),
    "loopback-port-not-exactly-allowed": ("http://127.0.0.1:{canary}/x.png", ("127.0.0.1", "localhost")),
    "localhost-port-not-exactly-allowed": ("http://localhost:{canary}/x.png", ("localhost",)),
    "loopback-by-host-entry": ("http://127.0.0.1/x.png", ("127.0.0.1",)),
    "localhost-by-host-entry": ("http://localhost/x.png", ("localhost",)),
    "ipv6-loopback": ("http://[::1]/x.png", ("[::1]",)),
    "ipv6-loopback-canary-port": ("http://[::1]:{canary}/x.png", ("[::1]",)),
    "ipv4-mapped-ipv6-loopback": ("http://[::ffff:127.0.0.1]/x.png", ("[::ffff:127.0.0.1]",)),
    "private-10": ("http://10.0.0.5/x.png", ("10.0.0.5",)),
    "private-192": ("http://192.168.1.1/x.png", ("192.168.1.1",)),
    "unspecified": ("http://0.0.0.0/x.png", ("0.0.0.0",)),
    "decimal-ip": ("http://2130706433/x.png", ("2130706433",)),
    "decimal-ip-canary-port": ("http://2130706433:{canary}/x.png", ()),
    "hex-short-ip": ("http://0x7f.1/x.png", ("0x7f.1",)),
    "file-scheme": ("file:///etc/passwd", ()),
    "gopher-scheme": ("gopher://127.0.0.1:{canary}/_GET%20/", ()),
    "ftp-scheme": ("ftp://127.0.0.1:{canary}/x.png", ()),
    "other-host": ("http://evil.test/x.png", ("images.test",)),
    "user-info": ("http://images.test@127.0.0.1:{canary}/x.png", ("images.test",)),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_it_refuses_a_forbidden_url_without_connecting(case, server, canary, attempts):
    url, extra = REFUSED[case]
    with pytest.raises(FetchRefused):
        fetch_image(url.format(canary=canary.port), (*extra, server.entry))
    assert attempts == []
    assert canary.connections() == []


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_it_refuses_a_redirect_to_a_forbidden_url(case, server, canary, attempts):
    url, extra = REFUSED[case]
    server.routes["/image.png"] = redirect_to(url.format(canary=canary.port))
    with pytest.raises(FetchRefused, match="redirected somewhere refused"):
        fetch_image(server.url("/image.png"), (*extra, server.entry))
    assert {address[1] for address in attempts} == {server.port}
    assert canary.connections() == []


def test_it_refuses_a_redirect_to_a_private_address(server, canary):
    server.routes["/image.png"] = redirect_to("http://10.0.0.5/latest")
    with pytest.raises(FetchRefused, match=r"private or reserved address \(10\.0\.0\.5\)"):
        fetch_image(server.url("/image.png"), ("10.0.0.5", server.entry))


def test_it_downloads_from_an_exactly_allowed_host_and_port(server):
    server.routes["/image.png"] = lambda h: send(h, PNG_BYTES)
    assert fetch_image(server.url("/image.png?sig=abc"), (server.entry,)) == PNG_BYTES


def test_it_follows_up_to_three_redirects(server):
    server.routes["/a"] = redirect_to(server.url("/b"), status=301)
    server.routes["/b"] = redirect_to("/c", status=307)  # relative Locations resolve against the last URL
    server.routes["/c"] = redirect_to(server.url("/image.png"), status=308)
    server.routes["/image.png"] = lambda h: send(h, PNG_BYTES)
    assert fetch_image(server.url("/a"), (server.entry,)) == PNG_BYTES


def test_it_gives_up_after_three_redirects(server):
    for here, there in [("/a", "/b"), ("/b", "/c"), ("/c", "/d"), ("/d", "/image.png")]:
        server.routes[here] = redirect_to(server.url(there))
    server.routes["/image.png"] = lambda h: send(h, PNG_BYTES)
    with pytest.raises(FetchFailed, match="redirected more than 3 times"):
        fetch_image(server.url("/a"), (server.entry,))
    assert [path for path, _ in server.requests] == ["/a", "/b", "/c", "/d"]


def test_it_connects_to_the_address_it_checked(server, monkeypatch):
    # The system cannot resolve images.test: the download only works if the checked address is used.
    monkeypatch.setattr(fetch, "_resolve", lambda host, port: ("127.0.0.1",))
    server.routes["/image.png"] = lambda h: send(h, PNG_BYTES)
    url = f"http://images.test:{server.port}/image.png"
    assert fetch_image(url, (f"images.test:{server.port}",)) == PNG_BYTES
    assert server.requests == [("/image.png", f"images.test:{server.port}")]


def test_a_suffix_entry_allows_subdomains_on_the_default_port(monkeypatch, attempts):
    monkeypatch.setattr(fetch, "_resolve", lambda host, port: ("93.184.216.34",))
    # The guard stops the connection; what matters is that it was allowed and aimed at the checked address.
    with pytest.raises(FetchFailed, match="could not connect to acct.blob.images.test"):
        fetch_image("https://acct.blob.images.test/c/x.png?sig=1", (".blob.images.test",))
    assert attempts == [("93.184.216.34", 443)]


@pytest.mark.parametrize("url", ["https://blob.images.test/x.png", "https://evilblob.images.test/x.png",
                                 "https://acct.blob.images.test:8443/x.png"])
def test_a_suffix_entry_allows_nothing_else(url, monkeypatch):
    monkeypatch.setattr(fetch, "_resolve", lambda host, port: ("93.184.216.34",))
    with pytest.raises(FetchRefused, match="not a host this provider's images are downloaded from"):
        fetch_image(url, (".blob.images.test",))


def test_a_suffix_entry_still_refuses_a_private_address(monkeypatch, attempts):
    monkeypatch.setattr(fetch, "_resolve", lambda host, port: ("93.184.216.34", "10.1.2.3"))
    with pytest.raises(FetchRefused, match="private or reserved"):
        fetch_image("https://acct.blob.images.test/x.png", (".blob.images.test",))
    assert attempts == []


def test_it_says_the_url_may_have_expired_on_404(server):
    with pytest.raises(FetchFailed) as failed:
        fetch_image(server.url("/gone.png"), (server.entry,))
    assert failed.value.reason == "the provider's image URL answered 404 (it may have expired)"
    assert failed.value.status == 404


def test_it_refuses_a_body_over_the_byte_cap_from_its_length(server):
    server.routes["/big.png"] = lambda h: send(h, b"x" * (2 * 1024 * 1024))
    with pytest.raises(FetchFailed, match="image larger than 1 MB"):
        fetch_image(server.url("/big.png"), (server.entry,), max_bytes=1024 * 1024)


def test_it_stops_reading_a_body_without_length_at_the_byte_cap(server):
    def endless_fast(handler):
        send(handler, b"", length=False)
        while not server.stop.is_set():
            handler.wfile.write(b"x" * 65536)

    server.routes["/big.png"] = endless_fast
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="image larger than 1 MB"):
        fetch_image(server.url("/big.png"), (server.entry,), max_bytes=1024 * 1024)
    assert time.monotonic() - started < 5


def test_the_default_byte_cap_is_25_mb(server):
    announced = [("Content-Length", str(26 * 1024 * 1024))]
    server.routes["/big.png"] = lambda h: send(h, b"", length=False, headers=announced)
    with pytest.raises(FetchFailed, match="image larger than 25 MB"):
        fetch_image(server.url("/big.png"), (server.entry,))


def test_a_body_that_never_ends_fails_within_the_deadline(server):
    def endless_slow(handler):
        send(handler, b"", length=False)
        while not server.stop.is_set():
            handler.wfile.write(b"x" * 1024)
            handler.wfile.flush()
            time.sleep(0.01)

    server.routes["/endless.png"] = endless_slow
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="took too long"):
        fetch_image(server.url("/endless.png"), (server.entry,), total_deadline=1)
    assert time.monotonic() - started < 2.5


def test_a_slow_drip_fails_within_the_deadline_not_the_read_timeout(server):
    def drip(handler):
        send(handler, b"x", length=False, headers=[("Content-Length", "1000")])
        handler.wfile.flush()
        server.stop.wait(20)

    server.routes["/drip.png"] = drip
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="took too long"):
        fetch_image(server.url("/drip.png"), (server.entry,), timeout=(5, 30), total_deadline=1)
    assert time.monotonic() - started < 2.5


def test_a_server_that_never_answers_fails_within_the_deadline(server):
    server.routes["/silent.png"] = lambda h: server.stop.wait(20)
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="did not answer in time"):
        fetch_image(server.url("/silent.png"), (server.entry,), timeout=(5, 30), total_deadline=1)
    assert time.monotonic() - started < 2.5


def test_it_fails_on_an_empty_body(server):
    server.routes["/empty.png"] = lambda h: send(h, b"")
    with pytest.raises(FetchFailed, match="empty body"):
        fetch_image(server.url("/empty.png"), (server.entry,))


def test_it_fails_when_nothing_listens(canary):
    port = canary.port
    canary.close()
    with pytest.raises(FetchFailed, match="could not connect to 127.0.0.1"):
        fetch_image(f"http://127.0.0.1:{port}/x.png", (f"127.0.0.1:{port}",))


def test_it_never_logs_or_reports_the_signed_query_string(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.routes["/image.png"] = lambda h: send(h, PNG_BYTES)
    secret = "sig=SECRET-SIGNATURE"
    fetch_image(server.url(f"/image.png?{secret}"), (server.entry,))
    failures = []
    for url, allowed in [(server.url(f"/gone.png?{secret}"), (server.entry,)),
                         (f"http://127.0.0.1:1/x.png?{secret}", ("127.0.0.1:1",)),
                         (f"http://evil.test/x.png?{secret}", (server.entry,))]:
        with pytest.raises((FetchFailed, FetchRefused)) as raised:
            fetch_image(url, allowed)
        failures.append("".join(traceback.format_exception(raised.value)))
    assert "SECRET" not in caplog.text
    assert all("SECRET" not in text for text in failures)
    assert "127.0.0.1" in caplog.text  # the host is logged
