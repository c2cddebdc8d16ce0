"""The worker's preflight: it retries what says a retry can help (``retryable``)
and gives up at once on what says it cannot. A tiny aiohttp app stands in for
livekit-server's Twirp API, answering every ListRooms call with one status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest
from aiohttp import web

from agent.config import Settings
from agent.errors import LiveKitAuthError, LiveKitUnavailable
from agent.preflight import preflight

ServeApp = Callable[[web.Application], Awaitable[str]]


async def _livekit_answering(serve_app: ServeApp, status: int) -> tuple[str, list[float]]:
    calls: list[float] = []

    async def list_rooms(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        return web.json_response({"code": "x", "msg": f"status {status}"}, status=status)

    app = web.Application()
    app.router.add_post("/twirp/livekit.RoomService/ListRooms", list_rooms)
    url = await serve_app(app)
    return url.replace("http://", "ws://", 1), calls


def _settings(url: str, timeout: float) -> Settings:
    return Settings(livekit_url=url, livekit_api_key="APIkey", livekit_api_secret="s" * 40, preflight_timeout=timeout)


async def test_preflight_gives_up_at_once_when_a_retry_cannot_help(serve_app: ServeApp) -> None:
    url, calls = await _livekit_answering(serve_app, 401)
    start = time.monotonic()
    with pytest.raises(LiveKitAuthError) as info:
        await preflight(_settings(url, timeout=30))
    assert not info.value.retryable
    assert len(calls) == 1
    assert time.monotonic() - start < 5


async def test_preflight_retries_until_its_deadline_when_a_retry_can_help(serve_app: ServeApp) -> None:
    url, calls = await _livekit_answering(serve_app, 429)
    start = time.monotonic()
    with pytest.raises(LiveKitUnavailable) as info:
        await preflight(_settings(url, timeout=1.5))
    assert info.value.retryable
    assert len(calls) >= 3, calls  # 0.25 s, 0.5 s, ... between tries
    assert time.monotonic() - start < 1.5 + 1  # and no try starts after the deadline


def test_preflight_says_what_is_wrong_before_livekit_agents_is_imported() -> None:
    # `start` runs the preflight first; livekit-agents (about 4 s of CPU to import,
    # minutes on a starved CPU) comes only once it has passed.
    import subprocess
    import sys

    probe = "import sys, agent.__main__, agent.preflight; print(sorted(m for m in sys.modules if m.startswith('livekit.agents')))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


# --- the load the worker reports (agent.worker.WorkerLoad) ---------------------


from agent.worker import WorkerLoad  # noqa: E402


def _server(*running: str) -> SimpleNamespace:
    return SimpleNamespace(active_jobs=[SimpleNamespace(job=SimpleNamespace(id=j)) for j in running])


def test_jobs_accepted_but_not_running_yet_count_toward_the_load() -> None:
    """Three offers within 170 ms: the third must find the worker (at most 2 jobs) full,
    though neither accepted job is in livekit-agents' active_jobs yet."""
    load = WorkerLoad(max_jobs=2, from_cpu=False)
    load.accepted("AJ_1")
    assert load(_server()) == 0.5
    load.accepted("AJ_2")
    assert load(_server()) == 1.0
    assert load(_server("AJ_1", "AJ_2")) == 1.0, "a job counts once, accepted and then running"
    assert load(_server("AJ_2")) == 0.5, "a job that ended stops counting"


def test_an_accepted_job_that_never_starts_stops_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    load = WorkerLoad(max_jobs=2, from_cpu=False)
    load.accepted("AJ_1")
    later = time.monotonic() + WorkerLoad.PENDING_S + 1
    monkeypatch.setattr("agent.worker.time.monotonic", lambda: later)
    assert load(_server()) == 0.0


def test_up_workers_report_load_from_jobs_unless_the_environment_says_otherwise() -> None:
    from agent.__main__ import up_worker_env

    base = {"LIVEKIT_API_KEY": "k"}
    env = up_worker_env(base, "ws://n1:7880", 1, 8081, 9100, environ={})
    assert env == {
        "LIVEKIT_API_KEY": "k", "LIVEKIT_URL": "ws://n1:7880", "AGENT_HTTP_PORT": "8082", "AGENT_METRICS_PORT": "9101",
        # everything `up` starts shares the CPU: its figure would refuse the only worker
        "AGENT_LOAD_FROM_CPU": "false",
    }  # fmt: skip
    chosen = up_worker_env(base, "ws://n1:7880", 0, 8081, None, environ={"AGENT_LOAD_FROM_CPU": "true"})
    assert "AGENT_LOAD_FROM_CPU" not in chosen and "AGENT_METRICS_PORT" not in chosen  # inherited as the operator set it


