"""A test stuck in native code ends the pytest session, with every thread's stack.

pytest-timeout's signal method raises in the main thread from a Python signal
handler, and such a handler runs only between bytecodes: a main thread stuck
inside a C call never gets there. Seen once in this project's suite: the main
thread in livekit's FFI (python ``livekit`` 1.1.21), disposing a caller's audio
source, joining a spinning audio capture thread; the lane hung until it was
killed, with no trace of where. faulthandler's watchdog is a C thread: when one
test (set-up, call and tear-down) runs past the limit, it writes every Python
thread's stack to the stderr the session started with and ends the process
(exit code 1), so a hang is a failure that says where, and the run ends.

The limit is ``AGENT_TEST_HANG_S``, or else pytest-timeout's timeout plus
:data:`MARGIN_S` (so that a test pytest-timeout can stop still fails through
it); with neither, no watchdog. Registered by :mod:`agent.testing.plugin`.
"""

from __future__ import annotations

import faulthandler
import os
import time
from collections.abc import Iterator
from typing import TextIO

import pytest

__all__ = ["MARGIN_S", "HangWatchdog", "hang_limit"]

MARGIN_S = 120.0


def hang_limit(config: pytest.Config) -> float:
    """Seconds one test may take before the watchdog ends the session; 0: none."""
    explicit = os.environ.get("AGENT_TEST_HANG_S")
    if explicit:
        return float(explicit)
    try:
        value = config.getoption("timeout")  # --timeout, else the ini's
        if value is None:
            value = config.getini("timeout")
        timeout = float(value) if value not in (None, "") else 0.0
    except (ValueError, KeyError, TypeError):  # pytest-timeout not installed, or no number
        return 0.0
    return timeout + MARGIN_S if timeout > 0 else 0.0


class HangWatchdog:
    """The pytest hooks: faulthandler's timer armed for each test, and armed again
    after a failure (pytest's faulthandler plugin cancels it then, and a test's
    tear-down, where callers leave, can hang as well)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # A copy of fd 2 as the session found it: while a test runs, pytest's
        # capture points fd 2 at a file of its own, which an ended process never shows.
        self._out: TextIO = os.fdopen(os.dup(2), "w")
        self._deadline: float | None = None

    def _arm(self) -> None:
        if self._deadline is not None:
            faulthandler.dump_traceback_later(max(self._deadline - time.monotonic(), 1.0), exit=True, file=self._out)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        self._deadline = time.monotonic() + self.seconds
        self._arm()
        try:
            return (yield)
        finally:
            self._deadline = None
            faulthandler.cancel_dump_traceback_later()

    @pytest.hookimpl(trylast=True)
    def pytest_exception_interact(self) -> None:
        self._arm()
