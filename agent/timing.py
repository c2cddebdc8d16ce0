"""Where a job's time goes before its greeting: a stopwatch of named laps.

The job logs one line of laps (``job set-up until the greeting is asked for:
connect 110 ms, ...; total 350 ms``)
so that the latency benchmark and an operator read the same figures.
"""

from __future__ import annotations

import time


class Stopwatch:
    """Named laps on the monotonic clock, from when it was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self._last = self.started
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> float:
        """The time since the previous lap (or the start), recorded as ``name``; laps of one name add up."""
        now = time.perf_counter()
        took = now - self._last
        self._last = now
        self.laps[name] = self.laps.get(name, 0.0) + took
        return took

    @property
    def total(self) -> float:
        return self._last - self.started

    def summary(self) -> str:
        parts = [f"{name} {took * 1000:.0f} ms" for name, took in self.laps.items()]
        return ", ".join(parts) + f"; total {self.total * 1000:.0f} ms"
