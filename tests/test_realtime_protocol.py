"""The Realtime protocol state machine, driven without sockets or clock.

Every server event is checked against the `openai` package's own model of
the protocol (``RealtimeServerEvent``), so a shape we get wrong fails here.
"""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from agent.realtime.brain import Rule, ScriptedBrain
from agent.realtime.client_events import parse_client_event
from agent.realtime.errors import Case, ProtocolError
from agent.realtime.protocol import Limits, RealtimeProtocol, TranscriptionFeed, TranscriptionRequest

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
RATE = 24_000


def tone(ms: int, amplitude: int = 8000, freq: float = 220.0) -> np.ndarray:
    t = np.arange(RATE * ms // 1000) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, np.int16)


def b64(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode()


class Driver:
    """A client on a simulated clock: sends JSON, collects validated server events.

    Speech for replies is a tone of 60 ms per word, made at once (no espeak).
    """

    def __init__(self, brain: ScriptedBrain | None = None, limits: Limits = Limits(), *, transcribe: bool = True) -> None:
        self.now = 1000.0
        self.transcribe = transcribe  # False: transcription requests wait in self.requests for the test to answer
        self.proto = RealtimeProtocol(session_id="sess_test", brain=brain or ScriptedBrain(), now=self.now, limits=limits)
        self.events: list[dict[str, Any]] = []
        self.feeds: list[TranscriptionFeed] = []  # what the shell would decode while the caller speaks
        self.requests: list[TranscriptionRequest] = []
        self._collect(self.proto.start())

    def _collect(self, out: list[Any]) -> list[dict[str, Any]]:
        got = []
        for ev in out:
            data = json.loads(ev.model_dump_json(exclude_unset=True))
            SERVER_EVENT.validate_python(data)  # the shape OpenAI's SDK expects
            got.append(data)
        self.events += got
        for job in self.proto.transcription_requests():
            if isinstance(job, TranscriptionFeed):
                self.feeds.append(job)
                continue
            self.requests.append(job)
            if not self.transcribe:
                continue
            got += self._collect(self.proto.transcription_ready(job.item_id, f"heard {len(job.pcm)} samples", self.now))
        for req in self.proto.speech_requests():
            words = max(1, len(req.text.split()))
            got += self._collect(self.proto.speech_ready(req.request_id, tone(60 * words), self.now))
        return got

    def send(self, event: dict[str, Any] | str) -> list[dict[str, Any]]:
        raw = event if isinstance(event, str) else json.dumps(event)
        try:
            parsed = parse_client_event(raw, max_bytes=self.proto.limits.max_event_bytes)
        except ProtocolError as err:
            return self._collect(self.proto.error_event(err))
        return self._collect(self.proto.receive(parsed, self.now))

    def append(self, pcm: np.ndarray, chunk_ms: int = 20) -> list[dict[str, Any]]:
        got = []
        step = RATE * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            got += self.send({"type": "input_audio_buffer.append", "audio": b64(pcm[i : i + step])})
            self.now += chunk_ms / 1000
            got += self._collect(self.proto.tick(self.now))
        return got

    def run(self, seconds: float) -> list[dict[str, Any]]:
        """Advance the clock, ticking at each deadline."""
        end = self.now + seconds
        got = []
        while True:
            deadline = self.proto.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            got += self._collect(self.proto.tick(self.now))
        self.now = end
        return got

    def types(self, events: list[dict[str, Any]] | None = None) -> list[str]:
        return [e["type"] for e in (self.events if events is None else events)]

    def last(self, type_: str) -> dict[str, Any]:
        return [e for e in self.events if e["type"] == type_][-1]


def manual(driver: Driver) -> None:
    driver.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}})


# ------------------------------------------------------------------ session


def test_session_created_first_then_update_is_acknowledged() -> None:
    d = Driver()
    assert d.types() == ["session.created"]
    got = d.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}})
    assert d.types(got) == ["session.updated"]
    assert got[0]["session"]["instructions"] == "Be brief."


