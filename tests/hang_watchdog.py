"""A test stuck in native code ends the test process, with every thread's stack.

pytest-timeout (``timeout = 300``, the signal method) raises in the main thread
from a Python signal handler, and such a handler runs only between bytecodes: a
main thread stuck inside a C call never gets there. Seen once: the main thread in
livekit's FFI (python ``livekit`` 1.1.21), disposing a caller's audio source,
joining a spinning audio capture thread; the lane hung until it was killed, with
no trace of where. faulthandler's watchdog is a C thread: past :data:`HANG_S`
for one test (set-up, call and tear-down) it writes every Python thread's stack
to the stderr the session started with and ends the process (exit code 1), so a
hang is a failure that says where, and the suite ends.

Loaded by tests/conftest.py; ``-p hang_watchdog`` with ``tests`` on the path
elsewhere.
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Iterator
from typing import TextIO

import pytest

# Past pytest-timeout's 300 s, so that a test it can stop still fails through it.
HANG_S = float(os.environ.get("AGENT_TEST_HANG_S", "420"))

_out: list[TextIO] = []


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # A copy of fd 2 as the session found it: while a test runs, pytest's capture
    # points fd 2 at a file of its own, which the ended process never reports.
    _out.append(os.fdopen(os.dup(2), "w"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if _out:
        faulthandler.dump_traceback_later(HANG_S, exit=True, file=_out[0])
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()
