"""Testing agents in real rooms with agent.testing's pytest plugin (installed
with the package): the stock livekit-agents realtime agent
(examples/stock_agent.py) and this project's own worker, tested the same way.

Run with the README test command, or on their own:

    python -m agent.testing.netns -- python -m pytest examples/
"""

from __future__ import annotations

import json
import sys

import pytest

from agent.testing.expect import expect

pytestmark = [pytest.mark.room]

# The local backend's scripted brain: what "the model" says and calls. Both agents
# speak with a male espeak-ng voice (echo), which the offline recognizer hears best.
BRAIN = {
    "instructed": "Hello! I'm an AI assistant. How can I help you today?",
    "rules": [
        {"match": "open on", "say": "On Sunday we open early in the morning."},
        {"match": "(?P<quantity>\\w+) lattes", "call": "place_order", "arguments": {"item": "latte", "quantity": "{quantity}"}},
    ],
}


async def test_the_stock_agent_greets_and_answers_a_spoken_question(room_worker, room_caller) -> None:
    worker = await room_worker("examples.stock_agent:server", brain=BRAIN)
    caller = await room_caller()
    greeting = await expect(caller).to_hear("how can I help you", within=10)
    print(f"\n[plugin] worker registered {worker.ready_s:.1f}s after start; greeting heard "
          f"{greeting.start - caller.caller.joined_at:.2f}s after joining, transcribed as {greeting.text!r}")
    await caller.say("What time do you open on Sunday?")
    # The words that carry the answer: the offline recognizer once heard the reply's
    # first two words, "On Sunday", as "And suddenly" (a fresh-clone run).
    await expect(caller).to_hear("we open early in the morning", within=4)


async def test_our_worker_places_an_order_typed_in_the_chat(room_worker, room_caller) -> None:
    await room_worker([sys.executable, "-m", "agent", "start"], brain=BRAIN, env={"AGENT_GREETING": "Hello! I'm an AI assistant. How can I help you today?", "AGENT_VOICE": "echo"})
    caller = await room_caller()
    await expect(caller).to_hear("how can I help you", within=10)
    await caller.type("I'd like two lattes")
    # What our worker publishes for apps (README, "What the worker publishes"): the
    # tool call as a data message, the session's usage as an agent attribute.
    started = json.loads((await caller.wait_for_data("agent.tool_call")).payload)
    assert started["name"] == "place_order", started
    call = await expect(caller).to_call_tool("place_order", item="latte", quantity=2)
    assert "order number" in (call.output or "").lower()
    await expect(caller).to_hear("order number", within=5)
    usage = json.loads(await caller.wait_for_attribute("agent.usage"))
    assert usage["responses"] >= 2, usage
    expect(caller).to_have_one_agent()
    expect(caller).to_have_cut_no_reply_short()
