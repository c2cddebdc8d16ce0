"""Prometheus metrics of the worker and of its sessions.

Two kinds of family, by the process that counts them:

- **worker families** (jobs accepted, failed, re-dispatched, drained) are
  counted by the worker's main process, in memory, in :data:`WORKER`;
- **session families** (everything else) are counted in the job processes,
  one per room. livekit-agents starts those from a forkserver (Linux) or by
  spawn, with the worker's environment, so when the metrics endpoint is on
  (:mod:`agent.scrape`) they find ``PROMETHEUS_MULTIPROC_DIR`` set and
  prometheus-client writes each process's values to files there, which the
  endpoint sums. A family must be counted in one kind of process only, or a
  scrape would show it twice.

Why not multiprocess mode for the main process too: livekit-agents'
``AgentServer.run`` empties ``PROMETHEUS_MULTIPROC_DIR`` when it starts,
deleting the files the main process had already opened (its metrics would
then count into unlinked files, and vanish from scrapes).

When a job process ends, :func:`count_job_ends` marks it dead, which drops
its live gauge (``agent_sessions_active``); its counters and histograms stay
in the sums, as they should.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import mark_process_dead

from .config import Settings
from .cost import PriceTable, Usage
from .internals import ClosedJobProcess, on_job_process_closed

log = logging.getLogger("agent.metrics")

# ---------------------------------------------------------------------- worker families (main process)

WORKER = CollectorRegistry(auto_describe=True)
JOBS_ACCEPTED = Counter("agent_jobs_accepted", "Jobs (rooms) this worker accepted", registry=WORKER)
JOBS_FAILED = Counter(
    "agent_jobs_failed", "Jobs whose process ended with the job still running: it crashed, or was killed", registry=WORKER
)
JOBS_REDISPATCHED = Counter(
    "agent_jobs_redispatched", "Dispatches this worker's re-dispatcher made for rooms left with a caller and no agent", registry=WORKER
)
JOBS_DRAINED = Counter("agent_jobs_drained", "Jobs that ran to their end while the worker was draining (SIGTERM)", registry=WORKER)

# ---------------------------------------------------------------------- session families (job processes)

SESSIONS_ACTIVE = Gauge("agent_sessions_active", "Sessions running now", multiprocess_mode="livesum")
REALTIME_RECONNECTS = Counter("agent_realtime_reconnects", "Realtime connections replaced after a failure")
REALTIME_ROLLOVERS = Counter("agent_realtime_rollovers", "Realtime connections replaced as planned (AGENT_REALTIME_MAX_SESSION_S)")
TOOL_CALLS = Counter("agent_tool_calls", "Tool calls, by tool and outcome (ok, error)", ["tool", "outcome"])
TURN_LATENCY = Histogram(
    "agent_turn_latency_seconds",
    "Caller's end of speech to the agent's first audio of the reply",
    buckets=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0),
)
BARGE_IN = Histogram(
    "agent_barge_in_seconds",
    "Caller's speech onset while the agent speaks to the agent's silence",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0),
)
AUDIO_INPUT_TOKENS = Counter("agent_audio_input_tokens", "Audio input tokens the model reported (response.done usage)")
AUDIO_OUTPUT_TOKENS = Counter("agent_audio_output_tokens", "Audio output tokens the model reported")
TEXT_INPUT_TOKENS = Counter("agent_text_input_tokens", "Text input tokens the model reported")
TEXT_OUTPUT_TOKENS = Counter("agent_text_output_tokens", "Text output tokens the model reported")
AUDIO_MINUTES_IN = Counter("agent_audio_minutes_in", "Minutes of audio input, from the tokens (600 a minute)")
AUDIO_MINUTES_OUT = Counter("agent_audio_minutes_out", "Minutes of audio output, from the tokens (1200 a minute)")
COST = Counter("agent_cost_usd", "Dollars the model's usage costs at AGENT_PRICES", ["model"])


def count_job_ends(pool: Any, draining: Callable[[], bool]) -> None:
    """In the worker's main process: count each job process's end (failed, drained) and
    mark it dead for the multiprocess sums. ``pool``: the server's job process pool."""

    def closed(proc: ClosedJobProcess) -> None:
        if proc.had_job:
            if proc.exitcode != 0 or proc.killed:
                JOBS_FAILED.inc()
            elif draining():
                JOBS_DRAINED.inc()
        if proc.pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]

    on_job_process_closed(pool, closed)