def test_session_update_with_unsupported_audio_format_is_an_error_and_keeps_the_old_one() -> None:
    d = Driver()
    got = d.send(
        {"type": "session.update", "event_id": "ev1",
         "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}}
    )  # fmt: skip
    assert d.types(got) == ["error"]
    assert got[0]["error"]["event_id"] == "ev1"
    assert d.proto.session.audio.input.format.rate == 24000


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid_json"),
        (json.dumps({"type": "no.such.event", "event_id": "e9"}), "invalid_value"),
        (json.dumps({"event_id": "e9"}), "missing_required_parameter"),
        (json.dumps({"type": "conversation.item.truncate", "event_id": "e9"}), "missing_required_parameter"),
    ],
)
def test_bad_client_events_get_an_error_and_the_session_goes_on(raw: str, code: str) -> None:
    d = Driver()
    got = d.send(raw)
    assert d.types(got) == ["error"]
    assert got[0]["error"]["code"] == code
    if "e9" in raw:
        assert got[0]["error"]["event_id"] == "e9"
    manual(d)
    reply = d.send({"type": "conversation.item.create",
                    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})  # fmt: skip
    assert "conversation.item.added" in d.types(reply)
    d.send({"type": "response.create"})
    d.run(10)
    assert d.last("response.done")["response"]["status"] == "completed"


def test_invalid_base64_audio_is_an_error() -> None:
    d = Driver()
    got = d.send({"type": "input_audio_buffer.append", "audio": "@@@not base64@@@", "event_id": "a1"})
    assert d.types(got) == ["error"]
    assert got[0]["error"]["event_id"] == "a1"


def test_odd_byte_count_pcm16_is_an_error() -> None:
    d = Driver()
    got = d.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x00\x01\x02").decode()})
    assert d.types(got) == ["error"]


# ------------------------------------------------------------------ turns


def test_server_vad_turn_answers_after_the_end_of_speech() -> None:
    d = Driver()
    d.append(silence(300))
    started = d.append(tone(1000))
    assert "input_audio_buffer.speech_started" in d.types(started)
    assert "response.created" not in d.types(started)
    after = d.append(silence(800))
    types = d.types(after)
    assert types.index("input_audio_buffer.speech_stopped") < types.index("input_audio_buffer.committed")
    assert types.index("input_audio_buffer.committed") < types.index("response.created")
    stopped = d.last("input_audio_buffer.speech_stopped")
    # speech ended at 1300 ms of session audio; stopped is reported after silence_duration_ms
    assert 1250 <= stopped["audio_end_ms"] <= 1900
    d.run(10)
    done = d.last("response.done")["response"]
    assert done["status"] == "completed"
    assert done["usage"]["input_token_details"]["audio_tokens"] > 0
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0
    assert d.types().count("response.output_audio.delta") >= 2


def test_response_event_order_matches_openai() -> None:
    d = Driver()
    manual(d)
    d.send({"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}})  # fmt: skip
    first = len(d.events)
    d.send({"type": "response.create"})
    d.run(10)
    types = [t for t in d.types(d.events[first:]) if not t.endswith(".delta")]
    assert types == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]


def test_response_metadata_is_echoed() -> None:
    d = Driver()
    manual(d)
    got = d.send({"type": "response.create", "response": {"metadata": {"client_event_id": "abc"}}})
    assert d.types(got)[0] == "response.created"
    assert got[0]["response"]["metadata"] == {"client_event_id": "abc"}


def test_say_exactly_instructions_are_spoken_verbatim() -> None:
    d = Driver()
    manual(d)
    d.send({"type": "response.create", "response": {"instructions": 'Greet. Say exactly: "Hello! I\'m an AI assistant."'}})
    d.run(10)
    assert d.last("response.output_audio_transcript.done")["transcript"] == "Hello! I'm an AI assistant."


def test_second_response_while_one_is_active_is_refused() -> None:
    d = Driver()
    manual(d)
    d.send({"type": "response.create"})
    got = d.send({"type": "response.create", "event_id": "r2"})
    assert d.types(got) == ["error"]
    assert got[0]["error"]["code"] == "conversation_already_has_active_response"


def test_cancel_without_response_returns_error() -> None:
    d = Driver()
    got = d.send({"type": "response.cancel", "event_id": "c1"})
    assert d.types(got) == ["error"]
    assert got[0]["error"]["code"] == "response_cancel_not_active"


def test_caller_speaking_during_a_response_cancels_it() -> None:
    d = Driver()  # server VAD, interrupt_response on by default
    d.send({"type": "response.create", "response": {"instructions": 'Say exactly: "' + "word " * 60 + '"'}})
    d.run(0.5)
    assert d.types().count("response.output_audio.delta") > 0
    d.append(tone(400))
    cancelled_at = d.types().index("response.done")
    done = d.events[cancelled_at]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    # 60 words = 3.6 s of audio = 36 deltas; far fewer went out, none after the cancel
    assert d.types().count("response.output_audio.delta") < 36
    d.run(5)
    assert "response.output_audio.delta" not in d.types(d.events[cancelled_at:])


def test_commit_with_too_little_audio_is_refused() -> None:
    d = Driver()
    manual(d)
    d.append(tone(50))
    got = d.send({"type": "input_audio_buffer.commit"})
    assert d.types(got) == ["error"]
    assert got[0]["error"]["code"] == "input_audio_buffer_commit_empty"


# ------------------------------------------------------------------ conversation


def test_truncate_past_the_end_is_an_error() -> None:
    d = Driver()
    manual(d)
    d.send({"type": "response.create", "response": {"instructions": 'Say exactly: "one two three"'}})
    d.run(10)
    item_id = d.last("response.output_item.done")["item"]["id"]
    got = d.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 999_999})
    assert d.types(got) == ["error"]
    ok = d.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 60})
    assert d.types(ok) == ["conversation.item.truncated"]


