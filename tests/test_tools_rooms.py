"""Tools in real rooms: an order placed from the room chat, exactly once,
also when the realtime connection is cut right after the call."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.testing.harness import Testbed, greeted, room_name
from agent.tools import Ledger, Store

pytestmark = [pytest.mark.room, pytest.mark.background]  # typed turns and generous bounds: in a background lane (scripts/lanes.sh)


async def _order_by_chat(testbed: Testbed, text: str) -> tuple[str, str]:
    room = room_name("tools")
    async with testbed.caller(room) as caller:
        await greeted(caller, timeout=15)
        asked = time.time()
        await caller.send_chat(text)
        said = await caller.wait_for_transcript(r"order number \d+ is placed", timeout=30, after=asked)
        await caller.wait_for_quiet(1.5, timeout=20)
    return room, said.text


async def test_order_from_room_chat_is_placed_once_and_confirmed(testbed: Testbed) -> None:
    room, said = await _order_by_chat(testbed, "I'd like two lattes")
    orders = Store(testbed.db_path).orders(room=room)
    assert len(orders) == 1, orders
    assert orders[0].items == [{"item": "latte", "quantity": 2, "price_cents": 450}]
    assert f"Order number {orders[0].id} is placed" in said
    calls = [e for e in Ledger(testbed.db_path).entries("place_order") if e.room == room]
    assert len(calls) == 1 and calls[0].status == "done"


async def test_order_survives_a_realtime_connection_cut_right_after_the_call(testbed: Testbed) -> None:
    # The rule for "espressos" makes the local server drop the WebSocket (no
    # close frame) right after it sends the function call.
    room, said = await _order_by_chat(testbed, "I'd like two espressos")
    orders = Store(testbed.db_path).orders(room=room)
    assert len(orders) == 1, f"expected exactly one order row, got {orders}"
    assert f"Order number {orders[0].id} is placed" in said
    worker_log = testbed.worker.log_text() if testbed.worker else ""
    realtime_log = testbed.realtime.log_text() if testbed.realtime else ""
    assert "dropping the connection" in realtime_log, "the fault was not injected"
    assert worker_log.count(room) > 0


async def test_asking_for_a_person_escalates_marks_the_room_and_tells_staff(testbed: Testbed) -> None:
    import json

    room = room_name("tools")
    async with testbed.caller(room) as caller:
        await greeted(caller, timeout=15)
        # The agent listens to the first caller; staff watch the room.
        async with testbed.caller(room, "staff-desk") as staff:
            asked = time.time()
            await caller.send_chat("Can I speak to a person please?")
            said = await caller.wait_for_transcript(r"member of staff has been notified", timeout=30, after=asked)
            assert said.time > asked
            messages = [m for m in staff.data_messages if m.topic == "agent.escalation"]
            assert len(messages) == 1, staff.data_messages
            assert json.loads(messages[0].payload) == {"type": "escalation", "room": room, "reason": "the caller asked for a person"}
            agent = next(p for p in staff.room.remote_participants.values() if p.identity.startswith("agent-"))
            assert agent.attributes.get("agent.escalated") == "true"
    assert len(Store(testbed.db_path).orders(room=room)) == 0


async def test_end_call_says_goodbye_then_closes_the_room(testbed: Testbed) -> None:
    from livekit import rtc

    async with testbed.caller(room_name("tools")) as caller:
        await greeted(caller, timeout=15)
        disconnected = asyncio.Event()
        caller.room.on("disconnected", lambda *_: disconnected.set())
        asked = time.time()
        await caller.send_chat("Thanks, goodbye!")
        await caller.wait_for_transcript(r"goodbye, thanks for calling", timeout=20, after=asked)
        bye = await caller.wait_for_speech(after=asked, timeout=10)
        await asyncio.wait_for(disconnected.wait(), 30)
        hung_up = time.time()
        assert caller.room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED
        # The goodbye was heard in full before the line went dead, and nothing was
        # heard between the question and the goodbye: the first segment holds the
        # goodbye's start (a segment bridges gaps under 0.3 s, so it may begin with a
        # syllable before the first 0.2 s run that ``wait_for_speech`` looks for).
        segments = caller.heard().filter(after=asked).speech_segments()
        assert segments, "nothing heard after the goodbye was asked for"
        assert segments[0][0] - 0.05 <= bye < segments[0][1] + 0.05, f"speech before the goodbye: {segments}, goodbye at {bye}"
        assert segments[-1][1] < hung_up, f"the line went dead at {hung_up} inside the goodbye: {segments}"
    await testbed.wait_active_jobs(0, timeout=20)
