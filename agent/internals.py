"""Every use of livekit-agents' private API, in one place.

livekit-agents 1.8.9 gives no public hook for two things we need:

- a programmatic user turn (``AgentSession._claim_user_turn``): its own
  room-chat handler uses it so that a typed message interrupts the agent
  and is answered as one turn; our bounded chat handler must do the same;
- the host's CPU load as livekit-agents measures it by default
  (``worker._DefaultLoadCalc``), which our load function combines with the
  job count;
- the HTTP port of any AgentServer (``AgentServer._port``): agent.testing
  runs other people's agents, whose servers default to port 8081 in start
  mode, side by side;
- a realtime session that can be updated while a reconnect's replay is
  unconfirmed (``SteadyRealtimeSession``: the plugin's session class, its
  mirror ``_remote_chat_ctx``, ``_create_update_chat_ctx_events`` and the
  model's ``_sessions``);
- the job process pool (``AgentServer._proc_pool`` and its
  ``process_closed`` event), where a job process that died is seen at once
  (the re-dispatcher replaces its agent without waiting for the server to
  time the participant out), and every job process's end (the metrics
  count failed and drained jobs there, and mark the process dead).

``tests/test_internals.py`` checks each of these against the installed
livekit-agents, so an upgrade that renames or removes one fails there,
with the name, rather than in a room at run time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from livekit.agents import AgentServer, AgentSession
from livekit.agents.llm._realtime import openai as _realtime

log = logging.getLogger("agent.internals")


def claim_user_turn(session: AgentSession[Any]) -> AbstractAsyncContextManager[None]:
    """Hold a user turn open across awaits, as livekit-agents' own chat handler does."""
    return session._claim_user_turn()


@dataclass(frozen=True)
class DeadJob:
    """A job process that ended badly with its job still running."""

    job_id: str
    room: str
    agent_identity: str
    exitcode: int | None


@dataclass(frozen=True)
class ClosedJobProcess:
    """A job process that ended, for whatever reason."""

    pid: int | None
    had_job: bool  # False: an idle (warm) process that never ran a job
    exitcode: int | None
    killed: bool  # the pool killed it (a drain or a shutdown that overran)


def host_cpu_load(server: AgentServer) -> float:
    """livekit-agents' default load figure: the host's CPU use, 0..1, averaged over seconds."""
    from livekit.agents.worker import _DefaultLoadCalc

    return float(_DefaultLoadCalc.get_load(server))


def process_pool(server: AgentServer) -> Any | None:
    """The server's job process pool, once ``AgentServer.run`` has made it."""
    return getattr(server, "_proc_pool", None)


def on_job_process_died(pool: Any, callback: Callable[[DeadJob], None]) -> None:
    """Call ``callback`` when a process dies while running a job.

    Idle processes, normal ends and processes the pool killed itself (a
    drain, a job that overran its shutdown) are not reported.
    """

    def closed(proc: Any) -> None:
        job = proc.running_job
        if job is None or proc.exitcode in (0, None) or proc.killed:
            return
        callback(DeadJob(job.job.id, job.job.room.name, job.accept_arguments.identity, proc.exitcode))

    pool.on("process_closed", closed)


def on_job_process_closed(pool: Any, callback: Callable[[ClosedJobProcess], None]) -> None:
    """Call ``callback`` for every process of the pool that ends, idle or not."""
    pool.on(
        "process_closed",
        lambda proc: callback(ClosedJobProcess(proc.pid, proc.running_job is not None, proc.exitcode, proc.killed)),
    )


def set_http_port(server: AgentServer, port: int) -> None:
    """Make ``server`` serve its health and worker endpoints on ``port`` (0: any free port)."""
    if not hasattr(server, "_port"):
        raise AttributeError("AgentServer._port is gone: agent/internals.py needs updating for this livekit-agents")
    server._port = port


# ---------------------------------------------------------------- realtime replay

REPLAY_CONFIRM_TIMEOUT_S = 5.0  # as long as livekit-agents waits for an update_chat_ctx