def test_truncate_at_zero_before_any_audio_is_accepted() -> None:
    d = Driver()
    manual(d)
    d.send({"type": "response.create", "response": {"instructions": 'Say exactly: "one two three"'}})
    d.run(10)
    item_id = d.last("response.output_item.done")["item"]["id"]
    got = d.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 0})
    assert d.types(got) == ["conversation.item.truncated"]


def test_items_are_chained_by_previous_item_id_and_can_be_deleted() -> None:
    d = Driver()
    manual(d)
    ids = []
    for text in ("one", "two"):
        got = d.send({"type": "conversation.item.create",
                      "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})  # fmt: skip
        ids.append(got[0]["item"]["id"])
        prev = got[0]["previous_item_id"]
    assert prev == ids[0]
    got = d.send({"type": "conversation.item.delete", "item_id": ids[0]})
    assert d.types(got) == ["conversation.item.deleted"]
    got = d.send({"type": "conversation.item.retrieve", "item_id": ids[0], "event_id": "x"})
    assert d.types(got) == ["error"]


def test_an_item_placed_first_has_no_previous_item_as_openai_says() -> None:
    """A client asks for the first place with previous_item_id "root"; OpenAI's
    item events then say null ("the item that precedes this one, if any").
    Echoing "root" made livekit-agents file the item at its mirror's tail (an
    unknown anchor), so its view of the order differed from the server's."""
    d = Driver()
    manual(d)
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "one"}]}
    first = d.send({"type": "conversation.item.create", "item": user})
    assert first[0]["previous_item_id"] is None  # an empty conversation: nothing precedes it
    got = d.send({"type": "conversation.item.create", "item": user, "previous_item_id": "root"})
    assert d.types(got) == ["conversation.item.added", "conversation.item.done"]
    assert [e["previous_item_id"] for e in got] == [None, None]
    second = d.send({"type": "conversation.item.create", "item": user})
    assert second[0]["previous_item_id"] == first[0]["item"]["id"]  # appended after the last one


def test_an_item_id_used_twice_is_refused_as_openai_does() -> None:
    """A replay after a reconnect may send an item the server already has:
    OpenAI answers item_create_duplicate_item_id, which livekit-agents treats
    as "already there" rather than as a failure."""
    d = Driver()
    manual(d)
    item = {"id": "item_mine", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "one"}]}
    d.send({"type": "conversation.item.create", "item": item})
    got = d.send({"type": "conversation.item.create", "item": item, "event_id": "again"})
    assert d.types(got) == ["error"]
    error = got[0]["error"]
    assert error["code"] == "item_create_duplicate_item_id" and error["event_id"] == "again"
    assert "already exists" in error["message"]


def test_a_question_typed_while_the_previous_reply_is_cancelled_is_answered() -> None:
    """The room race seen in the bad-input room test: a second chat message
    interrupts the reply to the first before it has said anything, and the
    client inserts the new message after the first one, i.e. before the
    cancelled (empty) reply. The answer is to the new message, not "I heard you"."""
    d = Driver()
    manual(d)
    first = d.send({"type": "conversation.item.create",
                    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a long message " * 20}]}})  # fmt: skip
    d.send({"type": "response.create"})
    d.send({"type": "response.cancel"})
    assert d.last("response.done")["response"]["status"] == "cancelled"
    d.send({"type": "conversation.item.create", "previous_item_id": first[0]["item"]["id"],
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "what is two plus two"}]}})  # fmt: skip
    d.send({"type": "response.create"})
    d.run(10)
    assert d.last("response.output_audio_transcript.done")["transcript"] == "You said: what is two plus two"


