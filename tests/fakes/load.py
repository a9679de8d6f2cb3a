"""A provider's capacity, simply: each call takes `latency` seconds, at most `max_concurrent` run at once
and at most `per_minute` start in any 60 s. Past a limit the call is refused with a retry-after (OpenAI's
habit) or waits its turn (Runware's: load shows up as latency)."""

import math
import threading
import time
from collections import deque


class LoadModel:
    def __init__(self, stopping: threading.Event):
        self._stopping = stopping
        self._cond = threading.Condition()
        self.configure()

    def configure(self, latency: float = 0.0, max_concurrent: int | None = None, per_minute: int | None = None,
                  overflow: str = "reject"):
        if overflow not in ("reject", "queue"):
            raise ValueError("overflow is 'reject' or 'queue'")
        with self._cond:
            self.latency, self.max_concurrent, self.per_minute, self.overflow = (
                latency, max_concurrent, per_minute, overflow)
            self.in_flight = self.peak = self.admitted = self.rejected = 0
            self._starts: deque[float] = deque()
            self._cond.notify_all()

    def _wait_needed(self, now: float) -> float:
        """Seconds until this call may start; 0 when it may start now."""
        while self._starts and now - self._starts[0] >= 60:
            self._starts.popleft()
        if self.per_minute and len(self._starts) >= self.per_minute:
            return 60 - (now - self._starts[0])
        if self.max_concurrent and self.in_flight >= self.max_concurrent:
            return 1.0
        return 0.0

    def admit(self) -> int | None:
        """None when the call may run (call release() after), else the whole seconds to ask it to wait."""
        with self._cond:
            while (wait := self._wait_needed(time.monotonic())) > 0:
                if self.overflow == "reject" or self._stopping.is_set():
                    self.rejected += 1
                    return max(1, math.ceil(wait))
                # a finishing call notifies; a per-minute slot frees by time alone, so wake up for it too
                self._cond.wait(timeout=min(wait, 0.25))
            self.in_flight += 1
            self.admitted += 1
            self.peak = max(self.peak, self.in_flight)
            self._starts.append(time.monotonic())
            return None

    def release(self):
        with self._cond:
            self.in_flight = max(0, self.in_flight - 1)
            self._cond.notify_all()
