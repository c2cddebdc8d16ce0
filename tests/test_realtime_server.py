"""The local realtime server over real WebSockets.

Client 2 of the issue is the `openai` SDK's own realtime client
(``AsyncOpenAI(base_url=...).realtime.connect``); the raw `websockets`
client covers the HTTP-level answers (401, 404, 429) and bad frames.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from agent.realtime.brain import Rule, ScriptedBrain
from agent.realtime.protocol import Limits
from agent.realtime.server import RealtimeServer, ServerOptions

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
KEY = "test-key-0123456789"

ORDER_TOOL = {
    "type": "function",
    "name": "place_order",
    "description": "Place an order",
    "parameters": {
        "type": "object",
        "required": ["item", "quantity"],
        "properties": {"item": {"type": "string"}, "quantity": {"type": "integer"}},
    },
}


def brain() -> ScriptedBrain:
    return ScriptedBrain(rules=[
        Rule(match=r"(?P<n>two) lattes", call="place_order", arguments={"item": "latte", "quantity": 2}),
        Rule(match=r"open on (?P<day>\w+)", say="We open at nine on {day}."),
    ])  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    # A transcript wait longer than any stall of a loaded test machine: the tests
    # that speak assert on what the brain made of the words (the bound itself is
    # tests/test_realtime_protocol.py's; 6 s ran out in a CI lane at idle priority).
    srv = RealtimeServer(ServerOptions(port=0, api_key=KEY, max_sessions=3, brain_factory=brain,
                                       limits=Limits(max_event_bytes=64 * 1024, transcript_wait_s=60.0)))  # fmt: skip
    await srv.start()
    try:
        yield srv
    finally:
        await srv.aclose()


def url(srv: RealtimeServer, path: str = "/v1/realtime?model=gpt-realtime") -> str:
    return f"ws://127.0.0.1:{srv.port}{path}"


async def recv_until(ws: Any, type_: str, timeout: float = 10) -> list[dict[str, Any]]:
    events = []
    async with asyncio.timeout(timeout):
        while True:
            data = json.loads(await ws.recv())
            SERVER_EVENT.validate_python(data)
            events.append(data)
            if data["type"] == type_:
                return events


AUTH = {"Authorization": f"Bearer {KEY}"}


# ------------------------------------------------------------------ HTTP level


async def test_wrong_key_gets_401_with_an_openai_shaped_body(server: RealtimeServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(url(server), additional_headers=headers):
                pass
        response = info.value.response
        assert response.status_code == 401
        error = json.loads(response.body)["error"]
        assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"


async def test_unknown_path_is_404(server: RealtimeServer) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(url(server, "/v2/nothing"), additional_headers=AUTH):
            pass
    assert info.value.response.status_code == 404


async def test_sessions_over_the_cap_are_refused_with_429(server: RealtimeServer) -> None:
    open_ = [await websockets.connect(url(server), additional_headers=AUTH) for _ in range(3)]
    try:
        for ws in open_:
            await recv_until(ws, "session.created")
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(url(server), additional_headers=AUTH):
                pass
        assert info.value.response.status_code == 429
        assert json.loads(info.value.response.body)["error"]["code"] == "session_limit_reached"
    finally:
        for ws in open_:
            await ws.close()
    await asyncio.sleep(0.1)
    async with websockets.connect(url(server), additional_headers=AUTH) as ws:  # room again once closed
        await recv_until(ws, "session.created")


# ------------------------------------------------------------------ bad frames keep the session


async def test_bad_frames_get_errors_and_the_session_still_answers(server: RealtimeServer) -> None:
    async with websockets.connect(url(server), additional_headers=AUTH) as ws:
        await recv_until(ws, "session.created")
        bad: list[tuple[str, str]] = [
            ("{oops", "invalid_json"),
            (json.dumps({"type": "nope", "event_id": "e1"}), "invalid_value"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "!!", "event_id": "e2"}), "invalid_value"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 70_000, "event_id": "e3"}), "message_too_large"),
            (json.dumps({"type": "conversation.item.truncate", "item_id": "x", "content_index": 0,
                         "audio_end_ms": 10, "event_id": "e4"}), "item_truncate_invalid_item_id"),  # fmt: skip
        ]
        for raw, code in bad:
            await ws.send(raw)
            error = (await recv_until(ws, "error"))[-1]["error"]
            assert error["code"] == code, (raw[:60], error)
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}}))  # fmt: skip
        await ws.send(json.dumps({"type": "response.create"}))
        done = (await recv_until(ws, "response.done"))[-1]
        assert done["response"]["status"] == "completed"


async def test_session_ends_at_max_duration_like_openai() -> None:
    srv = RealtimeServer(ServerOptions(port=0, limits=Limits(max_session_s=0.5)))
    await srv.start()
    try:
        async with websockets.connect(url(srv)) as ws:
            events = await recv_until(ws, "error", timeout=5)
            assert events[-1]["error"]["code"] == "session_expired"
            with pytest.raises(websockets.ConnectionClosedOK):
                await asyncio.wait_for(ws.recv(), 5)
    finally:
        await srv.aclose()


# ------------------------------------------------------------------ client 2: the openai SDK


async def ask_for_two_lattes(conn: Any, modality: str) -> None:
    """Declare the order tool (no turn detection), type the order, ask for a response."""
    await conn.session.update(session={"type": "realtime", "output_modalities": [modality], "tools": [ORDER_TOOL],
                                       "audio": {"input": {"turn_detection": None}}})  # fmt: skip
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "I'd like two lattes"}]}
    )
    await conn.response.create()


async def test_openai_sdk_client_tool_call_round_trip_with_spoken_answer(server: RealtimeServer) -> None:
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await ask_for_two_lattes(conn, "audio")
        call = None
        async for event in conn:  # typed events, parsed by the SDK itself
            if event.type == "error":
                pytest.fail(f"server error: {event.error}")
            if event.type == "response.function_call_arguments.done":
                call = event
            if event.type == "response.done":
                break
        assert call is not None and call.name == "place_order"
        assert json.loads(call.arguments) == {"item": "latte", "quantity": 2}

        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"message": "Order 42 placed."})}
        )
        await conn.response.create()
        audio = bytearray()
        transcript = ""
        usage = None
        async for event in conn:
            if event.type == "response.output_audio.delta":
                audio += base64.b64decode(event.delta)
            elif event.type == "response.output_audio_transcript.done":
                transcript = event.transcript
            elif event.type == "response.done":
                usage = event.response.usage
                assert event.response.status == "completed"
                break
        assert "Order 42 placed." in transcript
        pcm = np.frombuffer(bytes(audio), dtype="<i2")
        assert len(pcm) > 24_000 * 0.5, "less than half a second of audio"
        assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 300, "the audio is silent"
        assert usage is not None and usage.output_token_details is not None
        assert usage.output_token_details.audio_tokens == pytest.approx(len(pcm) / 24_000 * 1000 / 50, abs=1)
        assert usage.input_tokens and usage.input_tokens > 0


async def test_spoken_turn_is_transcribed_when_asked(server: RealtimeServer) -> None:
    from agent.realtime.speech import Synthesizer

    sentence = await Synthesizer().synthesize("What time does the coffee shop open on Sunday morning")
    audio = np.concatenate([np.zeros(4800, np.int16), sentence, np.zeros(24_000, np.int16)])
    async with websockets.connect(url(server), additional_headers=AUTH) as ws:
        await recv_until(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}}}))  # fmt: skip
        for i in range(0, len(audio), 2400):
            chunk = base64.b64encode(audio[i : i + 2400].astype("<i2").tobytes()).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        events = await recv_until(ws, "conversation.item.input_audio_transcription.completed", timeout=20)
        committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
        done = events[-1]
        assert done["item_id"] == committed["item_id"]
        assert "sunday morning" in done["transcript"].lower(), done["transcript"]
        # The response waited for the transcript, so the brain's rule matched the spoken words.
        answer = (await recv_until(ws, "response.output_audio_transcript.done", timeout=20))[-1]
        assert answer["transcript"] == "We open at nine on sunday."


async def test_fault_injection_drops_the_connection_without_a_close_frame() -> None:
    rules = [Rule(match="cut", call="place_order", arguments={"item": "latte", "quantity": 1}, drop_connection=True)]
    srv = RealtimeServer(ServerOptions(port=0, brain_factory=lambda: ScriptedBrain(rules=rules)))
    await srv.start()
    try:
        async with websockets.connect(url(srv)) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [ORDER_TOOL]}}))
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "cut"}]}}))  # fmt: skip
            await ws.send(json.dumps({"type": "response.create"}))
            events = await recv_until(ws, "response.done")
            assert any(e["type"] == "response.function_call_arguments.done" for e in events)
            with pytest.raises(websockets.ConnectionClosedError):  # abnormal closure, no close frame
                await asyncio.wait_for(ws.recv(), 5)
        for _ in range(50):
            if srv.sessions == 0:
                break
            await asyncio.sleep(0.05)
        assert srv.sessions == 0, "the dropped session is still counted as active"
    finally:
        await srv.aclose()


async def test_a_cut_after_the_call_comes_after_the_client_has_every_byte_of_it() -> None:
    # The fault stands for a network failure *after* the server sent the call: the
    # client must get the whole call-only response, up to its response.done, before
    # the abnormal closure. Here the client reads nothing for half a second (a busy
    # client; a small receive window), so the call waits in the server's socket
    # behind a backlog of echoed items; and it goes on streaming audio, as a
    # caller's would, so the server has unread input when it cuts. Closing a
    # socket with unread input sends RST, which throws away what the server's
    # kernel had not yet delivered.
    rules = [Rule(match="cut", call="place_order", arguments={"item": "latte", "quantity": 1}, drop_connection=True)]
    srv = RealtimeServer(ServerOptions(port=0, brain_factory=lambda: ScriptedBrain(rules=rules)))
    await srv.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: it sets the window
    sock.setblocking(False)
    silence = base64.b64encode(bytes(48_000)).decode()  # 1 s of PCM16 at 24 kHz
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port))
        # no compression: the backlog must take the room on the wire that its size says
        async with websockets.connect(url(srv), sock=sock, compression=None, max_queue=1) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [ORDER_TOOL]}}))
            for _ in range(2):
                text = base64.b64encode(os.urandom(9_000)).decode()
                await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))  # fmt: skip
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "cut"}]}}))  # fmt: skip
            await ws.send(json.dumps({"type": "response.create"}))
            loop = asyncio.get_running_loop()
            busy_until = loop.time() + 0.5
            with contextlib.suppress(websockets.ConnectionClosed):
                while loop.time() < busy_until:  # streams audio, reads nothing
                    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": silence}))
                    await asyncio.sleep(0.01)
            events: list[dict[str, Any]] = []
            with pytest.raises(websockets.ConnectionClosedError):  # abnormal closure, no close frame
                async with asyncio.timeout(10):
                    while True:
                        events.append(json.loads(await ws.recv()))
            kinds = [e["type"] for e in events]
            assert "response.done" in kinds, f"the cut lost the call's events: the client got {kinds[-4:]}"
            done = events[kinds.index("response.done")]
            assert [o["type"] for o in done["response"]["output"]] == ["function_call"]
            assert kinds[-1] == "response.done", "nothing is sent after the cut's response.done"
    finally:
        sock.close()
        await srv.aclose()


# ------------------------------------------------------------------ supervised tasks


class _FailsOnce:
    """A synthesizer whose first call fails with an error that is not a SpeechError."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0

    async def synthesize(self, text: str, voice: str = "marin") -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("synthesizer crashed")
        return await self.real.synthesize(text, voice)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_a_speech_task_that_crashes_ends_its_response_with_an_error_and_the_session_goes_on() -> None:
    srv = RealtimeServer(ServerOptions(port=0, brain_factory=brain))
    srv.synth = _FailsOnce(srv.synth)  # type: ignore[assignment]
    await srv.start()
    try:
        async with websockets.connect(url(srv)) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {"input": {"turn_detection": None}}}}))  # fmt: skip
            await ws.send(json.dumps({"type": "response.create", "response": {"instructions": 'Say exactly: "hello"'}}))
            events = await recv_until(ws, "response.done")
            assert events[-1]["response"]["status"] == "failed"
            error = (await recv_until(ws, "error"))[-1]["error"]
            assert (error["type"], error["code"]) == ("server_error", "response_failed")
            assert "RuntimeError: synthesizer crashed" in error["message"]
            await ws.send(json.dumps({"type": "response.create", "response": {"instructions": 'Say exactly: "again"'}}))
            done = (await recv_until(ws, "response.done"))[-1]["response"]
            assert done["status"] == "completed"
    finally:
        await srv.aclose()


