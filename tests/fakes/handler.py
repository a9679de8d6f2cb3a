"""The socket side of the fakes: reads a request, writes a Reply, or misbehaves below the JSON."""

import contextlib
import json
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fakes.faults import Fault, Recorded, Reply


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass  # clients that time out or hang up mid-answer are the point of these fakes


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None  # the FakeServer, set by FakeServer.start()
    # Headers every answer to this call carries, faults included (OpenAI's x-request-id); set per call by
    # FakeServer.answer, never mutated.
    extra_headers: dict = {}

    def log_message(self, *args):
        pass

    def _record(self) -> Recorded:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        prompt = None
        with contextlib.suppress(AttributeError, KeyError, TypeError, IndexError):
            prompt = self.fake.prompt_of(payload)
        return Recorded(self.command, self.path, dict(self.headers.items()), body, payload, prompt, time.time())

    def do_POST(self):
        call = self._record()
        if self.path != self.fake.generation_path:
            return self.reply(Reply(404, {"error": {"message": f"Invalid URL (POST {self.path})"}}))
        self.fake.answer(self, call)

    def do_GET(self):
        self.reply(self.fake.get(Recorded("GET", self.path, dict(self.headers.items()), b"", None, None,
                                          time.time())))

    def reply(self, reply: Reply, fault: Fault | None = None):
        body = reply.body if reply.body is not None else json.dumps(reply.payload).encode()
        headers = {**self.extra_headers, **reply.headers}
        if fault and fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        if fault and fault.retry_after_ms is not None:
            headers["retry-after-ms"] = fault.retry_after_ms
        if fault and fault.kind == "trickle":
            return self.trickle(reply.status, {"Content-Type": reply.content_type, **headers}, body, fault)
        self.send_response(reply.status)
        for name, value in {"Content-Type": reply.content_type, "Content-Length": str(len(body)),
                            "Connection": "close", **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self._write(body)

    def trickle(self, status: int, headers: dict, body: bytes, fault: Fault):
        """A whole, valid answer sent one byte every `fault.interval` s — after the status line and
        headers, or from the status line on (`fault.trickle_headers`) — until the client hangs up or the
        server stops. Every read the client makes gets a byte in time, so only a deadline ends it."""
        lines = [f"{self.protocol_version} {status} {self.responses[status][0]}",
                 *(f"{name}: {value}" for name, value in {**headers, "Content-Length": str(len(body)),
                                                           "Connection": "close"}.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not fault.trickle_headers:
            self._write(head)
        data = head + body if fault.trickle_headers else body
        for index in range(len(data)):
            if not self._write(data[index:index + 1]) or self.fake.stopping.wait(fault.interval):
                break
        self.close_connection = True

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False

    def _start(self, status=200, length: int | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        for name, value in self.extra_headers.items():
            self.send_header(name, value)
        self.send_header(*(("Content-Length", str(length)) if length is not None else ("Transfer-Encoding", "chunked")))
        self.end_headers()

    def reset(self):
        """Hang up with a TCP reset instead of answering."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def cut_body(self, fault: Fault):
        """Promise a body, send half of it, hang up."""
        body = b'{"created": 1, "data": [{"b64_json": "' + b"A" * 4000 + b'"}]}'
        self._start(200, len(body))
        self._write(body[: len(body) // 2])
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def never_ending_body(self, fault: Fault):
        """A chunked body that trickles until the client gives up or the server stops."""
        self._start(200)
        piece = b'{"data": [{"b64_json": "'
        while self._write(b"%x\r\n%s\r\n" % (len(piece), piece)) and not self.fake.stopping.wait(0.01):
            piece = b"A" * 1024
        self.close_connection = True

    def huge_body(self, fault: Fault):
        """`fault.size` bytes of one valid-looking JSON answer, sent as fast as the client reads."""
        head, tail = b'{"created": 1, "data": [{"b64_json": "', b'"}]}'
        block = b"A" * (1024 * 1024)
        filler = max(0, fault.size - len(head) - len(tail))
        parts = [head, *[block] * (filler // len(block)), block[: filler % len(block)], tail]
        self._start(200, None if fault.chunked else len(head) + filler + len(tail))
        for part in parts:
            if part and not self._write(b"%x\r\n%s\r\n" % (len(part), part) if fault.chunked else part):
                break
        else:
            if fault.chunked:
                self._write(b"0\r\n\r\n")
        self.close_connection = True
