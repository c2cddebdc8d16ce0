"""The persisted transcript: what a replacement agent resumes from."""

from __future__ import annotations

from pathlib import Path

from livekit.agents import llm

from agent.transcript import TranscriptStore


def test_messages_and_tool_calls_come_back_as_a_chat_context(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path / "agent.db")
    store.record_message("r1", llm.ChatMessage(role="user", content=["my name is Alice"]))
    store.record_message("r1", llm.ChatMessage(role="assistant", content=["Nice to meet you."], interrupted=True))
    store.record_tool_calls(
        "r1",
        [llm.FunctionCall(call_id="c1", name="place_order", arguments='{"item": "tea"}')],
        [llm.FunctionCallOutput(call_id="c1", name="place_order", output="order 3", is_error=False)],
    )
    store.record_message("r2", llm.ChatMessage(role="user", content=["another room"]))
    ctx = store.chat_context("r1")
    assert ctx is not None
    kinds = [item.type for item in ctx.items]
    assert kinds == ["message", "message", "function_call", "function_call_output"]
    assert ctx.items[0].text_content == "my name is Alice" and ctx.items[1].interrupted
    assert ctx.items[2].call_id == "c1" and ctx.items[3].output == "order 3"


def test_a_conversation_that_ended_normally_is_not_resumed(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path / "agent.db")
    assert store.chat_context("r") is None
    store.record_message("r", llm.ChatMessage(role="user", content=["hello"]))
    store.record_end("r", "participant left")
    assert store.chat_context("r") is None
    store.record_message("r", llm.ChatMessage(role="user", content=["hello again"]))  # a new call, then a crash
    ctx = store.chat_context("r")
    assert ctx is not None and [i.text_content for i in ctx.items] == ["hello again"]


def test_old_conversations_are_not_resumed(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path / "agent.db", keep_s=0.0)
    store.record_message("r", llm.ChatMessage(role="user", content=["long ago"]))
    assert store.chat_context("r") is None