def test_rules_call_a_tool_then_answer_with_its_output() -> None:
    brain = ScriptedBrain(rules=[Rule(match=r"latte", call="place_order", arguments={"item": "latte", "quantity": 2})])
    d = Driver(brain)
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}},
            "tools": [{"type": "function", "name": "place_order", "description": "order",
                       "parameters": {"type": "object", "properties": {"item": {"type": "string"}, "quantity": {"type": "integer"}}}}]}})  # fmt: skip
    d.send({"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "two lattes please"}]}})  # fmt: skip
    d.send({"type": "response.create"})
    d.run(10)
    call = d.last("response.function_call_arguments.done")
    assert call["name"] == "place_order"
    assert json.loads(call["arguments"]) == {"item": "latte", "quantity": 2}
    d.send({"type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call["call_id"], "output": "order #17"}})  # fmt: skip
    d.send({"type": "response.create"})
    d.run(10)
    assert "order #17" in d.last("response.output_audio_transcript.done")["transcript"]


def test_session_expires_with_session_expired_error() -> None:
    d = Driver(limits=Limits(max_session_s=5))
    d.run(6)
    err = d.last("error")["error"]
    assert err["code"] == "session_expired"
    assert err["type"] == "invalid_request_error"
    assert d.proto.closed


# ------------------------------------------------------------------ tool_choice

ORDER_TOOL = {
    "type": "function", "name": "place_order", "description": "Place an order for drinks",
    "parameters": {"type": "object", "required": ["item", "quantity"], "additionalProperties": False,
                   "properties": {"item": {"type": "string", "enum": ["latte", "espresso"]},
                                  "quantity": {"type": "integer", "minimum": 1}}},
}  # fmt: skip
TIME_TOOL = {"type": "function", "name": "get_time", "description": "Tell the time",
             "parameters": {"type": "object", "properties": {}}}  # fmt: skip


def _tools_session(d: Driver, tool_choice: Any = "auto") -> None:
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}},
            "tools": [TIME_TOOL, ORDER_TOOL], "tool_choice": tool_choice}})  # fmt: skip


def _user_says(d: Driver, text: str, response: dict[str, Any] | None = None) -> dict[str, Any]:
    d.send({"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})  # fmt: skip
    d.send({"type": "response.create", **({"response": response} if response else {})})
    d.run(10)
    return d.last("response.done")["response"]


def _calls(response: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(o["name"], json.loads(o["arguments"])) for o in response["output"] if o["type"] == "function_call"]


def test_tool_choice_required_makes_a_schema_valid_call_whatever_the_brain_says() -> None:
    from jsonschema import validate

    d = Driver()  # the default brain never calls tools
    _tools_session(d, "required")
    response = _user_says(d, "I want to order a drink please")
    calls = _calls(response)
    assert [name for name, _ in calls] == ["place_order"]  # best word match: "order", "drink"
    validate(calls[0][1], ORDER_TOOL["parameters"])
    assert not [o for o in response["output"] if o["type"] == "message"]


def test_named_tool_choice_repairs_invalid_brain_arguments() -> None:
    from jsonschema import validate

    brain = ScriptedBrain(rules=[Rule(match="lattes", call="place_order", arguments={"item": "latte", "quantity": "two"})])
    d = Driver(brain)
    _tools_session(d, {"type": "function", "name": "place_order"})
    calls = _calls(_user_says(d, "two lattes"))
    assert len(calls) == 1 and calls[0][0] == "place_order"
    validate(calls[0][1], ORDER_TOOL["parameters"])
    assert calls[0][1]["item"] == "latte"  # the valid part of what the brain said is kept


def test_tool_choice_none_in_the_response_overrides_the_session() -> None:
    brain = ScriptedBrain(rules=[Rule(match="lattes", call="place_order", arguments={"item": "latte", "quantity": 2})])
    d = Driver(brain)
    _tools_session(d, "auto")
    response = _user_says(d, "two lattes", response={"tool_choice": "none"})
    assert _calls(response) == []
    assert [o["type"] for o in response["output"]] == ["message"]


def test_per_response_named_choice_wins_over_session_auto() -> None:
    d = Driver()
    _tools_session(d, "auto")
    response = _user_says(d, "hello", response={"tool_choice": {"type": "function", "name": "get_time"}})
    assert _calls(response) == [("get_time", {})]


def test_auto_never_calls_an_undeclared_tool() -> None:
    brain = ScriptedBrain(rules=[Rule(match="refund", call="issue_refund", say="Let me see.")])
    d = Driver(brain)
    _tools_session(d, "auto")
    response = _user_says(d, "I want a refund")
    assert _calls(response) == []


# ------------------------------------------------------------------ input transcription


def test_input_transcription_only_when_the_session_asks() -> None:
    d = Driver()
    d.append(np.concatenate([silence(200), tone(800), silence(800)]))
    assert "conversation.item.input_audio_transcription.completed" not in d.types()

    d = Driver()
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}})
    d.append(np.concatenate([silence(200), tone(800), silence(800)]))
    committed = d.last("input_audio_buffer.committed")["item_id"]
    done = d.last("conversation.item.input_audio_transcription.completed")
    assert done["item_id"] == committed
    assert done["transcript"].startswith("heard ")
    assert done["usage"]["type"] == "duration" and done["usage"]["seconds"] > 0.8
    retrieved = d.send({"type": "conversation.item.retrieve", "item_id": committed})
    assert retrieved[0]["item"]["content"][0]["transcript"] == done["transcript"]


