"""Shared fixtures: one local deployment (livekit-server, realtime backend, worker)
for the room tests of a test session, started lazily by the first test that asks."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.testing.harness import SLOTS, Deployment, Testbed, running_testbed

BRAIN_SCRIPT = Path(__file__).parent / "data" / "brain.yaml"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed room test's report carries the tails of its deployment's process
    logs (livekit-server, realtime backend, worker): CI keeps only what pytest
    prints, and a flake seen once there must be readable from that alone."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, Deployment):
                report.sections.append((f"process logs of {name}", value.failure_logs(60)))
    return report


_EXIT_STATUS: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without the interpreter's finalization once pytest has reported.

    livekit's FFI runtime (Rust, tokio) can still call back into Python while
    the interpreter finalizes; a fresh-clone run whose 690 tests had all passed
    ended with "thread 'tokio-rt-worker' panicked ... panic in a function that
    cannot unwind ... aborting" and exit code 134. Everything the session owes
    is done by now (reports printed, fixtures torn down, processes stopped), so
    the exit status is pytest's own."""
    if not _EXIT_STATUS:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    # scripts/lanes.sh runs pytest lanes side by side; each lane's session testbed
    # takes a slot of its own.
    lane = os.environ.get("AGENT_TEST_LANE")
    slot = SLOTS[f"{lane}-testbed"] if lane else 0
    with running_testbed(
        tmp_path_factory.mktemp("testbed"), slot=slot, realtime_env={"AGENT_BRAIN_SCRIPT": str(BRAIN_SCRIPT)}
    ) as bed:
        yield bed


@pytest.fixture(scope="session")
def room_lab_slot() -> int:
    """agent.testing's lab: a slot of its own per lane (the lanes run side by side)."""
    lane = os.environ.get("AGENT_TEST_LANE")
    return SLOTS[f"plugin-{lane}"] if lane else SLOTS["plugin"]


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture
async def serve_app() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Serve an aiohttp app on a free port of ``host`` (loopback unless told) for
    the test; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application, host: str = "127.0.0.1") -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://{host}:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()
