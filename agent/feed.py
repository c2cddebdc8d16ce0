"""What the worker tells callers' apps besides audio and transcripts.

Over LiveKit's own channels, so that any client can show it (README,
"What the worker publishes"):

- tool calls as they happen: a reliable data message on topic
  ``agent.tool_call`` when a call starts and when it ends, JSON
  ``{"type": "tool_call", "call_id", "name", "arguments", "status":
  "running" | "done" | "error", "output"?, "at"}``;
- the session's usage and cost: the agent participant's attribute
  ``agent.usage``, JSON ``{"responses", "audio_in_min", "audio_out_min",
  "text_in_tokens", "text_out_tokens", "cost_usd", "model"}``, updated when a
  response ends (attributes reach late joiners too);
- escalations: attributes ``agent.escalated`` / ``agent.escalation_reason``
  and a data message on ``agent.escalation`` (agent/session.py, RoomHooks).

livekit-agents publishes the rest: ``lk.agent.state`` (initializing,
listening, thinking, speaking) and transcripts on the ``lk.transcription``
text-stream topic.

Publishing never blocks a tool or the session: each message goes out on a
task this feed owns (cancelled and awaited by :meth:`RoomFeed.aclose`), and a
failure is logged, not raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

log = logging.getLogger("agent.feed")

TOOL_TOPIC = "agent.tool_call"
USAGE_ATTRIBUTE = "agent.usage"
MAX_OUTPUT_CHARS = 500
MAX_ARGUMENTS_CHARS = 2000  # a data message carries at most 15 KiB; the page shows a line


class LocalParticipant(Protocol):
    async def publish_data(self, payload: bytes, *, reliable: bool = ..., topic: str = ...) -> None: ...

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...


def tool_event(call_id: str, name: str, arguments: Any, status: str, output: str | None = None, *, at: float | None = None) -> dict[str, Any]:
    """One tool-call message (see the module's docstring); long arguments and outputs are cut."""
    shown = arguments if isinstance(arguments, Mapping | str) else str(arguments)
    if len(json.dumps(shown, default=str)) > MAX_ARGUMENTS_CHARS:
        shown = json.dumps(shown, default=str)[:MAX_ARGUMENTS_CHARS] + "…"
    event: dict[str, Any] = {"type": "tool_call", "call_id": call_id, "name": name, "arguments": shown, "status": status}
    if output is not None:
        event["output"] = output if len(output) <= MAX_OUTPUT_CHARS else output[:MAX_OUTPUT_CHARS] + "…"
    event["at"] = round(time.time() if at is None else at, 3)
    return event


class RoomFeed:
    """Publishes tool calls and usage for one session's room."""

    def __init__(
        self, participant: LocalParticipant | Callable[[], LocalParticipant], usage: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        # A callable: the room's local participant, which exists once the room is
        # joined (the session starts before that; nothing is sent before it).
        self._participant_of = participant if callable(participant) else (lambda: participant)
        self._usage = usage
        self._last_usage: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.published = 0
        self.failed = 0

    # ---------------------------------------------------------------- tools

    def tool_started(self, call_id: str, name: str, arguments: Any) -> None:
        self._send(tool_event(call_id, name, arguments, "running"))

    def tool_finished(self, call_id: str, name: str, arguments: Any, output: str, *, is_error: bool) -> None:
        self._send(tool_event(call_id, name, arguments, "error" if is_error else "done", output))

    def _send(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event, default=str).encode()
        self._spawn(self._participant_of().publish_data(payload, reliable=True, topic=TOOL_TOPIC), f"tool call {event['name']}")

    # ---------------------------------------------------------------- usage

    def usage_changed(self) -> None:
        """Publish the usage attribute if it changed since the last one."""
        if self._usage is None:
            return
        value = json.dumps(self._usage(), sort_keys=True)
        if value == self._last_usage:
            return
        self._last_usage = value
        self._spawn(self._participant_of().set_attributes({USAGE_ATTRIBUTE: value}), "usage")

    # ---------------------------------------------------------------- tasks

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(self._publish(coro, what), name=f"feed: {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await coro
            self.published += 1
        except Exception as e:  # the room is gone, or the data channel is: the call goes on
            self.failed += 1
            log.warning("could not publish %s to the room: %s", what, e)

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