def _transcribing() -> Driver:
    d = Driver()
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}})
    return d


def test_a_turn_goes_to_the_transcriber_while_the_caller_speaks() -> None:
    d = _transcribing()
    d.append(np.concatenate([silence(400), tone(800)]))  # still speaking: nothing committed
    assert d.feeds and not d.requests
    item = d.feeds[0].item_id
    assert d.last("input_audio_buffer.speech_started")["item_id"] == item
    d.append(silence(800))
    committed = d.last("input_audio_buffer.committed")["item_id"]
    assert committed == item and [r.item_id for r in d.requests] == [item] and d.requests[0].streamed
    # the stream is exactly the committed audio, in order: decoding it gives the turn's words
    fed = [f for f in d.feeds if f.item_id == item]
    assert all(f.pcm is not None for f in fed)
    streamed = np.concatenate([f.pcm for f in fed if f.pcm is not None])
    assert np.array_equal(streamed, d.requests[0].pcm)
    assert d.last("conversation.item.input_audio_transcription.completed")["item_id"] == item


def _slow_transcriber(wait_s: float) -> Driver:
    d = Driver(ScriptedBrain(rules=[Rule(match=r"open on (?P<day>\w+)", say="We open at nine on {day}.")]),
               Limits(transcript_wait_s=wait_s), transcribe=False)  # fmt: skip
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}})
    d.append(np.concatenate([silence(200), tone(800), silence(800)]))  # committed; its response waits
    assert d.requests and "response.created" in d.types()
    return d


def test_a_response_waits_for_a_slow_transcript_up_to_the_limit() -> None:
    d = _slow_transcriber(wait_s=20.0)
    d.run(15.0)  # a busy transcriber: 15 s and no words yet, no answer either
    assert "response.output_audio_transcript.done" not in d.types()
    d._collect(d.proto.transcription_ready(d.requests[0].item_id, "when are you open on sunday", d.now))
    d.run(5.0)
    assert d.last("response.output_audio_transcript.done")["transcript"] == "We open at nine on sunday."


def test_a_response_goes_on_without_the_transcript_at_the_limit() -> None:
    d = _slow_transcriber(wait_s=3.0)
    d.run(2.0)  # (the response was created up to 0.3 s before: the last appends were silence)
    assert "response.output_audio_transcript.done" not in d.types()
    d.run(3.0)  # the brain answers without the words
    assert d.last("response.done")["response"]["status"] == "completed"
    assert "sunday" not in d.last("response.output_audio_transcript.done")["transcript"]


def test_a_turn_dropped_before_its_commit_cancels_its_stream() -> None:
    d = _transcribing()
    d.append(np.concatenate([silence(400), tone(600)]))
    item = d.feeds[0].item_id
    d.send({"type": "input_audio_buffer.clear"})
    assert d.feeds[-1].item_id == item and d.feeds[-1].pcm is None
    assert not d.requests
    n = len(d.feeds)
    d.append(silence(300))  # nothing of a cancelled turn goes out any more
    assert len(d.feeds) == n


