"""A real HTTP server on 127.0.0.1 that plays an image provider: scripted faults, recorded requests, load.

Subclasses speak one provider's wire format (`check`, `fault_reply`, `success`); this class owns the
control API the tests use. The socket side (resets, endless bodies) is in handler.py.
"""

import threading
import time
from abc import ABC, abstractmethod
from collections import Counter

from tests.fakes.faults import Fault, Recorded, Reply
from tests.fakes.handler import Handler, Server
from tests.fakes.load import LoadModel

__all__ = ["FakeServer", "Fault", "Recorded", "Reply"]


class FakeServer(ABC):
    generation_path = "/v1"
    load_overflow = "reject"  # what the load model does past its limits: "reject" (429) or "queue"

    def __init__(self, api_key: str):
        self.api_key = api_key
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.load = LoadModel(self.stopping)
        self._httpd = None
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self):
        handler = type("BoundHandler", (Handler,), {"fake": self})
        self._httpd = Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        self.stopping.set()
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    # -- control -----------------------------------------------------------------------------------
    def reset(self):
        with self._lock:
            self.calls: list[Recorded] = []
            self.downloads: list[Recorded] = []
            self.files: dict[str, tuple[bytes, str]] = {}
            self.expired: set[str] = set()
            self._queue: list[tuple[str | None, Fault]] = []
            self._rules: list[tuple[str, Fault]] = []
            self._standing: Fault | None = None
            # Called with each call (or file download) just before it is answered: fault tests drop a
            # database connection there.
            self.before_reply = None
            self.before_download = None
        self.load.configure()

    def script(self, *faults, times: int = 1, prompt: str | None = None):
        """Queue faults for the next calls (each `times` over), then calls succeed again. With `prompt`,
        only calls whose prompt contains it take from this queue."""
        with self._lock:
            self._queue += [(prompt, Fault.of(f)) for f in faults for _ in range(times)]
        return self

    def on_prompt(self, substring: str, fault):
        """Every call whose prompt contains `substring` gets `fault`, until reset()."""
        with self._lock:
            self._rules.append((substring, Fault.of(fault)))
        return self

    def set_fault(self, fault):
        """Every call gets `fault` until set_fault(None)."""
        with self._lock:
            self._standing = Fault.of(fault) if fault else None
        return self

    def set_latency(self, seconds: float):
        self.load.configure(latency=seconds)
        return self

    def set_load(self, latency: float = 0.0, max_concurrent: int | None = None, per_minute: int | None = None,
                 overflow: str | None = None):
        """Latency L per call, at most C at once and R per minute; beyond that 429 (or a wait, "queue")."""
        self.load.configure(latency, max_concurrent, per_minute, overflow or self.load_overflow)
        return self

    def expire(self, url: str | None = None):
        """Make one served file (or all of them) answer 404 from now on, as provider URLs do after an hour."""
        with self._lock:
            self.expired |= {url.rsplit("/", 1)[-1]} if url else set(self.files)

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def prompt_counts(self) -> Counter:
        return Counter(call.prompt for call in self.calls)

    def store_file(self, name: str, data: bytes, content_type: str, *, folder="files") -> str:
        with self._lock:
            self.files[name] = (data, content_type)
        return f"{self.origin}/{folder}/{name}"

    # -- for subclasses ----------------------------------------------------------------------------
    @abstractmethod
    def prompt_of(self, payload) -> str | None:
        """The prompt of a request body, for per-prompt faults and counts."""

    @abstractmethod
    def check(self, call: Recorded) -> Reply | None:
        """An error Reply when the real API would refuse the request (auth, validation), else None."""

    @abstractmethod
    def fault_reply(self, call: Recorded, fault: Fault) -> Reply | None:
        """The provider's own answer to a fault of its kind, else None."""

    @abstractmethod
    def success(self, call: Recorded, fault: Fault) -> Reply:
        """A successful answer in the provider's wire format."""

    # -- called by the handler --------------------------------------------------------------------
    def _fault_for(self, prompt: str | None) -> Fault:
        with self._lock:
            for index, (wanted, _) in enumerate(self._queue):
                if wanted is None or (prompt and wanted in prompt):
                    return self._queue.pop(index)[1]
            for substring, fault in self._rules:
                if prompt and substring in prompt:
                    return fault
            return self._standing or Fault()

    def answer_headers(self, call: Recorded) -> dict:
        """Headers for every answer to this call, whatever it is (OpenAI's x-request-id); none here. Called
        once per call under the lock, in step with `calls`."""
        return {}

    def get(self, request: Recorded) -> Reply:
        """A GET: a served file, unless a subclass routes the path itself (OpenAI's model list)."""
        return self.download(request)

    def download(self, request: Recorded) -> Reply:
        """A GET of a served file; expired ones 404 as Azure's blob store answers."""
        name = request.path.rsplit("/", 1)[-1]
        with self._lock:
            self.downloads.append(request)
            found = self.files.get(name) if name not in self.expired else None
        if self.before_download is not None:
            self.before_download(request)
        if not found:
            return Reply(404, body=b"<Error><Code>BlobNotFound</Code></Error>", content_type="application/xml")
        return Reply(200, body=found[0], content_type=found[1])

    def answer(self, handler: Handler, call: Recorded):
        """One generation call: recorded, put through the load model and the scripted fault, answered."""
        with self._lock:
            self.calls.append(call)
            handler.extra_headers = self.answer_headers(call)
        wait = self.load.admit()
        if wait is not None:
            fault = Fault("rate_limit", retry_after=str(wait))
            return handler.reply(self.fault_reply(call, fault), fault)
        released = False
        try:
            started = time.monotonic()
            fault = self._fault_for(call.prompt)
            delay = fault.delay or (30.0 if fault.kind == "timeout" else 0.0)
            reply = None
            if fault.kind not in ("reset", "cut_body", "never_ending_body", "huge_body", "raw"):
                reply = self.check(call) or self.fault_reply(call, fault) or self.success(call, fault)
            # The image is made inside the latency, so a call takes L, not L plus our own encoding.
            if self.stopping.wait(max(0.0, delay + self.load.latency - (time.monotonic() - started))):
                return None
            # The work is done once the answer goes out: a client that starts its next call the moment
            # it has read this one's answer is within the limit, as with a real provider.
            self.load.release()
            released = True
            if self.before_reply is not None:
                self.before_reply(call)
            if fault.kind == "reset":
                return handler.reset()
            if fault.kind in ("cut_body", "never_ending_body", "huge_body"):
                return getattr(handler, fault.kind)(fault)
            if fault.kind == "raw":
                return handler.reply(Reply(fault.status or 200, body=fault.body or b"",
                                           content_type=fault.content_type or "text/plain"), fault)
            return handler.reply(reply, fault)
        finally:
            if not released:
                self.load.release()
