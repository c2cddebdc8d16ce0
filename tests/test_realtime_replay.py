"""The plugin's realtime session across a reconnect, against the local server.

After a dropped connection, livekit-agents' OpenAI session replays its
conversation onto the new one and empties its mirror of the server's
conversation until the server confirms each replayed item. A tool that
finishes in that window (the framework copies the mirror, appends the
output and sends the difference) used to send the output alone, anchored at
the conversation's root: the server then held the call as the last item, and
the reply after the tool answered a call with no output ("I heard you"
instead of the order's confirmation; seen about once in ten runs of
test_order_survives_a_realtime_connection_cut_right_after_the_call).
``agent.internals.SteadyRealtimeSession`` closes the window; this test opens it on
purpose, every time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit.agents import function_tool, llm
from livekit.agents.llm._realtime import openai as plugin_realtime

from agent.config import Settings
from agent.realtime.brain import Rule, ScriptedBrain
from agent.realtime.server import RealtimeServer, ServerOptions
from agent.session import build_model

KEY = "test-key-0123456789"


@function_tool
async def place_order(item: str, quantity: int) -> str:
    """Place an order."""
    return "never run here: the test sends the output itself"


async def _reply_text(session: Any) -> str:
    generation = await asyncio.wait_for(session.generate_reply(), 10)
    parts: list[str] = []
    async for message in generation.message_stream:
        async for delta in message.text_stream:
            parts.append(delta)
    return "".join(parts)


@pytest.mark.parametrize("steady", [True, False], ids=["steady", "stock"])
async def test_a_tool_output_sent_during_the_replay_lands_after_its_call(steady: bool, monkeypatch: Any) -> None:
    rules = [Rule(match="cut", call="place_order", arguments={"item": "latte", "quantity": 1}, drop_connection=True)]
    srv = RealtimeServer(ServerOptions(port=0, api_key=KEY, brain_factory=lambda: ScriptedBrain(rules=rules)))
    await srv.start()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AGENT_REALTIME_BASE_URL", raising=False)
    monkeypatch.setenv("AGENT_LOCAL_REALTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("AGENT_LOCAL_REALTIME_PORT", str(srv.port))
    monkeypatch.setenv("AGENT_LOCAL_REALTIME_KEY", KEY)
    model = build_model(Settings.from_env())  # the worker's model: SteadyRealtimeSession sessions
    session = model.session() if steady else plugin_realtime.RealtimeModel.session(model)
    sent: asyncio.Future[asyncio.Task[None]] = asyncio.get_running_loop().create_future()
    try:
        await session.update_tools([place_order])
        ctx = llm.ChatContext.empty()
        ctx.add_message(role="user", content="a latte please, then cut")
        await session.update_chat_ctx(ctx)
        generation = await asyncio.wait_for(session.generate_reply(), 10)
        call = await asyncio.wait_for(anext(aiter(generation.function_stream)), 10)

        def tool_done(_ev: object) -> None:
            # What agent_activity does when a tool finishes (a copy of the mirror,
            # the output appended, the difference sent), at the worst moment: the
            # replay is sent and none of it is confirmed yet.
            chat = session.chat_ctx.copy()
            chat.items.append(llm.FunctionCallOutput(call_id=call.call_id, name=call.name, output="order 7 is placed", is_error=False))
            if not sent.done():
                sent.set_result(asyncio.create_task(session.update_chat_ctx(chat)))

        session.on("session_reconnected", tool_done)
        async with asyncio.timeout(15):
            await (await sent)
        kinds = [item.type for item in session.chat_ctx.items]
        said = await _reply_text(session)
        if steady:
            assert kinds == ["message", "function_call", "function_call_output"], kinds
            assert said == "Done. order 7 is placed", said
        else:
            # The defect this guards against, kept visible: if livekit-agents fixes it
            # upstream, this fails and steady_replay can go.
            assert said != "Done. order 7 is placed" or kinds[-1] != "function_call_output", (kinds, said)
    finally:
        if sent.done():
            sent.result().cancel()
        await session.aclose()
        await model.aclose()
        await srv.aclose()
