"""What a job process makes while it waits for a job (livekit-agents' setup_fnc).

livekit-agents keeps ``AGENT_NUM_IDLE_PROCESSES`` job processes ready; each
serves one job. Whatever a job builds before it can ask for its greeting and
needs no room is built here instead, before a caller waits: the tool
registry (built-ins and the tools file's HTTP tools), the demo store and the transcript
store (their SQLite schemas), and the audio front-end. MCP servers are not
connected here: a connection held for minutes by an idle process could be
dropped by the server; the job opens them.

``AGENT_PREWARM=false`` turns it off (the job then builds everything itself,
as the latency benchmark's "before" does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from livekit.agents import JobProcess

from .audio.bargein import load_vad
from .audio.frontend import AudioFrontend, FrontendConfig
from .config import Settings
from .metrics import claim_process_files
from .timing import Stopwatch
from .tools import Store, ToolRegistry, build_registry
from .tools.declarative import McpServerConfig
from .transcript import TranscriptStore

log = logging.getLogger("agent.prewarm")

INPUT_RATE = 24_000  # the caller's audio, as RoomIO hands it over (and as the model wants it)
_KEY = "agent.prewarmed"


def frontend_config(settings: Settings) -> FrontendConfig:
    return FrontendConfig(
        echo_cancellation=settings.echo_cancellation,
        noise_suppression=settings.noise_suppression,
        high_pass_filter=settings.high_pass_filter,
        auto_gain_control=settings.auto_gain_control,
    )


@dataclass
class Prepared:
    """What a job needs and can have before its room: made once, used by one job."""

    registry: tuple[ToolRegistry, list[McpServerConfig]]
    store: Store
    transcript: TranscriptStore
    frontend: AudioFrontend
    vad: Any  # Silero VAD for the worker's barge-in, or None (AGENT_BARGE_IN=0)

    @classmethod
    def make(cls, settings: Settings, clock: Stopwatch | None = None) -> Prepared:
        clock = clock or Stopwatch()
        frontend = AudioFrontend(frontend_config(settings), rate=INPUT_RATE)
        clock.lap("front-end")
        vad = None
        if settings.barge_in:
            vad = load_vad(settings.barge_in_threshold, settings.barge_in_min_speech_ms)
            clock.lap("barge-in VAD")
        transcript = TranscriptStore(settings.db_path)
        clock.lap("transcript")
        registry = build_registry(settings)
        clock.lap("tools")
        store = Store(settings.db_path)
        clock.lap("services")
        return cls(registry, store, transcript, frontend, vad)


def prewarm(proc: JobProcess) -> None:
    """livekit-agents' setup_fnc: runs in each job process before it is offered a job."""
    claim_process_files()
    settings = Settings.from_env()
    if not settings.prewarm:
        return
    clock = Stopwatch()
    proc.userdata[_KEY] = Prepared.make(settings, clock)
    log.info("job process prewarmed: %s", clock.summary())


def take_prepared(proc: JobProcess, settings: Settings, clock: Stopwatch) -> Prepared:
    """The process's prepared objects (then gone from it), or new ones if it has none."""
    prepared = proc.userdata.pop(_KEY, None)
    if isinstance(prepared, Prepared):
        clock.lap("prewarmed")
        return prepared
    return Prepared.make(settings, clock)
