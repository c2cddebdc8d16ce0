"""Shared fixtures: one local deployment (livekit-server, realtime backend, worker)
for the room tests of a test session, started lazily by the first test that asks.

The suite runs on two pytest-xdist workers (scripts/test.sh: ``-n 2 --dist
loadfile``: a module's tests and its module fixtures stay on one worker; each
worker's session testbed gets a slot of ports of its own). What may run side
by side is decided per test (:class:`_Lanes`): room tests that need the CPU
run one at a time (two of them on two cores made answers late), and a room
test marked ``idle`` (one that mostly waits on the clock) or a unit test may
run beside one; a module marked ``solo`` (figures that need an unloaded CPU:
the echo and noise measurements) runs while nothing else does.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.testing.harness import FIRST_FREE_SLOT, Testbed, running_testbed

BRAIN_SCRIPT = Path(__file__).parent / "data" / "brain.yaml"


def _xdist_worker(config: pytest.Config) -> int | None:
    """This process's pytest-xdist worker number (gw0 is 0), None when not distributed."""
    workerinput = getattr(config, "workerinput", None)
    return None if workerinput is None else int(workerinput["workerid"].removeprefix("gw"))


@pytest.fixture(scope="session")
def testbed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    worker = _xdist_worker(request.config)
    slot = 0 if worker is None else FIRST_FREE_SLOT + worker
    with running_testbed(tmp_path_factory.mktemp("testbed"), slot=slot, realtime_env={"AGENT_BRAIN_SCRIPT": str(BRAIN_SCRIPT)}) as bed:
        yield bed


class _Lanes:
    """The locks that decide which tests run side by side (module docstring).

    flock(2) on files that every worker of the run opens (named after the
    run's id, which xdist gives each worker). Every test holds ``all`` shared;
    a room test also holds its lane exclusively (``rooms``, or ``idle`` for a
    test marked ``idle``); a solo module holds ``all`` exclusively from its
    first test's set-up to its last test's tear-down, so nothing else runs.
    Locks are taken in that order (``all`` first), so no two tests can wait
    on each other."""

    def __init__(self, run: str) -> None:
        self._paths = [Path(tempfile.gettempdir()) / f"agent-tests-{run}-{name}.lock" for name in ("all", "rooms", "idle")]
        self._all, self._rooms, self._idle = (open(p, "ab") for p in self._paths)  # held for the session
        self._solo_module: str | None = None

    def close(self) -> None:
        for f in (self._all, self._rooms, self._idle):
            f.close()
        for p in self._paths:
            p.unlink(missing_ok=True)  # the workers still running hold their own open files

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
        module = item.nodeid.split("::")[0]
        lane = None
        if item.get_closest_marker("solo"):
            if self._solo_module != module:
                fcntl.flock(self._all, fcntl.LOCK_EX)  # held across the module's tests and its fixtures
                self._solo_module = module
        else:
            fcntl.flock(self._all, fcntl.LOCK_SH)
            if item.get_closest_marker("room"):
                lane = self._idle if item.get_closest_marker("idle") else self._rooms
                fcntl.flock(lane, fcntl.LOCK_EX)
        try:
            return (yield)
        finally:
            if lane is not None:
                fcntl.flock(lane, fcntl.LOCK_UN)
            if self._solo_module is None or nextitem is None or nextitem.nodeid.split("::")[0] != module:
                self._solo_module = None
                fcntl.flock(self._all, fcntl.LOCK_UN)


def _module_rank(items: list[pytest.Item]) -> int:
    if all(i.get_closest_marker("idle") for i in items):
        return 0  # first: beside it the CPU-bound room tests go on
    if any(i.get_closest_marker("solo") for i in items):
        return 2
    return 1 if any(i.get_closest_marker("room") for i in items) else 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules in the order xdist hands them out (``--no-loadscope-reorder``):
    the idle room modules, the other room modules, the solo ones, the unit
    tests. The room tests are the longest lane; started first, they end first."""
    by_module: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
    rank = {module: _module_rank(its) for module, its in by_module.items()}
    items.sort(key=lambda i: rank[i.nodeid.split("::")[0]])  # stable: file order within a rank


def pytest_configure(config: pytest.Config) -> None:
    if _xdist_worker(config) is not None:
        run = getattr(config, "workerinput")["testrunuid"]  # noqa: B009 (set by xdist on its workers only)
        config.pluginmanager.register(_Lanes(run), "lanes")


def pytest_unconfigure(config: pytest.Config) -> None:
    lanes = config.pluginmanager.get_plugin("lanes")
    if isinstance(lanes, _Lanes):
        lanes.close()


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture
async def serve_app() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """Serve an aiohttp app on a free loopback port for the test; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()