def test_without_transcription_nothing_is_streamed() -> None:
    d = Driver()
    d.append(np.concatenate([silence(200), tone(800), silence(800)]))
    assert d.feeds == [] and d.requests == []


def test_transcription_turned_off_mid_turn_cancels_the_stream() -> None:
    d = _transcribing()
    d.append(np.concatenate([silence(400), tone(600)]))
    item = d.feeds[0].item_id
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"transcription": None}}}})
    d.append(silence(800))
    assert d.last("input_audio_buffer.committed")["item_id"] == item
    assert d.feeds[-1].item_id == item and d.feeds[-1].pcm is None and not d.requests


# ------------------------------------------------------------------ every client event


def test_every_client_event_of_the_ga_set_is_accepted() -> None:
    d = Driver()
    manual(d)
    user = d.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "hello"}]}})[0]["item"]["id"]  # fmt: skip
    d.send({"type": "response.create", "response": {"instructions": 'Say exactly: "one two"'}})
    d.run(10)
    assistant = d.last("response.output_item.done")["item"]["id"]
    accepted = [
        {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}},
        {"type": "input_audio_buffer.append", "audio": b64(tone(200))},
        {"type": "input_audio_buffer.commit"},
        {"type": "input_audio_buffer.append", "audio": b64(tone(20))},
        {"type": "input_audio_buffer.clear"},
        {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
         "content": [{"type": "input_audio", "audio": b64(tone(300))}]}},  # fmt: skip
        {"type": "conversation.item.create", "item": {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}},
        {"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c1", "output": "ok"}},
        {"type": "conversation.item.retrieve", "item_id": user},
        {"type": "conversation.item.truncate", "item_id": assistant, "content_index": 0, "audio_end_ms": 50},
        {"type": "conversation.item.delete", "item_id": user},
        {"type": "response.create", "response": {"output_modalities": ["text"]}},
        {"type": "response.create", "response": {"instructions": 'Say exactly: "' + "word " * 60 + '"'}},
        {"type": "response.cancel"},  # while the long answer streams
    ]
    for event in accepted:
        got = d.send(event)
        assert "error" not in d.types(got), (event["type"], got)
        d.run(0.01)


def test_output_in_g711_mu_law_is_8khz_bytes() -> None:
    d = Driver()
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"turn_detection": None}, "output": {"format": {"type": "audio/pcmu"}}}}})  # fmt: skip
    d.send({"type": "response.create", "response": {"instructions": 'Say exactly: "one two three"'}})
    d.run(10)
    data = b"".join(base64.b64decode(e["delta"]) for e in d.events if e["type"] == "response.output_audio.delta")
    assert len(data) == 8 * 180  # three words = 180 ms of audio, one byte per 8 kHz sample
    assert d.last("response.done")["response"]["audio"]["output"]["format"]["type"] == "audio/pcmu"


def test_vad_without_create_response_commits_but_waits_for_the_client() -> None:
    d = Driver()
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "create_response": False, "silence_duration_ms": 300}}}}})  # fmt: skip
    d.append(np.concatenate([silence(200), tone(600), silence(600)]))
    assert "input_audio_buffer.committed" in d.types()
    assert "response.created" not in d.types()


def test_vad_without_interrupt_response_lets_the_answer_finish() -> None:
    d = Driver()
    d.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "interrupt_response": False, "create_response": False}}}}})  # fmt: skip
    d.send({"type": "response.create", "response": {"instructions": 'Say exactly: "' + "word " * 30 + '"'}})
    d.append(tone(400))
    assert "input_audio_buffer.speech_started" in d.types()
    d.run(10)
    assert d.last("response.done")["response"]["status"] == "completed"


def test_manual_turns_commit_only_when_asked() -> None:
    d = Driver()
    manual(d)
    d.append(np.concatenate([silence(200), tone(600), silence(900)]))
    assert "input_audio_buffer.speech_started" not in d.types() and "input_audio_buffer.committed" not in d.types()
    got = d.send({"type": "input_audio_buffer.commit"})
    assert d.types(got)[0] == "input_audio_buffer.committed"


# ------------------------------------------------------------------ OpenAI's error codes, one row each
#
# Every case of agent/realtime/errors.py, with the code (and param) OpenAI's
# service sends for it; errors.py cites where each was seen.

