"""What the worker publishes to the room besides audio (agent/feed.py): tool
calls as they start and end, and the session's usage, on LiveKit's channels;
publishing never blocks or breaks the session. The room test is
tests/test_web_rooms.py (the page shows them)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from livekit.agents import ToolError, function_tool

from agent.config import Settings
from agent.cost import Usage
from agent.feed import MAX_OUTPUT_CHARS, TOOL_TOPIC, USAGE_ATTRIBUTE, RoomFeed, tool_event
from agent.metrics import SessionMeter
from agent.tools import CallContext, ToolRegistry


class FakeParticipant:
    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        self.data: list[tuple[str, dict[str, Any]]] = []
        self.attributes: list[dict[str, str]] = []
        self.fail = fail
        self.delay = delay

    async def publish_data(self, payload: bytes, *, reliable: bool = True, topic: str = "") -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("the room is gone")
        assert reliable
        self.data.append((topic, json.loads(payload)))

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("the room is gone")
        self.attributes.append(attributes)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_tool_call_is_published_when_it_starts_and_when_it_ends() -> None:
    room = FakeParticipant()
    feed = RoomFeed(room)
    feed.tool_started("call_1", "place_order", {"item": "latte", "quantity": 2})
    feed.tool_finished("call_1", "place_order", {"item": "latte", "quantity": 2}, "order number 7 is placed", is_error=False)
    feed.tool_finished("call_2", "get_order_status", "{order_id: seven", "error: the arguments are not valid JSON", is_error=True)
    await settle()
    assert [topic for topic, _ in room.data] == [TOOL_TOPIC] * 3
    started, done, failed = (event for _, event in room.data)
    assert started["status"] == "running" and "output" not in started and started["arguments"] == {"item": "latte", "quantity": 2}
    assert done == {**done, "type": "tool_call", "call_id": "call_1", "name": "place_order", "status": "done", "output": "order number 7 is placed"}
    assert failed["status"] == "error" and failed["arguments"] == "{order_id: seven"


def test_long_arguments_and_outputs_are_cut_to_fit_a_data_message() -> None:
    event = tool_event("c", "lookup", {"notes": "x" * 10_000}, "done", "y" * 10_000)
    assert len(json.dumps(event)) < 15_000
    assert isinstance(event["arguments"], str) and event["arguments"].endswith("…")
    assert len(event["output"]) == MAX_OUTPUT_CHARS + 1


async def test_a_failing_room_loses_nothing_of_the_session_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    feed = RoomFeed(FakeParticipant(fail=True), lambda: {"cost_usd": 0.01})
    feed.tool_started("c", "lookup", {})
    feed.usage_changed()
    await settle()
    assert feed.failed == 2 and feed.published == 0
    assert "could not publish" in caplog.text


async def test_usage_is_an_attribute_published_only_when_it_changes() -> None:
    room = FakeParticipant()
    meter = SessionMeter.for_session(Settings())
    feed = RoomFeed(room, meter.usage_summary)
    meter.on_usage_change = feed.usage_changed
    meter.on_usage(Usage(audio_in=600, audio_out=1200, text_in=100, text_out=20))
    await settle()
    feed.usage_changed()  # nothing new
    meter.on_usage(Usage())  # a response with no usage still counts as a reply
    await settle()
    assert len(room.attributes) == 2
    first = json.loads(room.attributes[0][USAGE_ATTRIBUTE])
    assert first["responses"] == 1 and first["audio_in_min"] > 0 and first["cost_usd"] == pytest.approx(meter.cost_usd, abs=1e-6)
    assert json.loads(room.attributes[1][USAGE_ATTRIBUTE])["responses"] == 2


async def test_closing_cancels_what_is_still_being_published() -> None:
    room = FakeParticipant(delay=10)
    feed = RoomFeed(room)
    feed.tool_started("c", "lookup", {})
    await settle()
    await asyncio.wait_for(feed.aclose(), 1)
    feed.tool_finished("c", "lookup", {}, "done", is_error=False)  # after close: dropped, no task
    await settle()
    assert room.data == [] and feed.published == 0


async def test_the_registry_tells_the_observer_of_each_call() -> None:
    seen: list[tuple[str, ...]] = []

    class Observer:
        def tool_started(self, call_id: str, name: str, arguments: Any) -> None:
            seen.append(("started", call_id, name))

        def tool_finished(self, call_id: str, name: str, arguments: Any, output: str, *, is_error: bool) -> None:
            seen.append(("finished", call_id, name, output, str(is_error)))

    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    registry = ToolRegistry()
    registry.add_function(function_tool(add))
    (tool,) = registry.function_tools(lambda ctx: CallContext(call_id=ctx.function_call.call_id), Observer())
    context = SimpleNamespace(function_call=SimpleNamespace(call_id="call_9"))
    assert await tool({"a": 2, "b": 3}, context) == "5"
    with pytest.raises(ToolError):
        await tool({"a": "two", "b": 3}, context)
    assert seen[:2] == [("started", "call_9", "add"), ("finished", "call_9", "add", "5", "False")]
    assert seen[2][0] == "started" and seen[3][0] == "finished" and seen[3][-1] == "True" and "invalid arguments" in seen[3][3]
