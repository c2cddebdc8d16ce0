"""Fault injection for tests: a scripted reply that cuts the connection.

Kept out of the state machine. ``FaultyBrain`` wraps the session's brain
and notes which replies asked for ``drop_connection``; the connection
shell asks ``FaultPlan.should_drop`` about each event it is about to send
and aborts the socket (no close frame, as a network cut would) at:

- a spoken reply: the audio delta that reaches half of its audio;
- a call-only reply: right after its ``response.done``.

Each drop happens once per server (``allow`` decides, keyed by the reply),
so the answer re-asked on the new connection is not cut again.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from . import audio as audio_codec
from .brain import Brain, BrainInput, Reply


class FaultyBrain:
    """A brain whose replies' drop flags are taken off and remembered."""

    def __init__(self, inner: Brain) -> None:
        self._inner = inner
        self.spoken: set[str] = set()  # replies to cut half-way through their audio
        self.call_only = False  # a call-only reply asked for a cut

    def reply(self, inp: BrainInput) -> Reply:
        reply = self._inner.reply(inp)
        if not reply.drop_connection:
            return reply
        if reply.say:
            self.spoken.add(reply.say)
        else:
            self.call_only = True
        return Reply(reply.say, reply.calls)


class FaultPlan:
    """Watches one connection's outgoing events for the moment to cut it."""

    def __init__(self, brain: FaultyBrain, allow: Callable[[str], bool]) -> None:
        self._brain = brain
        self._allow = allow
        self._watched: dict[str, int] = {}  # speech request id -> total encoded bytes
        self._text: dict[str, str] = {}
        self._armed: tuple[str, int] | None = None  # (reply text, total bytes) of the reply streaming now
        self._sent_bytes = 0

    def speech(self, request_id: str, text: str) -> None:
        if text in self._brain.spoken:
            self._text[request_id] = text

    def speech_ready(self, request_id: str, pcm: np.ndarray, fmt: str) -> None:
        text = self._text.pop(request_id, None)
        if text is not None:
            self._armed = (text, len(audio_codec.encode(pcm, fmt)))
            self._sent_bytes = 0

    def should_drop(self, event: Any) -> bool:
        kind = getattr(event, "type", "")
        if kind == "response.output_audio.delta" and self._armed is not None:
            self._sent_bytes += len(base64.b64decode(event.delta))
            text, total = self._armed
            if self._sent_bytes * 2 >= total and self._allow(text):
                self._armed = None
                return True
        elif kind == "response.done":
            self._armed = None
            response = event.response
            calls = [o for o in response.output or [] if o.type == "function_call"]
            if self._brain.call_only and response.status == "completed" and calls and len(calls) == len(response.output):
                self._brain.call_only = False
                return self._allow(",".join(c.name + (c.arguments or "") for c in calls))
        return False


