"""pytest plugin: test any LiveKit agent in real rooms (installed with the package,
entry point ``pytest11: agent_rooms``).

Fixtures:

- ``room_lab`` (session): livekit-server and the local realtime backend in the
  test namespace (:class:`agent.testing.lab.Lab`); the backend's scripted brain
  comes from ``--room-brain FILE`` (or the ``room_brain`` ini option).
- ``room_current_lab`` (per test): the lab the test's workers and callers use:
  the session's, or, for a test marked ``@pytest.mark.room_lab(scope="test")``
  (optionally ``brain=``), a lab of its own on a port slot leased for the test
  (:func:`agent.testing.lab.leased_slot`), so that pytest processes side by
  side never share a server; stopped when the test ends.
- ``room_worker`` (per test): ``await room_worker("my_agent:server")``, or a
  command (``["python", "agent.py", "start"]``), optionally with ``brain=``
  (rules inline or a file: a backend of its own) and ``env=``; stopped at the
  end of the test.
- ``room_caller`` (per test): ``await room_caller(room=None)``: a caller in a
  new room (or ``room``), with ``say``, ``type``, ``barge_in``, ``leave`` and
  the waits of :mod:`agent.testing.expect`.

``from agent.testing.expect import expect`` for the assertions. Room tests need
a network namespace: ``python -m agent.testing.netns -- pytest``, or
``pytest --netns`` which re-executes pytest inside one. When a test fails, its
callers' recordings (``caller-N.wav``: left what was said, right what was
heard) and its workers' logs are kept in the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .netns import inside_namespace
from .watchdog import HangWatchdog, hang_limit

NOT_IN_NAMESPACE = (
    "room tests need a private network namespace (libwebrtc ignores loopback); run pytest with --netns, or as\n"
    "  python -m agent.testing.netns -- python -m pytest ..."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agent_rooms", "room tests of LiveKit agents (agent.testing)")
    group.addoption("--netns", action="store_true", help="re-run pytest inside a private network namespace (needs root)")
    group.addoption("--room-brain", default=None, help="YAML/JSON rules of the local realtime backend's scripted brain")
    parser.addini("room_brain", "the scripted brain's rules file (as --room-brain)", default="")
    parser.addini("room_slot", "port slot of the lab's livekit-server (agent.testing.harness.slot_ports)", default="0")


def pytest_configure(config: pytest.Config) -> None:
    # A test stuck where pytest-timeout cannot reach ends the session with its stacks.
    if (limit := hang_limit(config)) > 0 and not config.getoption("usepdb", False):
        config.pluginmanager.register(HangWatchdog(limit), "agent_hang_watchdog")
    config.addinivalue_line(
        "markers",
        "room_lab(scope='session', brain=None): scope='test' gives the test a lab of its own "
        "(livekit-server and a realtime backend with brain's rules), stopped when it ends",
    )
    if config.getoption("netns") and not inside_namespace():
        args = [a for a in sys.argv[1:] if a != "--netns"]
        os.execv(sys.executable, [sys.executable, "-m", "agent.testing.netns", "--", sys.executable, "-m", "pytest", *args])


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: Any = yield
    if report.when == "call":
        item.stash[_FAILED] = bool(report.failed)
    return report  # type: ignore[no-any-return]


def _failed(request: pytest.FixtureRequest) -> bool:
    return bool(request.node.stash.get(_FAILED, False))


@pytest.fixture(scope="session")
def room_lab_slot(request: pytest.FixtureRequest) -> int:
    """The lab's port slot: the ``room_slot`` ini option; override the fixture to
    pick one per run (two pytest processes side by side need two)."""
    return int(request.config.getini("room_slot") or 0)


@pytest.fixture(scope="session")
def room_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, room_lab_slot: int) -> Iterator[Any]:
    if not inside_namespace():
        pytest.fail(NOT_IN_NAMESPACE, pytrace=False)
    from .lab import Lab

    brain = request.config.getoption("room_brain") or request.config.getini("room_brain") or None
    with Lab(tmp_path_factory.mktemp("room-lab"), slot=room_lab_slot, brain=brain) as lab:
        yield lab


@pytest.fixture
def room_current_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    marker = request.node.get_closest_marker("room_lab")
    scope = marker.kwargs.get("scope", "session") if marker is not None else "session"
    if scope == "session":
        yield request.getfixturevalue("room_lab")
        return
    if scope != "test":
        raise pytest.UsageError(f"room_lab(scope={scope!r}): the scope is 'session' or 'test'")
    if not inside_namespace():
        pytest.fail(NOT_IN_NAMESPACE, pytrace=False)
    from .lab import Lab, leased_slot

    assert marker is not None
    with leased_slot() as slot, Lab(tmp_path / "lab", slot=slot, brain=marker.kwargs.get("brain")) as lab:
        yield lab


@pytest.fixture(scope="session")
def room_ear() -> Iterator[Any]:
    from ..sound.recognizer import Recognizer

    ear = Recognizer()
    yield ear
    ear.close()


@pytest.fixture
async def room_worker(room_current_lab: Any, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    import asyncio

    started: list[Any] = []

    async def start(target: str | list[str], **options: Any) -> Any:
        worker = await asyncio.to_thread(room_current_lab.start_worker, target, **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await asyncio.to_thread(worker.stop)
        if worker.backend.process is not None:
            await asyncio.to_thread(worker.backend.process.stop)
        if _failed(request) and worker.process.log_path is not None:
            shutil.copy(worker.process.log_path, tmp_path / f"{worker.name}.log")


@pytest.fixture
async def room_caller(
    room_current_lab: Any, room_ear: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    from .expect import RoomCaller
    from .harness import room_name

    callers: list[RoomCaller] = []

    async def join(room: str | None = None, *, identity: str | None = None, agent_name: str | None = None, **options: Any) -> RoomCaller:
        n = len(callers) + 1
        caller = room_current_lab.caller(room or room_name("test"), identity or f"caller-{n}", agent_name=agent_name, **options)
        await caller.join()
        rc = RoomCaller(caller, room_current_lab.backends, room_ear, tmp_path,
                        rejoin_with=lambda room, who: room_current_lab.caller(room, who, agent_name=agent_name, **options))  # fmt: skip
        callers.append(rc)
        return rc

    yield join
    for n, rc in enumerate(callers, 1):
        await rc.caller.leave()
        if _failed(request):
            rc.save(tmp_path / f"caller-{n}.wav")
            print(f"\n[room test] kept {tmp_path / f'caller-{n}.wav'} (left: said, right: heard)")
