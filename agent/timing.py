"""Where a job's time goes: a stopwatch of named laps for its set-up, and a
timeline of wall-clock milestones for its greeting and every reply.

The job logs one line of laps (``job set-up until the greeting is asked for:
connect 110 ms, ...; total 350 ms``) and one timeline line per response once
its first audio frame goes to the room (``greeting timeline in room R: {...}``,
``reply timeline in room R: {...}``, JSON of milestone -> ``time.time()``), so
that the latency benchmark (bench/latency.py) and an operator read the same
figures. Wall-clock times, not monotonic ones: the benchmark lines them up with
what a caller in another process heard.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("agent.timing")

GREETING_TIMELINE = "greeting timeline"
REPLY_TIMELINE = "reply timeline"


class Stopwatch:
    """Named laps on the monotonic clock, from when it was made; each lap's end
    is also kept as a wall-clock mark (``marks``, with ``job started`` first)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self._last = self.started
        self.laps: dict[str, float] = {}
        self.marks: dict[str, float] = {"job started": time.time()}

    def lap(self, name: str) -> float:
        """The time since the previous lap (or the start), recorded as ``name``; laps of one name add up."""
        now = time.perf_counter()
        took = now - self._last
        self._last = now
        self.laps[name] = self.laps.get(name, 0.0) + took
        self.marks[name] = time.time()
        return took

    @property
    def total(self) -> float:
        return self._last - self.started

    def summary(self) -> str:
        parts = [f"{name} {took * 1000:.0f} ms" for name, took in self.laps.items()]
        return ", ".join(parts) + f"; total {self.total * 1000:.0f} ms"


class Timeline:
    """Milestones of each response, from the realtime session's server events
    and the audio output's ``playback_started``; one log line per response.

    The greeting's line starts with the set-up marks of ``setup`` (as they
    are when it plays); a reply's with ``speech stopped`` (the server's turn detection ended the caller's
    turn; a typed turn or a tool result has none). Then ``response created``,
    ``first audio delta`` (received) and ``first frame played`` (the first
    frame handed to the room's audio source). A response cancelled before it
    played is dropped with the next turn.
    """

    def __init__(self, room: str, setup: Stopwatch | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.room = room
        self._clock = clock
        self._setup = setup
        self._kind = GREETING_TIMELINE
        self._marks: dict[str, float] = {}

    def on_server_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_stopped":
            self._start(REPLY_TIMELINE, "speech stopped")
        elif kind == "response.created":
            if "response created" in self._marks:
                self._start(REPLY_TIMELINE, None)  # a second response, none of the caller's speech between
            self._marks.setdefault("response created", self._clock())
        elif kind == "response.output_audio.delta":
            self._marks.setdefault("first audio delta", self._clock())

    def _start(self, kind: str, first: str | None) -> None:
        self._kind = kind
        self._marks = {first: self._clock()} if first else {}

    def on_playback_started(self, ev: Any) -> None:
        if "first audio delta" not in self._marks:
            return  # a reconnect notice or a resumed segment: not a response of the model's
        setup = self._setup.marks if self._kind == GREETING_TIMELINE and self._setup is not None else {}
        marks = {**setup, **self._marks, "first frame played": float(ev.created_at)}
        log.info("%s in room %s: %s", self._kind, self.room, json.dumps({k: round(v, 4) for k, v in marks.items()}))
        self._kind = REPLY_TIMELINE
        self._marks = {}


def parse_timeline(message: str) -> tuple[str, str, dict[str, float]] | None:
    """``(kind, room, marks)`` of a timeline log message, else None."""
    for kind in (GREETING_TIMELINE, REPLY_TIMELINE):
        prefix = f"{kind} in room "
        if message.startswith(prefix):
            room, _, data = message[len(prefix) :].partition(": ")
            try:
                marks = json.loads(data)
            except ValueError:
                return None
            return kind, room, {k: float(v) for k, v in marks.items()}
    return None