class _Stuck:
    """A transcriber that never answers (so a response waits for its deadline)."""

    async def transcribe(self, pcm: np.ndarray, rate: int = 24_000) -> str:
        await asyncio.Event().wait()
        return ""

    def feed(self, key: str, pcm: np.ndarray, rate: int = 24_000) -> None: ...

    def cancel(self, key: str) -> None: ...

    async def finish(self, key: str) -> str | None:
        await asyncio.Event().wait()
        return None

    def warm_up(self) -> None: ...

    def close(self) -> None: ...


class _Broken:
    def reply(self, inp: Any) -> Any:
        raise RuntimeError("brain bug")


async def test_a_failing_ticker_ends_the_connection_instead_of_leaving_it_silent() -> None:
    """The brain runs in the ticker when a transcript wait runs out; its failure
    must reach the connection's owner (1011, session released), not die unseen."""
    srv = RealtimeServer(ServerOptions(port=0, brain_factory=_Broken))
    srv.transcriber = _Stuck()  # type: ignore[assignment]
    await srv.start()
    t = np.arange(24_000) / 24_000
    speech = (8000 * np.sin(2 * np.pi * 220 * t)).astype("<i2")
    audio = np.concatenate([np.zeros(4800, "<i2"), speech, np.zeros(24_000, "<i2")])
    try:
        async with websockets.connect(url(srv)) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}}))  # fmt: skip
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(audio.tobytes()).decode()}))
            await recv_until(ws, "response.created")
            with pytest.raises(websockets.ConnectionClosedError) as info:
                await recv_until(ws, "never", timeout=10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        for _ in range(50):
            if srv.sessions == 0:
                break
            await asyncio.sleep(0.05)
        assert srv.sessions == 0
    finally:
        await srv.aclose()


async def test_the_journal_records_calls_outputs_and_responses_of_any_client(tmp_path: Any) -> None:
    from agent.realtime.journal import JournalReader

    path = tmp_path / "journal.jsonl"
    srv = RealtimeServer(ServerOptions(port=0, brain_factory=brain, journal=str(path)))
    await srv.start()
    try:
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="any")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await ask_for_two_lattes(conn, "text")
            call_id = None
            async for event in conn:
                if event.type == "response.function_call_arguments.done":
                    call_id = event.call_id
                if event.type == "response.done":
                    break
            assert call_id is not None
            await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call_id, "output": "Order 42 placed."})
            await conn.response.create()
            async for event in conn:
                if event.type == "response.done":
                    break
    finally:
        await srv.aclose()
    reader = JournalReader(path)
    kinds = [e["kind"] for e in reader.entries()]
    assert kinds[0] == "session_opened" and kinds[-1] == "session_closed", kinds
    assert kinds.count("response_done") == 2 and "user_text" in kinds
    (call,) = reader.tool_calls()
    assert (call.name, call.arguments, call.output, call.call_id) == ("place_order", {"item": "latte", "quantity": 2}, "Order 42 placed.", call_id)
    assert reader.tool_calls(since=call.t + 60) == []