class SteadyRealtimeSession(_realtime.RealtimeSession):
    """livekit-plugins-openai's realtime session, safe to update during a reconnect's replay.

    On a reconnect the plugin empties its mirror of the server's conversation
    (``_remote_chat_ctx``), sends the whole context again and refills the
    mirror as the server confirms each item. Until then ``chat_ctx`` reads as
    empty or partial, and an ``update_chat_ctx`` diffs against it: a tool that
    finishes in that window (the framework copies ``chat_ctx``, appends the
    output, sends the difference) sends its output alone, anchored at the
    root, so the server holds the call as the last item and the next reply
    answers a call without its output; a message typed in the window is placed
    first the same way. Here, while a replay is unconfirmed, ``chat_ctx`` is
    what was replayed and ``update_chat_ctx`` first waits for the confirmations
    (tests/test_realtime_replay.py opens the window on purpose).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen_mirror = self._remote_chat_ctx
        self._replayed: Any = None  # the context the current replay sends, until confirmed
        self._replay_pending: dict[str, str] = {}  # event id -> item id, not yet confirmed
        self._replays = 0  # which replay a timeout belongs to
        self._replay_confirmed = asyncio.Event()
        self._replay_confirmed.set()
        self.on("openai_server_event_received", self._on_replay_event)

    def _create_update_chat_ctx_events(self, chat_ctx: Any) -> Any:
        events = super()._create_update_chat_ctx_events(chat_ctx)
        if self._remote_chat_ctx is not self._seen_mirror:
            # A new, empty mirror: only the reconnect makes one, and this is its replay.
            self._seen_mirror = self._remote_chat_ctx
            self._replay_pending = {ev.event_id: ev.item.id for ev in events if ev.type == "conversation.item.create" and ev.event_id and ev.item.id}
            self._replays += 1  # an earlier replay still unconfirmed is superseded
            if self._replay_pending:
                self._replayed = chat_ctx.copy()
                self._replay_confirmed.clear()
                asyncio.get_running_loop().call_later(REPLAY_CONFIRM_TIMEOUT_S, self._end_replay, self._replays)
            else:
                self._end_replay(self._replays)
        return events

    def _on_replay_event(self, event: dict[str, Any]) -> None:
        if not self._replay_pending:
            return
        kind = event.get("type")
        if kind == "conversation.item.added":
            item_id = (event.get("item") or {}).get("id")
            self._replay_pending = {e: i for e, i in self._replay_pending.items() if i != item_id}
        elif kind == "error":  # a replayed item the server refused is settled too
            self._replay_pending.pop((event.get("error") or {}).get("event_id") or "", None)
        if not self._replay_pending:
            self._end_replay(self._replays)

    def _end_replay(self, replay: int) -> None:
        if replay == self._replays:  # not an earlier replay's timeout
            if self._replay_pending:
                log.warning("the realtime server confirmed %d replayed item(s) too late or never", len(self._replay_pending))
            self._replay_pending = {}
            self._replayed = None
            self._replay_confirmed.set()

    @property
    def chat_ctx(self) -> Any:
        if self._replayed is not None:
            return self._replayed.copy()
        return super().chat_ctx

    async def update_chat_ctx(self, chat_ctx: Any) -> None:
        # The replay's own timeout ends the wait; the plugin's update then times out as before.
        await self._replay_confirmed.wait()
        await super().update_chat_ctx(chat_ctx)


_Model = TypeVar("_Model", bound=_realtime.RealtimeModel)


def steady_realtime_model(model: _Model) -> _Model:
    """Make ``model`` open :class:`SteadyRealtimeSession` sessions (``RealtimeModel.session`` is three lines)."""

    def session(*, turn_detection_disabled: bool = False) -> SteadyRealtimeSession:
        sess = SteadyRealtimeSession(model, turn_detection_disabled=turn_detection_disabled)
        model._sessions.add(sess)
        return sess

    model.session = session  # type: ignore[method-assign]
    return model