def claim_process_files() -> None:
    """In a job process, at its start: count into files named for this process.

    livekit-agents' forkserver imports this module once (``preload_modules``)
    and forks every job process from itself, so a job process starts with the
    forkserver's values and files. prometheus-client notices the new pid only
    when a value is touched, and only then opens this process's own files; a
    job process touches one here, so that its files exist from its start (a
    scrape, and the pool's :func:`mark_process_dead` at its end, find them
    under its pid) and the forkserver's stay at zero.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        SESSIONS_ACTIVE.inc(0)


# ---------------------------------------------------------------------- one session

# livekit-plugins-openai rolls its connection over after this long when
# AGENT_REALTIME_MAX_SESSION_S is unset (tests/test_metrics.py checks the figure).
PLUGIN_MAX_SESSION_S = 20 * 60.0


@dataclass
class TurnClock:
    """Turn latency and barge-in from the backend's speech events and the agent's state.

    What is measured, exactly:

    - the caller's **end of speech** is when the worker receives the backend's
      ``input_audio_buffer.speech_stopped``, less ``silence_s``: server VAD sends
      it once the caller has been silent that long (``AGENT_SILENCE_DURATION_MS``);
    - the **first agent audio** is livekit-agents' ``agent_state_changed`` to
      ``speaking``, emitted when the reply's first audio frame reaches the room's
      audio output;
    - the caller's **onset** is the receipt of ``input_audio_buffer.speech_started``
      while the agent is speaking (the backend's own onset decision);
    - the agent's **silence** is its state leaving ``speaking``: livekit-agents
      interrupts playout on the backend's speech_started and says so once the
      output is cleared.

    Typed chat turns start no speech events, so they give no latency figure.
    """

    silence_s: float
    agent_speaking: bool = False
    _speech_end: float | None = None
    _onset: float | None = None

    def speech_started(self, t: float) -> None:
        self._speech_end = None  # the caller goes on: that was a pause, not the end
        if self.agent_speaking and self._onset is None:
            self._onset = t

    def speech_stopped(self, t: float) -> None:
        self._speech_end = t - self.silence_s

    def agent_state(self, new_state: str, t: float) -> tuple[str, float] | None:
        """The observation this change completes, if any: ``("turn", s)`` or ``("barge_in", s)``."""
        was_speaking, self.agent_speaking = self.agent_speaking, new_state == "speaking"
        if self.agent_speaking and not was_speaking and self._speech_end is not None:
            latency, self._speech_end = t - self._speech_end, None
            return "turn", latency
        if was_speaking and not self.agent_speaking and self._onset is not None:
            barge, self._onset = t - self._onset, None
            return "barge_in", barge
        if not self.agent_speaking:
            self._onset = None
        return None


@dataclass(frozen=True)
class ToolCall:
    name: str
    call_id: str
    outcome: str  # ok | error


@dataclass
class SessionMeter:
    """Measures one session from its events: feeds the session families and keeps
    the figures its record stores (:mod:`agent.records`).

    ``attach`` takes the AgentSession's events, ``watch_realtime`` the realtime
    session's (the raw server events carry every ``response.done``, also of a
    reply livekit-agents discarded, which its ``metrics_collected`` leaves out).
    """

    model: str
    prices: PriceTable
    silence_s: float
    max_session_s: float | None = None
    tool_names: frozenset[str] = frozenset()
    clock: Callable[[], float] = time.time
    started_at: float = 0.0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    responses: int = 0
    turns: int = 0  # caller turns: user messages added to the conversation
    reconnects: int = 0
    rollovers: int = 0
    tool_calls: list[ToolCall] = field(default_factory=list)
    turn_latencies: list[float] = field(default_factory=list)
    barge_ins: list[float] = field(default_factory=list)
    on_usage_change: Callable[[], None] | None = None  # agent.feed publishes the usage to the room
    _clock: TurnClock | None = None
    _connected_at: float = 0.0
    _active: bool = False

    def __post_init__(self) -> None:
        self._clock = TurnClock(self.silence_s)
        self.started_at = self._connected_at = self.clock()

    @classmethod
    def for_session(cls, settings: Settings, tool_names: Iterable[str] = ()) -> SessionMeter:
        return cls(
            model=settings.realtime_model,
            prices=settings.price_table,
            silence_s=settings.silence_duration_ms / 1000,
            max_session_s=settings.realtime_max_session_s or PLUGIN_MAX_SESSION_S,
            tool_names=frozenset(tool_names),
        )

    # ------------------------------------------------------------------ wiring

    def attach(self, session: Any) -> None:
        """Count the session as active until it closes; take its events."""
        SESSIONS_ACTIVE.inc()
        self._active = True
        session.on("agent_state_changed", lambda ev: self.on_agent_state(ev.new_state, ev.created_at))
        session.on("conversation_item_added", self._on_item)
        session.on("function_tools_executed", self._on_tools)
        session.on("close", lambda _ev: self.close())

    def watch_realtime(self, rt: Any) -> None:
        rt.on("openai_server_event_received", self.on_server_event)
        rt.on("session_reconnected", lambda _ev: self.on_reconnected())

    def close(self) -> None:
        if self._active:
            self._active = False
            SESSIONS_ACTIVE.dec()

    # ------------------------------------------------------------------ events

    def on_server_event(self, event: dict[str, Any]) -> None:
        """A raw server event of the realtime connection (a dict of the wire JSON)."""
        kind = event.get("type")
        if kind == "response.done":
            self.on_usage(Usage.from_response((event.get("response") or {}).get("usage")))
        elif kind == "input_audio_buffer.speech_started":
            assert self._clock is not None
            self._clock.speech_started(self.clock())
        elif kind == "input_audio_buffer.speech_stopped":
            assert self._clock is not None
            self._clock.speech_stopped(self.clock())

    def on_usage(self, u: Usage) -> None:
        cost = self.prices.cost(self.model, u)
        self.usage += u
        self.cost_usd += cost
        self.responses += 1
        AUDIO_INPUT_TOKENS.inc(u.audio_in)
        AUDIO_OUTPUT_TOKENS.inc(u.audio_out)
        TEXT_INPUT_TOKENS.inc(u.text_in)
        TEXT_OUTPUT_TOKENS.inc(u.text_out)
        AUDIO_MINUTES_IN.inc(u.audio_minutes_in)
        AUDIO_MINUTES_OUT.inc(u.audio_minutes_out)
        COST.labels(model=self.model).inc(cost)
        if self.on_usage_change is not None:
            self.on_usage_change()

    def usage_summary(self) -> dict[str, Any]:
        """The session's usage and cost so far, as the room sees it (agent.feed)."""
        u = self.usage
        return {
            "model": self.model,
            "responses": self.responses,
            "audio_in_min": round(u.audio_minutes_in, 4),
            "audio_out_min": round(u.audio_minutes_out, 4),
            "text_in_tokens": u.text_in,
            "text_out_tokens": u.text_out,
            "cost_usd": round(self.cost_usd, 6),
        }

    def on_agent_state(self, new_state: str, t: float) -> None:
        assert self._clock is not None
        seen = self._clock.agent_state(new_state, t)
        if seen is None:
            return
        kind, seconds = seen
        if kind == "turn":
            self.turn_latencies.append(seconds)
            TURN_LATENCY.observe(seconds)
        else:
            self.barge_ins.append(seconds)
            BARGE_IN.observe(seconds)

    def on_reconnected(self) -> None:
        # The plugin replaces its connection after a failure (it retries on
        # APIError) or, with no error, at max_session_duration: a connection that
        # lasted that long was rolled over as planned.
        now = self.clock()
        if self.max_session_s is not None and now - self._connected_at >= self.max_session_s:
            self.rollovers += 1
            REALTIME_ROLLOVERS.inc()
        else:
            self.reconnects += 1
            REALTIME_RECONNECTS.inc()
        self._connected_at = now

    def _on_item(self, ev: Any) -> None:
        if getattr(ev.item, "type", None) == "message" and ev.item.role == "user":
            self.turns += 1

    def _on_tools(self, ev: Any) -> None:
        for call, output in zip(ev.function_calls, ev.function_call_outputs, strict=False):
            self.on_tool_call(call.name, call.call_id, is_error=output.is_error)

    def on_tool_call(self, name: str, call_id: str, *, is_error: bool) -> None:
        outcome = "error" if is_error else "ok"
        self.tool_calls.append(ToolCall(name, call_id, outcome))
        # A name the model made up is not a tool: one label for all of them keeps the series few.
        TOOL_CALLS.labels(tool=name if name in self.tool_names else "unknown", outcome=outcome).inc()