USER_HI = {"type": "conversation.item.create", "item": {"id": "item_user", "type": "message", "role": "user",
           "content": [{"type": "input_text", "text": "hi"}]}}  # fmt: skip


def _spoken_reply(d: Driver) -> str:
    d.send({"type": "response.create", "response": {"instructions": 'Say exactly: "one two three"'}})
    d.run(10)
    return str(d.last("response.output_item.done")["item"]["id"])


def _session(**fields: Any) -> dict[str, Any]:
    return {"type": "session.update", "session": {"type": "realtime", **fields}}


def _truncate(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}


ERROR_ROWS: list[tuple[Case, Any, str, str | None]] = [
    # (case, what the client does: an event, or a function of the driver returning one, code, param)
    (Case.INVALID_JSON, "{oops", "invalid_json", None),
    (Case.MISSING_TYPE, {}, "missing_required_parameter", "type"),
    (Case.UNKNOWN_EVENT_TYPE, {"type": "no.such.event"}, "invalid_value", "type"),
    (Case.MISSING_PARAMETER, {"type": "session.update", "session": {"instructions": "x"}},
     "missing_required_parameter", "session.type"),
    (Case.INVALID_TYPE, _session(audio={"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}}),
     "invalid_type", "session.audio.input.turn_detection.threshold"),
    (Case.INVALID_VALUE, _session(audio={"input": {"format": {"type": "audio/pcm", "rate": 16000}}}),
     "invalid_value", "session.audio.input.format.rate"),
    (Case.BELOW_MINIMUM, lambda d: _truncate(_spoken_reply(d), -11), "integer_below_min_value", "audio_end_ms"),
    (Case.EVENT_TOO_LARGE, {"type": "input_audio_buffer.append", "audio": "A" * 70_000}, "message_too_large", None),
    (Case.UNSUPPORTED_SESSION_TYPE, {"type": "session.update", "session": {"type": "transcription"}},
     "invalid_value", "session.type"),
    (Case.AUDIO_NOT_BASE64, {"type": "input_audio_buffer.append", "audio": "@@@not base64@@@"}, "invalid_value", "audio"),
    (Case.AUDIO_NOT_DECODABLE, {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x00\x01\x02").decode()},
     "invalid_value", "audio"),
    (Case.COMMIT_TOO_SMALL, lambda d: (d.append(tone(50)), {"type": "input_audio_buffer.commit"})[1],
     "input_audio_buffer_commit_empty", None),
    (Case.OUTPUT_BUFFER_ON_WEBSOCKET, {"type": "output_audio_buffer.clear"}, "invalid_value", "type"),
    (Case.ITEM_TYPE_UNSUPPORTED, {"type": "conversation.item.create", "item": {
        "id": "mcpr_1", "type": "mcp_approval_response", "approval_request_id": "apr_1", "approve": True}}, "invalid_value", "item.type"),
    (Case.ITEM_AUDIO_INVALID, {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
     "content": [{"type": "input_audio", "audio": "@@@"}]}}, "invalid_value", "item.content"),  # fmt: skip
    (Case.DUPLICATE_ITEM_ID, lambda d: (d.send(USER_HI), USER_HI)[1], "item_create_duplicate_item_id", None),
    (Case.PREVIOUS_ITEM_NOT_FOUND, {**USER_HI, "previous_item_id": "item_gone"}, "item_create_invalid_previous_item_id", None),
    (Case.RETRIEVE_UNKNOWN_ITEM, {"type": "conversation.item.retrieve", "item_id": "item_gone"},
     "item_retrieve_invalid_item_id", None),
    (Case.DELETE_UNKNOWN_ITEM, {"type": "conversation.item.delete", "item_id": "item_gone"},
     "item_delete_invalid_item_id", None),
    (Case.TRUNCATE_UNKNOWN_ITEM, _truncate("item_gone", 10), "item_truncate_invalid_item_id", None),
    (Case.TRUNCATE_NOT_MODEL_AUDIO, lambda d: (d.send(USER_HI), _truncate("item_user", 0))[1],
     "unsupported_content_type", None),
    (Case.TRUNCATE_PAST_END, lambda d: _truncate(_spoken_reply(d), 999_999), "invalid_value", None),
    (Case.RESPONSE_ALREADY_ACTIVE, lambda d: (d.send({"type": "response.create"}), {"type": "response.create"})[1],
     "conversation_already_has_active_response", None),
    (Case.CANCEL_NOT_ACTIVE, {"type": "response.cancel"}, "response_cancel_not_active", "response_id"),
]


@pytest.mark.parametrize(("case", "action", "code", "param"), ERROR_ROWS, ids=[r[0].value for r in ERROR_ROWS])
def test_each_error_carries_openais_code(case: Case, action: Any, code: str, param: str | None) -> None:
    d = Driver(limits=Limits(max_event_bytes=64 * 1024))
    manual(d)
    event = action(d) if callable(action) else action
    if isinstance(event, dict):
        event = json.dumps({**event, "event_id": "evt_client"})
    got = d.send(event)
    errors = [e["error"] for e in got if e["type"] == "error"]
    assert len(errors) == 1, d.types(got)
    error = errors[0]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    assert error["message"]
    if case not in (Case.INVALID_JSON, Case.EVENT_TOO_LARGE):  # refused before it is read
        assert error["event_id"] == "evt_client"
    # the session goes on: a plain text turn still gets its answer
    d.run(10)  # let a response the row started finish
    d.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "still there"}]}})  # fmt: skip
    d.send({"type": "response.create"})
    d.run(10)
    assert d.last("response.done")["response"]["status"] == "completed"


