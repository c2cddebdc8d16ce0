"""The Realtime session as a pure state machine.

No asyncio, sockets or clock: the shell (``server.py``) passes ``now`` in.

- ``receive(event, now)``: a parsed client event -> server events.
- ``speech_requests()``: text the shell must turn into audio (I/O), drained
  like ``data_to_send()`` in python-websockets; the shell answers with
  ``speech_ready(request_id, pcm, now)``.
- ``tick(now)``: audio deltas that are due, and the session expiry.
- ``next_deadline()``: when ``tick`` next has something to do.

Bad input never raises out of here: it becomes an ``error`` event naming
the offending ``event_id``, and the session goes on (GA Realtime
behaviour). Event order follows what OpenAI sends for a response:
response.created, rate_limits.updated, response.output_item.added,
conversation.item.added, response.content_part.added, deltas,
...done events, response.done.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from openai.types import realtime as rt
from openai.types.realtime.realtime_server_event import ConversationItemRetrieved
from pydantic import BaseModel

from . import audio as audio_codec
from .errors import Case, ProtocolError
from .brain import Brain, BrainInput, Reply, ToolSpec, Turn
from .tool_choice import apply_tool_choice
from .vad import EnergyVad, SpeechStarted, SpeechStopped, VadConfig

MIN_COMMIT_MS = 100  # OpenAI refuses to commit less than 100 ms of audio


@dataclass(frozen=True)
class Limits:
    max_session_s: float | None = 3600.0  # GA sessions last at most 60 minutes
    max_event_bytes: int = 15 * 1024 * 1024
    audio_pace: float = 2.0  # seconds of audio sent per second of wall time
    first_burst_ms: int = 400  # audio sent at once when a reply starts
    chunk_ms: int = 100  # audio per delta


@dataclass(frozen=True)
class TranscriptionRequest:
    """User audio the shell must transcribe (24 kHz int16); answered with
    ``transcription_ready`` or ``transcription_failed``."""

    item_id: str
    pcm: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SpeechRequest:
    request_id: str
    text: str
    voice: str


def default_session(session_id: str, model: str) -> dict[str, Any]:
    return {
        "type": "realtime",
        "id": session_id,
        "object": "realtime.session",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful voice assistant.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "create_response": True,
                    "interrupt_response": True,
                    "idle_timeout_ms": None,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
        },
    }


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _text_tokens(text: str | None) -> int:
    return math.ceil(len(text) / 4) if text else 0


@dataclass
class _Response:
    id: str
    metadata: dict[str, str] | None
    modalities: list[str]
    voice: str
    fmt: str
    in_conversation: bool
    usage_input_text: int
    usage_input_audio: int
    reply: Reply | None = None
    message_id: str | None = None
    transcript: str = ""
    audio: np.ndarray | None = None
    speech_request: str | None = None
    started_at: float | None = None
    sent_samples: int = 0
    sent_words: int = 0
    output: list[BaseModel] = field(default_factory=list)
    params: Any = None  # the response.create parameters, kept until the brain runs
    thinking_until: float | None = None  # waiting for a transcript until then


# How long a response waits for the transcript of the caller's last turn before
# the brain replies without it (the words are what the scripted brain reads).
TRANSCRIPT_WAIT_S = 3.0


class RealtimeProtocol:
    """One Realtime session's state: config, input buffer, conversation, current response."""

    def __init__(
        self,
        *,
        session_id: str,
        brain: Brain,
        now: float,
        model: str = "gpt-realtime",
        limits: Limits = Limits(),
        id_prefix: str | None = None,
        allow_fault: Callable[[str], bool] | None = None,
    ) -> None:
        self.session_id = session_id
        self.brain = brain
        self.limits = limits
        self.closed = False  # set once the session has ended; the shell then closes the socket
        self.drop_requested = False  # fault injection: the shell aborts the connection
        self.closed_by_fault = False  # after a mid-answer drop nothing more is sent
        # Fault injection is decided outside (e.g. once per server for each reply),
        # so a re-asked answer on the new connection is not cut again.
        self._allow_fault = allow_fault or (lambda _key: True)
        self._started_at = now
        self._expires_at = now + limits.max_session_s if limits.max_session_s else None
        self._prefix = id_prefix or session_id[-8:]
        self._counter = 0
        self._session = default_session(session_id, model)
        # Input audio: a buffer (24 kHz int16 chunks) and its position in session audio.
        self._buffer: list[np.ndarray] = []
        self._buffer_samples = 0
        self._audio_ms_total = 0.0
        self._vad: EnergyVad | None = None
        self._vad_item_id: str | None = None
        self._rebuild_vad()
        # Conversation.
        self._items: dict[str, BaseModel] = {}
        self._order: list[str] = []
        self._item_audio_ms: dict[str, int] = {}
        self._assistant_audio: dict[str, np.ndarray] = {}
        self._response: _Response | None = None
        self._speech_out: list[SpeechRequest] = []
        self._transcribe_out: list[TranscriptionRequest] = []
        self._pending_transcripts: set[str] = set()

    # ---- ids and helpers -------------------------------------------------
    def _id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}_{self._prefix}{self._counter:06d}"

    def _ev(self, model: type[BaseModel], **fields: Any) -> BaseModel:
        return model(event_id=self._id("event"), **fields)

    def _error(self, err: ProtocolError) -> BaseModel:
        return self._ev(
            rt.RealtimeErrorEvent,
            type="error",
            error=rt.RealtimeError(
                type=err.type, code=err.code, message=err.message, param=err.param, event_id=err.event_id
            ),
        )

    def error_event(self, err: ProtocolError) -> list[BaseModel]:
        """For errors found by the shell before an event could be parsed."""
        return [self._error(err)]

    @property
    def session(self) -> dict[str, Any]:
        return self._session

    def _session_model(self) -> BaseModel:
        return rt.RealtimeSessionCreateRequest.model_validate(self._session)

    @property
    def _turn_detection(self) -> dict[str, Any] | None:
        return self._session["audio"]["input"].get("turn_detection")

    @property
    def _input_format(self) -> str:
        return self._session["audio"]["input"]["format"].get("type") or "audio/pcm"

    @property
    def _output_format(self) -> str:
        return self._session["audio"]["output"]["format"].get("type") or "audio/pcm"

    def _rebuild_vad(self) -> None:
        td = self._turn_detection
        if not td:
            self._vad = None
            return
        silence = td.get("silence_duration_ms")
        if td.get("type") == "semantic_vad":
            # Semantic VAD waits longer or shorter by "eagerness"; energy stands in for meaning here.
            silence = {"low": 1200, "high": 250}.get(td.get("eagerness") or "auto", 500)
        self._vad = EnergyVad(
            VadConfig(
                threshold=td.get("threshold") if td.get("threshold") is not None else 0.5,
                prefix_padding_ms=td.get("prefix_padding_ms") if td.get("prefix_padding_ms") is not None else 300,
                silence_duration_ms=silence if silence is not None else 500,
            ),
            origin_ms=int(self._audio_ms_total),
        )

    # ---- entry points ----------------------------------------------------
    def start(self) -> list[BaseModel]:
        return [self._ev(rt.SessionCreatedEvent, type="session.created", session=self._session_model())]

    def receive(self, event: BaseModel, now: float) -> list[BaseModel]:
        if self.closed:
            return []
        handler: Callable[[Any, float], list[BaseModel]] = getattr(
            self, "_on_" + event.type.replace(".", "_")  # type: ignore[attr-defined]
        )
        try:
            return handler(event, now)
        except ProtocolError as err:
            if err.event_id is None:
                err.event_id = getattr(event, "event_id", None)
            return [self._error(err)]

    def speech_requests(self) -> list[SpeechRequest]:
        out, self._speech_out = self._speech_out, []
        return out

    def transcription_requests(self) -> list[TranscriptionRequest]:
        out, self._transcribe_out = self._transcribe_out, []
        return out

    def transcription_ready(self, item_id: str, transcript: str, now: float) -> list[BaseModel]:
        """The transcript of a committed user item: stored on the item (later
        responses see it) and sent as delta + completed events."""
        self._pending_transcripts.discard(item_id)
        item = self._items.get(item_id)
        if item is None or self.closed:
            return self._resume_thinking(now)  # deleted meanwhile
        content = [
            part.model_copy(update={"transcript": transcript}) if getattr(part, "type", None) == "input_audio" else part
            for part in item.content  # type: ignore[attr-defined]
        ]
        self._items[item_id] = item.model_copy(update={"content": content})
        seconds = self._item_audio_ms.get(item_id, 0) / 1000
        events = [
            self._ev(
                rt.ConversationItemInputAudioTranscriptionDeltaEvent,
                type="conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=transcript,
            ),
            self._ev(
                rt.ConversationItemInputAudioTranscriptionCompletedEvent,
                type="conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            ),
        ]
        return events + self._resume_thinking(now)

    def transcription_failed(self, item_id: str, message: str, now: float) -> list[BaseModel]:
        self._pending_transcripts.discard(item_id)
        if item_id not in self._items or self.closed:
            return self._resume_thinking(now)
        return self._resume_thinking(now) + [
            self._ev(
                rt.ConversationItemInputAudioTranscriptionFailedEvent,
                type="conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={"type": "transcription_error", "code": "transcription_failed", "message": message},
            )
        ]

    def speech_ready(self, request_id: str, pcm: np.ndarray, now: float) -> list[BaseModel]:
        resp = self._response
        if resp is None or resp.speech_request != request_id:
            return []  # the response was cancelled while its speech was being made
        resp.audio = pcm
        resp.started_at = now
        return self.tick(now)

    def speech_failed(self, request_id: str, message: str, now: float) -> list[BaseModel]:
        resp = self._response
        if resp is None or resp.speech_request != request_id:
            return []
        # The response ends failed, and an error event says why (as OpenAI reports a
        # server error), so a client waiting on it neither hangs nor guesses.
        err = ProtocolError(Case.RESPONSE_FAILED, detail=message)
        details = {"type": err.type, "code": err.code, "message": err.message}
        return self._finish_response(resp, status="failed", error=details) + [self._error(err)]

    def next_deadline(self) -> float | None:
        if self.closed_by_fault:
            return None
        deadlines = []
        if self._expires_at is not None and not self.closed:
            deadlines.append(self._expires_at)
        resp = self._response
        if resp and resp.audio is not None and resp.started_at is not None:
            deadlines.append(self._due_time(resp, resp.sent_samples))
        if resp and resp.thinking_until is not None:
            deadlines.append(resp.thinking_until)
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> list[BaseModel]:
        out: list[BaseModel] = []
        if self.closed_by_fault:
            return out
        if self._expires_at is not None and now >= self._expires_at and not self.closed:
            if self._response is not None:
                out += self._finish_response(self._response, status="cancelled", reason="client_cancelled")
            out.append(
                self._error(ProtocolError(Case.SESSION_EXPIRED, minutes=(self.limits.max_session_s or 0) / 60))
            )
            self.closed = True
            return out
        resp = self._response
        if resp and resp.thinking_until is not None and now >= resp.thinking_until:
            out += self._think(resp)
        resp = self._response
        if resp and resp.audio is not None and resp.started_at is not None:
            out += self._stream_audio(resp, now)
        return out

    # ---- session ---------------------------------------------------------
    def _on_session_update(self, event: rt.SessionUpdateEvent, now: float) -> list[BaseModel]:
        update = event.session.model_dump(exclude_unset=True)
        if update.get("type") not in (None, "realtime"):
            raise ProtocolError(Case.UNSUPPORTED_SESSION_TYPE)
        update.pop("type", None)
        old_td = self._turn_detection
        self._session = _merge(self._session, update)
        if "audio" in update and self._turn_detection != old_td:
            self._rebuild_vad()
        return [self._ev(rt.SessionUpdatedEvent, type="session.updated", session=self._session_model())]

    # ---- input audio -----------------------------------------------------
    def _on_input_audio_buffer_append(self, event: rt.InputAudioBufferAppendEvent, now: float) -> list[BaseModel]:
        try:
            raw = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(Case.AUDIO_NOT_BASE64) from None
        try:
            pcm = audio_codec.decode(raw, self._input_format)
        except audio_codec.AudioFormatError as e:
            raise ProtocolError(Case.AUDIO_NOT_DECODABLE, detail=str(e), format=self._input_format) from None
        out: list[BaseModel] = []
        self._buffer.append(pcm)
        self._buffer_samples += pcm.size
        self._audio_ms_total += pcm.size * 1000 / audio_codec.SAMPLE_RATE
        if self._vad is not None:
            for vad_event in self._vad.process(pcm):
                if isinstance(vad_event, SpeechStarted):
                    out += self._on_speech_started(vad_event.audio_start_ms)
                elif isinstance(vad_event, SpeechStopped):
                    out += self._on_speech_stopped(vad_event.audio_end_ms, now)
            if not self._vad.in_speech:
                self._trim_buffer()
        return out

    def _trim_buffer(self) -> None:
        """Outside a turn, keep only what prefix padding may need."""
        td = self._turn_detection or {}
        keep = int(((td.get("prefix_padding_ms") or 300) + 200) * audio_codec.SAMPLE_RATE / 1000)
        if self._buffer_samples > 4 * keep:
            merged = np.concatenate(self._buffer)[-keep:]
            self._buffer, self._buffer_samples = [merged], merged.size

    def _on_speech_started(self, audio_start_ms: int) -> list[BaseModel]:
        item_id = self._id("item")
        self._vad_item_id = item_id
        out = [
            self._ev(
                rt.InputAudioBufferSpeechStartedEvent,
                type="input_audio_buffer.speech_started",
                audio_start_ms=audio_start_ms,
                item_id=item_id,
            )
        ]
        td = self._turn_detection or {}
        if self._response is not None and td.get("interrupt_response", True):
            out += self._finish_response(self._response, status="cancelled", reason="turn_detected")
        return out

    def _on_speech_stopped(self, audio_end_ms: int, now: float) -> list[BaseModel]:
        item_id = self._vad_item_id or self._id("item")
        self._vad_item_id = None
        out = [
            self._ev(
                rt.InputAudioBufferSpeechStoppedEvent,
                type="input_audio_buffer.speech_stopped",
                audio_end_ms=audio_end_ms,
                item_id=item_id,
            )
        ]
        out += self._commit(item_id)
        td = self._turn_detection or {}
        if td.get("create_response", True) and self._response is None:
            out += self._start_response(None, now)
        return out

    def _on_input_audio_buffer_commit(self, event: rt.InputAudioBufferCommitEvent, now: float) -> list[BaseModel]:
        ms = self._buffer_samples * 1000 / audio_codec.SAMPLE_RATE
        if ms < MIN_COMMIT_MS:
            raise ProtocolError(Case.COMMIT_TOO_SMALL, minimum=MIN_COMMIT_MS, have=ms)
        item_id = self._vad_item_id or self._id("item")
        self._vad_item_id = None
        if self._vad is not None:
            self._vad.reset()
        return self._commit(item_id)

    def _commit(self, item_id: str) -> list[BaseModel]:
        audio_ms = int(self._buffer_samples * 1000 / audio_codec.SAMPLE_RATE)
        if self._session["audio"]["input"].get("transcription") and self._buffer:
            self._transcribe_out.append(TranscriptionRequest(item_id, np.concatenate(self._buffer)))
            self._pending_transcripts.add(item_id)
        self._buffer, self._buffer_samples = [], 0
        previous = self._order[-1] if self._order else None
        item = rt.RealtimeConversationItemUserMessage(
            id=item_id,
            type="message",
            role="user",
            status="completed",
            object="realtime.item",
            content=[{"type": "input_audio", "transcript": None}],
        )
        self._insert(item, previous)
        self._item_audio_ms[item_id] = audio_ms
        return [
            self._ev(
                rt.InputAudioBufferCommittedEvent,
                type="input_audio_buffer.committed",
                item_id=item_id,
                previous_item_id=previous,
            ),
            self._ev(rt.ConversationItemAdded, type="conversation.item.added", item=item, previous_item_id=previous),
            self._ev(rt.ConversationItemDone, type="conversation.item.done", item=item, previous_item_id=previous),
        ]

    def _on_input_audio_buffer_clear(self, event: BaseModel, now: float) -> list[BaseModel]:
        self._buffer, self._buffer_samples = [], 0
        self._vad_item_id = None
        if self._vad is not None:
            self._vad.reset()
        return [self._ev(rt.InputAudioBufferClearedEvent, type="input_audio_buffer.cleared")]

    def _on_output_audio_buffer_clear(self, event: BaseModel, now: float) -> list[BaseModel]:
        raise ProtocolError(Case.OUTPUT_BUFFER_ON_WEBSOCKET)

    # ---- conversation ----------------------------------------------------
    def _insert(self, item: BaseModel, previous_item_id: str | None) -> None:
        item_id = item.id  # type: ignore[attr-defined]
        self._items[item_id] = item
        if previous_item_id is None:
            self._order.append(item_id)
        elif previous_item_id == "root":
            self._order.insert(0, item_id)
        else:
            self._order.insert(self._order.index(previous_item_id) + 1, item_id)

    def _on_conversation_item_create(self, event: rt.ConversationItemCreateEvent, now: float) -> list[BaseModel]:
        item = event.item
        prev = event.previous_item_id
        if prev is not None and prev != "root" and prev not in self._items:
            raise ProtocolError(Case.PREVIOUS_ITEM_NOT_FOUND, item_id=prev)
        item_id = getattr(item, "id", None) or self._id("item")
        if item_id in self._items:
            # livekit-agents recognises this code as "already there" (a replay after a reconnect)
            raise ProtocolError(Case.DUPLICATE_ITEM_ID, item_id=item_id)
        if item.type not in ("message", "function_call", "function_call_output"):
            raise ProtocolError(Case.ITEM_TYPE_UNSUPPORTED, item_type=item.type)
        fields = item.model_dump(exclude_unset=True)
        fields.update(id=item_id, object="realtime.item", status="completed")
        if item.type == "function_call_output":
            fields.pop("status", None)
        stored = type(item).model_validate(fields)
        audio_ms = 0
        if item.type == "message":
            for part in getattr(item, "content", []) or []:
                if getattr(part, "type", None) == "input_audio" and getattr(part, "audio", None):
                    try:
                        raw = base64.b64decode(part.audio, validate=True)
                        audio_ms = int(audio_codec.decode(raw, self._input_format).size * 1000 / audio_codec.SAMPLE_RATE)
                    except (binascii.Error, ValueError):
                        raise ProtocolError(Case.ITEM_AUDIO_INVALID) from None
        anchor = prev if prev is not None else (self._order[-1] if self._order else None)
        self._insert(stored, prev)
        self._item_audio_ms[item_id] = audio_ms
        return [
            self._ev(rt.ConversationItemAdded, type="conversation.item.added", item=stored, previous_item_id=anchor),
            self._ev(rt.ConversationItemDone, type="conversation.item.done", item=stored, previous_item_id=anchor),
        ]

    def _require_item(self, item_id: str, missing: Case) -> BaseModel:
        item = self._items.get(item_id)
        if item is None:
            raise ProtocolError(missing, item_id=item_id)
        return item

    def _on_conversation_item_retrieve(self, event: rt.ConversationItemRetrieveEvent, now: float) -> list[BaseModel]:
        item = self._require_item(event.item_id, Case.RETRIEVE_UNKNOWN_ITEM)
        return [self._ev(ConversationItemRetrieved, type="conversation.item.retrieved", item=item)]

    def _on_conversation_item_delete(self, event: rt.ConversationItemDeleteEvent, now: float) -> list[BaseModel]:
        self._require_item(event.item_id, Case.DELETE_UNKNOWN_ITEM)
        del self._items[event.item_id]
        self._order.remove(event.item_id)
        self._item_audio_ms.pop(event.item_id, None)
        self._assistant_audio.pop(event.item_id, None)
        return [self._ev(rt.ConversationItemDeletedEvent, type="conversation.item.deleted", item_id=event.item_id)]

    def _on_conversation_item_truncate(self, event: rt.ConversationItemTruncateEvent, now: float) -> list[BaseModel]:
        item = self._require_item(event.item_id, Case.TRUNCATE_UNKNOWN_ITEM)
        if getattr(item, "role", None) != "assistant":
            raise ProtocolError(Case.TRUNCATE_NOT_MODEL_AUDIO)
        if event.audio_end_ms < 0:
            raise ProtocolError(Case.BELOW_MINIMUM, param="audio_end_ms", minimum=0, value=event.audio_end_ms)
        pcm = self._assistant_audio.get(event.item_id, np.zeros(0, dtype=np.int16))
        duration_ms = int(pcm.size * 1000 / audio_codec.SAMPLE_RATE)
        if event.audio_end_ms > duration_ms:
            raise ProtocolError(Case.TRUNCATE_PAST_END, duration_ms=duration_ms, audio_end_ms=event.audio_end_ms)
        keep = int(event.audio_end_ms * audio_codec.SAMPLE_RATE / 1000)
        self._assistant_audio[event.item_id] = pcm[:keep]
        content = list(item.content)  # type: ignore[attr-defined]
        if content and duration_ms:
            part = content[0]
            transcript = part.transcript or ""
            words = transcript.split()
            kept = words[: round(len(words) * event.audio_end_ms / duration_ms)]
            content[0] = part.model_copy(update={"transcript": " ".join(kept)})
            self._items[event.item_id] = item.model_copy(update={"content": content})
        return [
            self._ev(
                rt.ConversationItemTruncatedEvent,
                type="conversation.item.truncated",
                item_id=event.item_id,
                content_index=event.content_index,
                audio_end_ms=event.audio_end_ms,
            )
        ]

    # ---- responses -------------------------------------------------------
    def _on_response_create(self, event: rt.ResponseCreateEvent, now: float) -> list[BaseModel]:
        if self._response is not None:
            raise ProtocolError(Case.RESPONSE_ALREADY_ACTIVE, response_id=self._response.id)
        return self._start_response(event.response, now)

    def _on_response_cancel(self, event: rt.ResponseCancelEvent, now: float) -> list[BaseModel]:
        resp = self._response
        if resp is None or (event.response_id and event.response_id != resp.id):
            raise ProtocolError(Case.CANCEL_NOT_ACTIVE)
        return self._finish_response(resp, status="cancelled", reason="client_cancelled")

    def _brain_input(self, params: rt.RealtimeResponseCreateParams | None) -> BrainInput:
        turns: list[Turn] = []
        for item_id in self._order:
            item = self._items[item_id]
            if item.type == "message":  # type: ignore[attr-defined]
                texts = []
                for part in item.content:  # type: ignore[attr-defined]
                    text = getattr(part, "text", None) or getattr(part, "transcript", None)
                    if text:
                        texts.append(text)
                turns.append(
                    Turn(
                        kind="message",
                        role=item.role,  # type: ignore[attr-defined]
                        text=" ".join(texts) or None,
                        audio_ms=self._item_audio_ms.get(item_id, 0),
                        complete=getattr(item, "status", None) != "incomplete",
                    )
                )
            elif item.type == "function_call":  # type: ignore[attr-defined]
                turns.append(Turn(kind="function_call", role="assistant", name=item.name, arguments=item.arguments, call_id=item.call_id))  # type: ignore[attr-defined]
            elif item.type == "function_call_output":  # type: ignore[attr-defined]
                turns.append(Turn(kind="function_call_output", role="tool", call_id=item.call_id, output=item.output))  # type: ignore[attr-defined]
        tools_src = params.tools if params is not None and params.tools is not None else self._session.get("tools") or []
        tools = []
        for t in tools_src:
            t = t if isinstance(t, dict) else t.model_dump(exclude_unset=True)
            if t.get("type", "function") == "function" and t.get("name"):
                tools.append(ToolSpec(t["name"], t.get("description") or "", t.get("parameters") or {}))
        choice: Any = params.tool_choice if params is not None and params.tool_choice is not None else self._session.get("tool_choice", "auto")
        if not isinstance(choice, str):
            choice = choice if isinstance(choice, dict) else choice.model_dump()
            choice = choice.get("name") or "auto"
        return BrainInput(
            turns=tuple(turns),
            instructions=self._session.get("instructions") or "",
            response_instructions=params.instructions if params is not None else None,
            tools=tuple(tools),
            tool_choice=choice,
        )

    def _input_usage(self) -> tuple[int, int]:
        text = _text_tokens(self._session.get("instructions"))
        audio = 0
        for item_id in self._order:
            item = self._items[item_id]
            role = getattr(item, "role", None)
            if role == "user":
                # User audio is 1 token per 100 ms; assistant audio 1 token per 50 ms.
                audio += math.ceil(self._item_audio_ms.get(item_id, 0) / 100)
            elif role == "assistant" and item_id in self._assistant_audio:
                audio += math.ceil(self._assistant_audio[item_id].size * 1000 / audio_codec.SAMPLE_RATE / 50)
            for part in getattr(item, "content", None) or []:
                text += _text_tokens(getattr(part, "text", None) or getattr(part, "transcript", None))
            text += _text_tokens(getattr(item, "arguments", None)) + _text_tokens(getattr(item, "output", None))
        return text, audio

    def _start_response(self, params: rt.RealtimeResponseCreateParams | None, now: float) -> list[BaseModel]:
        modalities = (params.output_modalities if params is not None and params.output_modalities else None) or self._session.get("output_modalities") or ["audio"]
        voice = self._session["audio"]["output"].get("voice") or "marin"
        in_conv = not (params is not None and params.conversation == "none")
        text_tokens, audio_tokens = self._input_usage()
        resp = _Response(
            id=self._id("resp"),
            metadata=params.metadata if params is not None else None,
            modalities=list(modalities),
            voice=voice,
            fmt=self._output_format,
            in_conversation=in_conv,
            usage_input_text=text_tokens,
            usage_input_audio=audio_tokens,
        )
        self._response = resp
        out = [
            self._ev(rt.ResponseCreatedEvent, type="response.created", response=self._response_model(resp, "in_progress")),
            self._ev(
                rt.RateLimitsUpdatedEvent,
                type="rate_limits.updated",
                rate_limits=[
                    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                    {"name": "tokens", "limit": 40000, "remaining": 40000 - text_tokens - audio_tokens, "reset_seconds": 0.3},
                ],
            ),
        ]
        resp.params = params
        if self._pending_transcripts and self._order and self._order[-1] in self._pending_transcripts:
            resp.thinking_until = now + TRANSCRIPT_WAIT_S
            return out
        return out + self._think(resp)

    def _resume_thinking(self, now: float) -> list[BaseModel]:
        resp = self._response
        if resp is None or resp.thinking_until is None:
            return []
        if self._order and self._order[-1] in self._pending_transcripts:
            return []
        return self._think(resp)

    def _think(self, resp: _Response) -> list[BaseModel]:
        """Ask the brain, then start the message (audio is made by the shell) or the calls."""
        resp.thinking_until = None
        inp = self._brain_input(resp.params)
        resp.reply = apply_tool_choice(self.brain.reply(inp), inp)
        if resp.reply.say:
            return self._open_message(resp)
        return self._finish_response(resp, status="completed")

    def _response_model(self, resp: _Response, status: str, **extra: Any) -> rt.RealtimeResponse:
        return rt.RealtimeResponse(
            id=resp.id,
            object="realtime.response",
            status=status,
            status_details=extra.get("status_details"),
            output=extra.get("output", []),
            conversation_id=self.session_id.replace("sess_", "conv_") if resp.in_conversation else None,
            output_modalities=resp.modalities,
            max_output_tokens=self._session.get("max_output_tokens", "inf"),
            audio={"output": {"format": {"type": resp.fmt, **({"rate": 24000} if resp.fmt == "audio/pcm" else {})}, "voice": resp.voice}},
            usage=extra.get("usage"),
            metadata=resp.metadata,
        )

    def _message_item(self, resp: _Response, status: str) -> rt.RealtimeConversationItemAssistantMessage:
        audio_mode = "audio" in resp.modalities
        part: dict[str, Any] = (
            {"type": "output_audio", "transcript": resp.transcript if status != "in_progress" else ""}
            if audio_mode
            else {"type": "output_text", "text": resp.transcript if status != "in_progress" else ""}
        )
        return rt.RealtimeConversationItemAssistantMessage(
            id=resp.message_id, type="message", role="assistant", status=status, object="realtime.item", content=[part]
        )

    def _open_message(self, resp: _Response) -> list[BaseModel]:
        assert resp.reply is not None and resp.reply.say
        resp.message_id = self._id("item")
        item = self._message_item(resp, "in_progress")
        previous = self._order[-1] if self._order else None
        if resp.in_conversation:
            self._insert(item, previous)
        audio_mode = "audio" in resp.modalities
        out = [
            self._ev(rt.ResponseOutputItemAddedEvent, type="response.output_item.added", response_id=resp.id, output_index=0, item=item),
            self._ev(rt.ConversationItemAdded, type="conversation.item.added", item=item, previous_item_id=previous),
            self._ev(
                rt.ResponseContentPartAddedEvent,
                type="response.content_part.added",
                response_id=resp.id,
                item_id=resp.message_id,
                output_index=0,
                content_index=0,
                part={"type": "audio", "transcript": ""} if audio_mode else {"type": "text", "text": ""},
            ),
        ]
        if audio_mode:
            resp.speech_request = self._id("speech")
            self._speech_out.append(SpeechRequest(resp.speech_request, resp.reply.say, resp.voice))
            return out
        resp.transcript = resp.reply.say
        for word in _words(resp.reply.say):
            out.append(
                self._ev(
                    rt.ResponseTextDeltaEvent,
                    type="response.output_text.delta",
                    response_id=resp.id,
                    item_id=resp.message_id,
                    output_index=0,
                    content_index=0,
                    delta=word,
                )
            )
        return out + self._finish_response(resp, status="completed")

    def _due_time(self, resp: _Response, samples: int) -> float:
        assert resp.started_at is not None
        burst = self.limits.first_burst_ms * audio_codec.SAMPLE_RATE / 1000
        ahead = max(0.0, samples - burst)
        return resp.started_at + ahead / audio_codec.SAMPLE_RATE / self.limits.audio_pace

    def _stream_audio(self, resp: _Response, now: float) -> list[BaseModel]:
        assert resp.audio is not None
        out: list[BaseModel] = []
        chunk = int(self.limits.chunk_ms * audio_codec.SAMPLE_RATE / 1000)
        words = _words(resp.reply.say if resp.reply else "")
        total = resp.audio.size
        while resp.sent_samples < total and self._due_time(resp, resp.sent_samples) <= now:
            end = min(total, resp.sent_samples + chunk)
            # Transcript deltas run alongside the audio, word by word.
            words_due = math.ceil(len(words) * end / total) if total else len(words)
            while resp.sent_words < words_due:
                delta = words[resp.sent_words]
                resp.transcript += delta
                resp.sent_words += 1
                out.append(
                    self._ev(
                        rt.ResponseAudioTranscriptDeltaEvent,
                        type="response.output_audio_transcript.delta",
                        response_id=resp.id,
                        item_id=resp.message_id,
                        output_index=0,
                        content_index=0,
                        delta=delta,
                    )
                )
            data = audio_codec.encode(resp.audio[resp.sent_samples : end], resp.fmt)
            out.append(
                self._ev(
                    rt.ResponseAudioDeltaEvent,
                    type="response.output_audio.delta",
                    response_id=resp.id,
                    item_id=resp.message_id,
                    output_index=0,
                    content_index=0,
                    delta=base64.b64encode(data).decode("ascii"),
                )
            )
            resp.sent_samples = end
            if (
                resp.reply is not None and resp.reply.drop_connection and resp.sent_samples * 2 >= total
                and self._allow_fault(resp.reply.say or "")
            ):  # fmt: skip
                self.drop_requested = True  # a spoken answer: cut half-way through it
                self.closed_by_fault = True
                return out
        if resp.sent_samples >= total:
            out += self._finish_response(resp, status="completed")
        return out

    def _finish_response(
        self,
        resp: _Response,
        *,
        status: str,
        reason: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> list[BaseModel]:
        out: list[BaseModel] = []
        output: list[BaseModel] = []
        audio_ms = 0
        if resp.message_id is not None:
            audio_mode = "audio" in resp.modalities
            sent = resp.audio[: resp.sent_samples] if resp.audio is not None else np.zeros(0, dtype=np.int16)
            audio_ms = int(sent.size * 1000 / audio_codec.SAMPLE_RATE)
            common = dict(response_id=resp.id, item_id=resp.message_id, output_index=0, content_index=0)
            if audio_mode and status == "completed":
                out.append(self._ev(rt.ResponseAudioDoneEvent, type="response.output_audio.done", **common))
                out.append(
                    self._ev(rt.ResponseAudioTranscriptDoneEvent, type="response.output_audio_transcript.done", transcript=resp.transcript, **common)
                )
            elif status == "completed":
                out.append(self._ev(rt.ResponseTextDoneEvent, type="response.output_text.done", text=resp.transcript, **common))
            out.append(
                self._ev(
                    rt.ResponseContentPartDoneEvent,
                    type="response.content_part.done",
                    part={"type": "audio", "transcript": resp.transcript} if audio_mode else {"type": "text", "text": resp.transcript},
                    **common,
                )
            )
            item = self._message_item(resp, "completed" if status == "completed" else "incomplete")
            if resp.in_conversation and resp.message_id in self._items:
                self._items[resp.message_id] = item
                self._assistant_audio[resp.message_id] = sent
            out.append(self._ev(rt.ResponseOutputItemDoneEvent, type="response.output_item.done", response_id=resp.id, output_index=0, item=item))
            if resp.in_conversation:
                out.append(self._ev(rt.ConversationItemDone, type="conversation.item.done", item=item, previous_item_id=self._previous_of(resp.message_id)))
            output.append(item)
        if status == "completed" and resp.reply is not None:
            for call in resp.reply.calls:
                arguments = call.raw_arguments if call.raw_arguments is not None else json.dumps(call.arguments)
                out += self._emit_call(resp, call.name, arguments, len(output), output)
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": reason}
        elif status == "failed":
            details = {"type": "failed", "error": error}
        out_text = _text_tokens(resp.transcript) + sum(_text_tokens(getattr(o, "arguments", None)) for o in output)
        out_audio = math.ceil(audio_ms / 50)
        usage = {
            "total_tokens": resp.usage_input_text + resp.usage_input_audio + out_text + out_audio,
            "input_tokens": resp.usage_input_text + resp.usage_input_audio,
            "output_tokens": out_text + out_audio,
            "input_token_details": {
                "text_tokens": resp.usage_input_text,
                "audio_tokens": resp.usage_input_audio,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }
        out.append(
            self._ev(
                rt.ResponseDoneEvent,
                type="response.done",
                response=self._response_model(resp, status, status_details=details, output=output, usage=usage),
            )
        )
        if self._response is resp:
            self._response = None
        if (
            status == "completed" and resp.reply is not None and resp.reply.drop_connection and resp.message_id is None
            and self._allow_fault(",".join(c.name + json.dumps(c.arguments) for c in resp.reply.calls))
        ):  # fmt: skip
            self.drop_requested = True  # a call-only response: cut right after the call
        return out

    def _previous_of(self, item_id: str | None) -> str | None:
        if item_id not in self._order:
            return None
        idx = self._order.index(item_id)
        return self._order[idx - 1] if idx > 0 else None

    def _emit_call(self, resp: _Response, name: str, arguments: str, index: int, output: list[BaseModel]) -> list[BaseModel]:
        item_id, call_id = self._id("item"), self._id("call")
        in_progress = rt.RealtimeConversationItemFunctionCall(
            id=item_id, type="function_call", status="in_progress", object="realtime.item", name=name, call_id=call_id, arguments=""
        )
        done = in_progress.model_copy(update={"status": "completed", "arguments": arguments})
        previous = self._order[-1] if self._order else None
        if resp.in_conversation:
            self._insert(done, previous)
        common = dict(response_id=resp.id, item_id=item_id, output_index=index, call_id=call_id)
        output.append(done)
        return [
            self._ev(rt.ResponseOutputItemAddedEvent, type="response.output_item.added", response_id=resp.id, output_index=index, item=in_progress),
            self._ev(rt.ConversationItemAdded, type="conversation.item.added", item=in_progress, previous_item_id=previous),
            self._ev(rt.ResponseFunctionCallArgumentsDeltaEvent, type="response.function_call_arguments.delta", delta=arguments, **common),
            self._ev(rt.ResponseFunctionCallArgumentsDoneEvent, type="response.function_call_arguments.done", arguments=arguments, name=name, **common),
            self._ev(rt.ResponseOutputItemDoneEvent, type="response.output_item.done", response_id=resp.id, output_index=index, item=done),
            self._ev(rt.ConversationItemDone, type="conversation.item.done", item=done, previous_item_id=previous),
        ]


def _words(text: str) -> list[str]:
    """Split keeping the spaces, so that the deltas join back into the text."""
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]