# --- the job's entry: one join, beside the session's start (agent.worker.entrypoint) ---


from agent import worker as worker_module  # noqa: E402


class _JobContext:
    """The part of livekit-agents' JobContext the entry uses; its join fails or succeeds."""

    def __init__(self, join_error: Exception | None, others: list[object] | None = None, *, join_hangs: bool = False) -> None:
        self.room = SimpleNamespace(name="room-1", remote_participants={str(i): p for i, p in enumerate(others or [])}, on=lambda *a: None,
                                    local_participant=SimpleNamespace(track_publications={}))  # fmt: skip
        self.job = SimpleNamespace(id="AJ_1", metadata="", room=SimpleNamespace(metadata=""))
        self.log_context_fields: dict[str, str] = {}
        self.join_error = join_error
        self.join_hangs = join_hangs
        self.joins = 0
        self.shutdowns: list[str] = []

    async def connect(self) -> None:
        self.joins += 1
        await asyncio.sleep(0.05)
        if self.join_hangs:
            await asyncio.Event().wait()
        if self.join_error is not None:
            raise self.join_error

    def shutdown(self, reason: str = "") -> None:
        self.shutdowns.append(reason)


def _session_start_that_would_join_again(events: list[str]) -> Callable[..., Awaitable[None]]:
    async def run_session(ctx: _JobContext, settings: object, clock: object, admitted: asyncio.Future[bool]) -> None:
        events.append("session starting")
        try:
            await asyncio.sleep(30)  # livekit-agents' session.start: its own join would try again after ours failed
        except asyncio.CancelledError:
            events.append("session start cancelled")
            raise

    return run_session


async def test_a_failed_join_ends_the_job_at_once_without_a_second_join(monkeypatch: pytest.MonkeyPatch) -> None:
    # A refused outbound call's room is deleted while the job joins it (test_phone_rooms, busy): the job
    # stayed 15 s when the session's start joined again after ours had failed.
    events: list[str] = []
    monkeypatch.setattr(worker_module, "run_session", _session_start_that_would_join_again(events))
    ctx = _JobContext(ConnectionError("room not found"))
    start = time.monotonic()
    await asyncio.wait_for(worker_module.entrypoint(ctx), 5)  # type: ignore[arg-type]
    assert time.monotonic() - start < 1
    assert ctx.joins == 1
    assert ctx.shutdowns == ["could not join the room"]
    assert events == ["session starting", "session start cancelled"]


async def test_a_join_that_never_ends_ends_the_job_at_its_bound(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # A busy callee's 486 came before the job joined: the room was deleted under the
    # joining agent, and livekit's join waited with no answer and no end (a run, ci30).
    events: list[str] = []
    monkeypatch.setattr(worker_module, "run_session", _session_start_that_would_join_again(events))
    monkeypatch.setenv("AGENT_JOIN_TIMEOUT_S", "0.3")
    ctx = _JobContext(None, join_hangs=True)
    start = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="agent.worker"):
        await asyncio.wait_for(worker_module.entrypoint(ctx), 5)  # type: ignore[arg-type]
    assert time.monotonic() - start >= 0.3
    assert ctx.joins == 1
    assert ctx.shutdowns == ["could not join the room"]
    assert "not joined within 0.3 s (AGENT_JOIN_TIMEOUT_S)" in caplog.text
    assert events == ["session starting", "session start cancelled"]


async def test_a_job_whose_room_already_has_an_agent_leaves_without_starting_its_session(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(worker_module, "run_session", _session_start_that_would_join_again(events))
    senior = SimpleNamespace(identity="agent-AJ_0", kind=4, attributes={}, metadata="")
    monkeypatch.setattr(worker_module, "senior_agent", lambda room, name: senior)
    ctx = _JobContext(None, [senior])
    await asyncio.wait_for(worker_module.entrypoint(ctx), 5)  # type: ignore[arg-type]
    assert ctx.shutdowns == ["another agent serves this room"]
    assert events == ["session starting", "session start cancelled"]