def test_every_error_case_has_a_row() -> None:
    covered = {row[0] for row in ERROR_ROWS} | {Case.SESSION_EXPIRED, Case.RESPONSE_FAILED}  # rows of their own below
    assert covered == set(Case)


def test_an_unknown_item_gets_openais_wording_per_event() -> None:
    d = Driver()
    manual(d)
    messages = [d.send(ev)[0]["error"]["message"] for ev in (
        {"type": "conversation.item.retrieve", "item_id": "item_x"},
        {"type": "conversation.item.delete", "item_id": "item_x"},
        _truncate("item_x", 0),
    )]  # fmt: skip
    assert messages == [
        "Error retrieving item: the item with id 'item_x' does not exist.",
        "Error deleting item: the item with id 'item_x' does not exist.",
        "Error truncating item: the item with id 'item_x' does not exist.",
    ]


def test_a_wrong_json_type_is_described_as_openai_does() -> None:
    d = Driver()
    got = d.send(_session(audio={"input": {"format": "pcm16"}}))
    assert got[0]["error"]["message"] == (
        "Invalid type for 'session.audio.input.format': expected an object, but got a string instead."
    )
    got = d.send(_session(audio={"input": {"turn_detection": {"type": "server_vad", "threshold": "0.5"}}}))
    assert got[0]["error"]["code"] == "invalid_type"  # a number in a string is not coerced


def test_session_expired_row() -> None:
    d = Driver(limits=Limits(max_session_s=3600))
    d.run(3601)
    err = d.last("error")["error"]
    assert (err["code"], err["type"], err["param"]) == ("session_expired", "invalid_request_error", None)
    assert err["message"] == "Your session hit the maximum duration of 60 minutes."


def test_failed_speech_ends_the_response_with_a_server_error() -> None:
    d = Driver()
    manual(d)
    d.proto.receive(parse_client_event(json.dumps({"type": "response.create"})), d.now)
    request = d.proto.speech_requests()[0]
    got = d._collect(d.proto.speech_failed(request.request_id, "espeak-ng crashed", d.now))
    done = next(e for e in got if e["type"] == "response.done")["response"]
    assert done["status"] == "failed"
    error = next(e for e in got if e["type"] == "error")["error"]
    assert (error["type"], error["code"]) == ("server_error", "response_failed")
    assert "espeak-ng crashed" in error["message"]


# ------------------------------------------------------------------ boundaries (read from the imports)

REALTIME = Path(__file__).resolve().parents[1] / "agent" / "realtime"
PURE = ("protocol", "conversation", "usage", "pacing", "errors", "client_events", "vad", "brain", "tool_choice")
IO = {"asyncio", "socket", "time", "datetime", "websockets", "threading", "subprocess", "concurrent", "selectors"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name.split(".")[0] for name in names}


def test_the_realtime_package_never_imports_livekit() -> None:
    for path in REALTIME.glob("*.py"):
        assert "livekit" not in _imports(path), path.name


def test_the_protocol_modules_import_no_asyncio_sockets_or_clock() -> None:
    for name in PURE:
        found = _imports(REALTIME / f"{name}.py") & IO
        assert not found, (name, found)
