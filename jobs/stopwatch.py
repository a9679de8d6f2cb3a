"""Seconds per stage of a job, kept in its meta so the benchmark can show the critical path."""

import time


class Stopwatch:
    def __init__(self):
        self.timings: dict = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Record the time since the previous lap under `stage`."""
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 4)
        self._last = now

    def add(self, timings: dict) -> None:
        """Take stages measured elsewhere (e.g. by AICore) and restart the lap clock."""
        self.timings.update({k: round(v, 4) for k, v in timings.items()})
        self._last = time.perf_counter()
