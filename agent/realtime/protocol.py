"""The Realtime session as a pure state machine.

No asyncio, sockets or clock: the shell (``server.py``) passes ``now`` in.

- ``receive(event, now)``: a parsed client event -> server events.
- ``speech_requests()`` / ``transcription_requests()``: work the shell must
  do (I/O), drained like ``data_to_send()`` in python-websockets; the shell
  answers with ``speech_ready``/``speech_failed`` and
  ``transcription_ready``/``transcription_failed``.
- ``tick(now)``: what is due (audio deltas, a transcript wait that ran out,
  the session expiry); ``next_deadline()``: when ``tick`` next has work.

What it owns: the session config (the ``openai`` package's typed session
model, replaced by a validated copy on each update), the input buffer and
turn detection, and the current response with its phase. The conversation,
usage counting and audio pacing live in their own modules.

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
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from openai.types import realtime as rt
from openai.types.realtime.realtime_server_event import ConversationItemRetrieved
from pydantic import BaseModel

from . import audio as audio_codec
from .brain import Brain, BrainInput, Reply, ToolSpec
from .client_events import ClientEvent
from .conversation import Conversation, Item
from .errors import Case, ProtocolError
from .pacing import AudioPacer, Pace, words_of
from .tool_choice import apply_tool_choice
from .usage import InputUsage, audio_out_tokens, input_usage, rate_limits, response_usage, text_tokens
from .vad import EnergyVad, SpeechStarted, SpeechStopped, VadConfig

MIN_COMMIT_MS = 100  # OpenAI refuses to commit less than 100 ms of audio

# How long a response waits for the transcript of the caller's last turn before
# the brain replies without it (the words are what the scripted brain reads).
# PocketSphinx decodes a 3-4 s turn in 1.9-2.5 s on the 2-core CI machine at a
# load of 2 (measured), slower when busy: with 3 s here the suite's transcript
# tests answered "I heard you" now and then. The wait ends as soon as the
# transcript arrives, so a longer bound costs nothing when decoding is quick.
TRANSCRIPT_WAIT_S = 6.0


@dataclass(frozen=True)
class Limits:
    max_session_s: float | None = 3600.0  # GA sessions last at most 60 minutes
    max_event_bytes: int = 15 * 1024 * 1024
    audio_pace: float = 2.0  # seconds of audio sent per second of wall time
    first_burst_ms: int = 400  # audio sent at once when a reply starts
    chunk_ms: int = 100  # audio per delta
    transcript_wait_s: float = TRANSCRIPT_WAIT_S  # a response's wait for the caller's last words

    @property
    def pace(self) -> Pace:
        return Pace(self.audio_pace, self.first_burst_ms, self.chunk_ms)


@dataclass(frozen=True)
class TranscriptionRequest:
    """User audio the shell must transcribe (24 kHz int16); answered with
    ``transcription_ready`` or ``transcription_failed``. ``streamed``: the same
    audio went out as :class:`TranscriptionFeed` of this item while the caller
    spoke, so the shell may just finish that decode (``pcm`` is the fallback)."""

    item_id: str
    pcm: np.ndarray = field(repr=False)
    streamed: bool = False


@dataclass(frozen=True)
class TranscriptionFeed:
    """Audio of a turn still in progress (server VAD), for decoding while the
    caller speaks: the buffer at the turn's onset, then each append, in order.
    ``pcm`` None: the turn was dropped before its commit (the stream is cancelled)."""

    item_id: str
    pcm: np.ndarray | None = field(repr=False)


@dataclass(frozen=True)
class SpeechRequest:
    request_id: str
    text: str
    voice: str


def default_session(session_id: str, model: str) -> rt.RealtimeSessionCreateRequest:
    # id, object and model are what OpenAI reports in session.created; the
    # request model keeps them as extras.
    return rt.RealtimeSessionCreateRequest.model_validate({
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
    })  # fmt: skip


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """session.update changes only the fields it names, nested ones included."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _setting(td: BaseModel, name: str, default: Any) -> Any:
    value = getattr(td, name, None)
    return default if value is None else value


def _flag(td: BaseModel | None, name: str) -> bool:
    """create_response / interrupt_response: on unless the session turned them off."""
    if td is None or name not in td.model_fields_set and name not in (td.model_extra or {}):
        return True
    return bool(getattr(td, name))


class Phase(Enum):
    """Where a response is. Transitions: WAITING_FOR_TRANSCRIPT -> (brain) ->
    SYNTHESIZING -> STREAMING -> DONE, or straight to DONE (text, calls only,
    cancelled, failed)."""

    WAITING_FOR_TRANSCRIPT = "waiting_for_transcript"  # the caller's last words are still being transcribed
    SYNTHESIZING = "synthesizing"  # the shell is turning the reply into audio
    STREAMING = "streaming"  # audio and transcript deltas go out as they fall due
    DONE = "done"


@dataclass
class _Response:
    id: str
    params: rt.RealtimeResponseCreateParams | None
    metadata: dict[str, str] | None
    modalities: list[str]
    voice: str
    fmt: str
    in_conversation: bool
    usage_in: InputUsage
    phase: Phase = Phase.WAITING_FOR_TRANSCRIPT
    transcript_deadline: float = 0.0  # WAITING_FOR_TRANSCRIPT: the brain answers without it then
    reply: Reply | None = None  # set once the brain has answered
    message_id: str | None = None  # the spoken or written message, if any
    speech_request: str | None = None  # SYNTHESIZING: the request the shell answers
    pacer: AudioPacer | None = None  # STREAMING
    transcript: str = ""

    @property
    def audio_mode(self) -> bool:
        return "audio" in self.modalities

    def sent_audio(self) -> np.ndarray:
        return self.pacer.sent() if self.pacer is not None else np.zeros(0, dtype=np.int16)


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
    ) -> None:
        self.session_id = session_id
        self.brain = brain
        self.limits = limits
        self.closed = False  # set once the session has ended; the shell then closes the socket
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
        self._conversation = Conversation()
        self._response: _Response | None = None
        self._speech_out: list[SpeechRequest] = []
        self._transcribe_out: list[TranscriptionRequest | TranscriptionFeed] = []
        self._pending_transcripts: set[str] = set()
        self._streaming: str | None = None  # the turn whose audio goes out as TranscriptionFeed

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
    def session(self) -> rt.RealtimeSessionCreateRequest:
        return self._session

    @property
    def _input(self) -> rt.RealtimeAudioConfigInput:
        assert self._session.audio is not None and self._session.audio.input is not None
        return self._session.audio.input

    @property
    def _output(self) -> rt.RealtimeAudioConfigOutput:
        assert self._session.audio is not None and self._session.audio.output is not None
        return self._session.audio.output

    @property
    def _turn_detection(self) -> rt.realtime_audio_input_turn_detection.RealtimeAudioInputTurnDetection | None:
        return self._input.turn_detection

    @property
    def _input_format(self) -> str:
        return (self._input.format.type if self._input.format else None) or "audio/pcm"

    @property
    def _output_format(self) -> str:
        return (self._output.format.type if self._output.format else None) or "audio/pcm"

    def _rebuild_vad(self) -> None:
        td = self._turn_detection
        if td is None:
            self._vad = None
            return
        # Fields a session never set (or that the other VAD type carries over from a
        # merged update) read as the server_vad defaults.
        silence = _setting(td, "silence_duration_ms", 500)
        if td.type == "semantic_vad":
            # Semantic VAD waits longer or shorter by "eagerness"; energy stands in for meaning here.
            silence = {"low": 1200, "high": 250}.get(td.eagerness or "auto", 500)
        self._vad = EnergyVad(
            VadConfig(
                threshold=_setting(td, "threshold", 0.5),
                prefix_padding_ms=_setting(td, "prefix_padding_ms", 300),
                silence_duration_ms=silence,
            ),
            origin_ms=int(self._audio_ms_total),
        )

    # ---- entry points ----------------------------------------------------
    def start(self) -> list[BaseModel]:
        return [self._ev(rt.SessionCreatedEvent, type="session.created", session=self._session)]

    def receive(self, event: ClientEvent, now: float) -> list[BaseModel]:
        if self.closed:
            return []
        try:
            return self._dispatch(event, now)
        except ProtocolError as err:
            if err.event_id is None:
                err.event_id = event.event_id
            return [self._error(err)]

    def _dispatch(self, event: ClientEvent, now: float) -> list[BaseModel]:
        match event:
            case rt.SessionUpdateEvent():
                return self._session_update(event)
            case rt.InputAudioBufferAppendEvent():
                return self._append(event, now)
            case rt.InputAudioBufferCommitEvent():
                return self._commit_buffer()
            case rt.InputAudioBufferClearEvent():
                return self._clear_buffer()
            case rt.OutputAudioBufferClearEvent():
                raise ProtocolError(Case.OUTPUT_BUFFER_ON_WEBSOCKET)
            case rt.ConversationItemCreateEvent():
                return self._create_item(event)
            case rt.ConversationItemRetrieveEvent():
                item = self._conversation.require(event.item_id, Case.RETRIEVE_UNKNOWN_ITEM)
                return [self._ev(ConversationItemRetrieved, type="conversation.item.retrieved", item=item)]
            case rt.ConversationItemDeleteEvent():
                self._conversation.delete(event.item_id)
                return [self._ev(rt.ConversationItemDeletedEvent, type="conversation.item.deleted", item_id=event.item_id)]
            case rt.ConversationItemTruncateEvent():
                return self._truncate(event)
            case rt.ResponseCreateEvent():
                if self._response is not None:
                    raise ProtocolError(Case.RESPONSE_ALREADY_ACTIVE, response_id=self._response.id)
                return self._start_response(event.response, now)
            case rt.ResponseCancelEvent():
                resp = self._response
                if resp is None or (event.response_id and event.response_id != resp.id):
                    raise ProtocolError(Case.CANCEL_NOT_ACTIVE)
                return self._finish_response(resp, status="cancelled", reason="client_cancelled")

    def speech_requests(self) -> list[SpeechRequest]:
        out, self._speech_out = self._speech_out, []
        return out

    def transcription_requests(self) -> list[TranscriptionRequest | TranscriptionFeed]:
        out, self._transcribe_out = self._transcribe_out, []
        return out

    def transcription_ready(self, item_id: str, transcript: str, now: float) -> list[BaseModel]:
        """The transcript of a committed user item: stored on the item (later
        responses see it) and sent as delta + completed events."""
        self._pending_transcripts.discard(item_id)
        if self.closed or not self._conversation.set_transcript(item_id, transcript):
            return self._resume_thinking()  # deleted meanwhile
        seconds = self._conversation.audio_ms(item_id) / 1000
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
        return events + self._resume_thinking()

    def transcription_failed(self, item_id: str, message: str, now: float) -> list[BaseModel]:
        self._pending_transcripts.discard(item_id)
        if item_id not in self._conversation or self.closed:
            return self._resume_thinking()
        return self._resume_thinking() + [
            self._ev(
                rt.ConversationItemInputAudioTranscriptionFailedEvent,
                type="conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={"type": "transcription_error", "code": "transcription_failed", "message": message},
            )
        ]

    def _synthesizing(self, request_id: str) -> _Response | None:
        resp = self._response
        if resp is None or resp.phase is not Phase.SYNTHESIZING or resp.speech_request != request_id:
            return None  # the response was cancelled while its speech was being made
        return resp

    def speech_ready(self, request_id: str, pcm: np.ndarray, now: float) -> list[BaseModel]:
        resp = self._synthesizing(request_id)
        if resp is None:
            return []
        say = resp.reply.say if resp.reply is not None else None
        resp.pacer = AudioPacer(pcm, say or "", now, self.limits.pace)
        resp.phase = Phase.STREAMING
        return self.tick(now)

    def speech_failed(self, request_id: str, message: str, now: float) -> list[BaseModel]:
        resp = self._synthesizing(request_id)
        if resp is None:
            return []
        # The response ends failed, and an error event says why (as OpenAI reports a
        # server error), so a client waiting on it neither hangs nor guesses.
        err = ProtocolError(Case.RESPONSE_FAILED, detail=message)
        details = {"type": err.type, "code": err.code, "message": err.message}
        return self._finish_response(resp, status="failed", error=details) + [self._error(err)]

    def next_deadline(self) -> float | None:
        deadlines = []
        if self._expires_at is not None and not self.closed:
            deadlines.append(self._expires_at)
        resp = self._response
        if resp is not None and resp.phase is Phase.STREAMING and resp.pacer is not None:
            deadlines.append(resp.pacer.next_due())
        if resp is not None and resp.phase is Phase.WAITING_FOR_TRANSCRIPT:
            deadlines.append(resp.transcript_deadline)
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> list[BaseModel]:
        out: list[BaseModel] = []
        if self._expires_at is not None and now >= self._expires_at and not self.closed:
            if self._response is not None:
                out += self._finish_response(self._response, status="cancelled", reason="client_cancelled")
            out.append(self._error(ProtocolError(Case.SESSION_EXPIRED, minutes=(self.limits.max_session_s or 0) / 60)))
            self.closed = True
            return out
        resp = self._response
        if resp is not None and resp.phase is Phase.WAITING_FOR_TRANSCRIPT and now >= resp.transcript_deadline:
            out += self._think(resp)
        resp = self._response
        if resp is not None and resp.phase is Phase.STREAMING:
            out += self._stream_audio(resp, now)
        return out

    # ---- session ---------------------------------------------------------
    def _session_update(self, event: rt.SessionUpdateEvent) -> list[BaseModel]:
        if event.session.type != "realtime":
            raise ProtocolError(Case.UNSUPPORTED_SESSION_TYPE)
        update = event.session.model_dump(exclude_unset=True)
        old_td = self._turn_detection
        # A validated copy: the merged session is checked as a whole before it replaces the old one.
        self._session = rt.RealtimeSessionCreateRequest.model_validate(
            _merge(self._session.model_dump(exclude_unset=True), update)
        )
        if self._turn_detection != old_td:
            self._rebuild_vad()
        return [self._ev(rt.SessionUpdatedEvent, type="session.updated", session=self._session)]

    # ---- input audio -----------------------------------------------------
    def _append(self, event: rt.InputAudioBufferAppendEvent, now: float) -> list[BaseModel]:
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
        if self._streaming is not None and self._input.transcription:
            self._transcribe_out.append(TranscriptionFeed(self._streaming, pcm))
        self._audio_ms_total += pcm.size * 1000 / audio_codec.SAMPLE_RATE
        if self._vad is not None:
            for vad_event in self._vad.process(pcm):
                match vad_event:
                    case SpeechStarted():
                        out += self._on_speech_started(vad_event.audio_start_ms)
                    case SpeechStopped():
                        out += self._on_speech_stopped(vad_event.audio_end_ms, now)
            if not self._vad.in_speech:
                self._trim_buffer()
        return out

    def _trim_buffer(self) -> None:
        """Outside a turn, keep only what prefix padding may need."""
        padding = getattr(self._turn_detection, "prefix_padding_ms", None) or 300
        keep = int((padding + 200) * audio_codec.SAMPLE_RATE / 1000)
        if self._buffer_samples > 4 * keep:
            merged = np.concatenate(self._buffer)[-keep:]
            self._buffer, self._buffer_samples = [merged], merged.size

    def _on_speech_started(self, audio_start_ms: int) -> list[BaseModel]:
        item_id = self._id("item")
        self._vad_item_id = item_id
        self._cancel_stream()
        if self._input.transcription and self._buffer:
            # decode while the caller speaks: the commit then finds the words (nearly) ready
            self._streaming = item_id
            self._transcribe_out.append(TranscriptionFeed(item_id, np.concatenate(self._buffer)))
        out = [
            self._ev(
                rt.InputAudioBufferSpeechStartedEvent,
                type="input_audio_buffer.speech_started",
                audio_start_ms=audio_start_ms,
                item_id=item_id,
            )
        ]
        if self._response is not None and _flag(self._turn_detection, "interrupt_response"):
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
        if _flag(self._turn_detection, "create_response") and self._response is None:
            out += self._start_response(None, now)
        return out

    def _commit_buffer(self) -> list[BaseModel]:
        ms = self._buffer_samples * 1000 / audio_codec.SAMPLE_RATE
        if ms < MIN_COMMIT_MS:
            raise ProtocolError(Case.COMMIT_TOO_SMALL, minimum=MIN_COMMIT_MS, have=ms)
        item_id = self._vad_item_id or self._id("item")
        self._vad_item_id = None
        if self._vad is not None:
            self._vad.reset()
        return self._commit(item_id)

    def _cancel_stream(self) -> None:
        if self._streaming is not None:
            self._transcribe_out.append(TranscriptionFeed(self._streaming, None))
            self._streaming = None

    def _commit(self, item_id: str) -> list[BaseModel]:
        audio_ms = int(self._buffer_samples * 1000 / audio_codec.SAMPLE_RATE)
        streamed = self._streaming == item_id
        if not streamed or not self._input.transcription:
            self._cancel_stream()
            streamed = False
        self._streaming = None
        if self._input.transcription and self._buffer:
            self._transcribe_out.append(TranscriptionRequest(item_id, np.concatenate(self._buffer), streamed=streamed))
            self._pending_transcripts.add(item_id)
        self._buffer, self._buffer_samples = [], 0
        previous = self._conversation.last_id
        item = rt.RealtimeConversationItemUserMessage.model_validate({
            "id": item_id,
            "type": "message",
            "role": "user",
            "status": "completed",
            "object": "realtime.item",
            "content": [{"type": "input_audio", "transcript": None}],
        })  # fmt: skip
        self._conversation.insert(item, previous, audio_ms=audio_ms)
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

    def _clear_buffer(self) -> list[BaseModel]:
        self._buffer, self._buffer_samples = [], 0
        self._vad_item_id = None
        self._cancel_stream()
        if self._vad is not None:
            self._vad.reset()
        return [self._ev(rt.InputAudioBufferClearedEvent, type="input_audio_buffer.cleared")]

    # ---- conversation ----------------------------------------------------
    def _create_item(self, event: rt.ConversationItemCreateEvent) -> list[BaseModel]:
        item = event.item
        prev = event.previous_item_id
        if prev is not None and prev != "root" and prev not in self._conversation:
            raise ProtocolError(Case.PREVIOUS_ITEM_NOT_FOUND, item_id=prev)
        item_id = item.id or self._id("item")
        if item_id in self._conversation:
            # livekit-agents recognises this code as "already there" (a replay after a reconnect)
            raise ProtocolError(Case.DUPLICATE_ITEM_ID, item_id=item_id)
        if not isinstance(item, Item):
            raise ProtocolError(Case.ITEM_TYPE_UNSUPPORTED, item_type=item.type)
        fields = item.model_dump(exclude_unset=True)
        fields.update(id=item_id, object="realtime.item", status="completed")
        if item.type == "function_call_output":
            fields.pop("status", None)
        stored = type(item).model_validate(fields)
        audio_ms = 0
        if item.type == "message":
            for part in item.content:
                audio = getattr(part, "audio", None)
                if part.type == "input_audio" and audio:
                    try:
                        pcm = audio_codec.decode(base64.b64decode(audio, validate=True), self._input_format)
                    except (binascii.Error, ValueError):
                        raise ProtocolError(Case.ITEM_AUDIO_INVALID) from None
                    audio_ms = int(pcm.size * 1000 / audio_codec.SAMPLE_RATE)
        # What precedes it, if anything: null for the first place ("root"), as OpenAI says.
        anchor = None if prev == "root" else prev if prev is not None else self._conversation.last_id
        self._conversation.insert(stored, prev, audio_ms=audio_ms)
        return [
            self._ev(rt.ConversationItemAdded, type="conversation.item.added", item=stored, previous_item_id=anchor),
            self._ev(rt.ConversationItemDone, type="conversation.item.done", item=stored, previous_item_id=anchor),
        ]

    def _truncate(self, event: rt.ConversationItemTruncateEvent) -> list[BaseModel]:
        self._conversation.truncate(event.item_id, event.audio_end_ms)
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
    def _brain_input(self, params: rt.RealtimeResponseCreateParams | None) -> BrainInput:
        tools_src = params.tools if params is not None and params.tools is not None else self._session.tools or []
        tools = []
        for tool in tools_src:
            spec = tool if isinstance(tool, dict) else tool.model_dump(exclude_unset=True)
            if spec.get("type", "function") == "function" and spec.get("name"):
                tools.append(ToolSpec(spec["name"], spec.get("description") or "", spec.get("parameters") or {}))
        choice: Any = params.tool_choice if params is not None and params.tool_choice is not None else self._session.tool_choice
        if choice is None:
            choice = "auto"
        elif not isinstance(choice, str):
            choice = getattr(choice, "name", None) or "auto"
        return BrainInput(
            turns=self._conversation.turns(),
            instructions=self._session.instructions or "",
            response_instructions=params.instructions if params is not None else None,
            tools=tuple(tools),
            tool_choice=choice,
        )

    def _start_response(self, params: rt.RealtimeResponseCreateParams | None, now: float) -> list[BaseModel]:
        modalities = (params.output_modalities if params is not None else None) or self._session.output_modalities or ["audio"]
        usage_in = input_usage(self._conversation, self._session.instructions)
        resp = _Response(
            id=self._id("resp"),
            params=params,
            metadata=params.metadata if params is not None else None,
            modalities=list(modalities),
            voice=str(self._output.voice or "marin"),
            fmt=self._output_format,
            in_conversation=not (params is not None and params.conversation == "none"),
            usage_in=usage_in,
            transcript_deadline=now + self.limits.transcript_wait_s,
        )
        self._response = resp
        out = [
            self._ev(rt.ResponseCreatedEvent, type="response.created", response=self._response_model(resp, "in_progress")),
            self._ev(rt.RateLimitsUpdatedEvent, type="rate_limits.updated", rate_limits=rate_limits(usage_in)),
        ]
        if self._conversation.last_id in self._pending_transcripts:
            return out  # WAITING_FOR_TRANSCRIPT until it comes or the deadline passes
        return out + self._think(resp)

    def _resume_thinking(self) -> list[BaseModel]:
        resp = self._response
        if resp is None or resp.phase is not Phase.WAITING_FOR_TRANSCRIPT:
            return []
        if self._conversation.last_id in self._pending_transcripts:
            return []
        return self._think(resp)

    def _think(self, resp: _Response) -> list[BaseModel]:
        """Ask the brain, then start the message (audio is made by the shell) or the calls."""
        inp = self._brain_input(resp.params)
        resp.reply = apply_tool_choice(self.brain.reply(inp), inp)
        if resp.reply.say:
            return self._open_message(resp, resp.reply.say)
        return self._finish_response(resp, status="completed")

    def _response_model(self, resp: _Response, status: str, **extra: Any) -> rt.RealtimeResponse:
        rate = {"rate": 24000} if resp.fmt == "audio/pcm" else {}
        return rt.RealtimeResponse.model_validate({
            "id": resp.id,
            "object": "realtime.response",
            "status": status,
            "status_details": extra.get("status_details"),
            "output": extra.get("output", []),
            "conversation_id": self.session_id.replace("sess_", "conv_") if resp.in_conversation else None,
            "output_modalities": resp.modalities,
            "max_output_tokens": self._session.max_output_tokens if self._session.max_output_tokens is not None else "inf",
            "audio": {"output": {"format": {"type": resp.fmt, **rate}, "voice": resp.voice}},
            "usage": extra.get("usage"),
            "metadata": resp.metadata,
        })  # fmt: skip

    def _message_item(self, resp: _Response, status: str) -> rt.RealtimeConversationItemAssistantMessage:
        text = resp.transcript if status != "in_progress" else ""
        part: dict[str, Any] = (
            {"type": "output_audio", "transcript": text} if resp.audio_mode else {"type": "output_text", "text": text}
        )
        return rt.RealtimeConversationItemAssistantMessage.model_validate(
            {"id": resp.message_id, "type": "message", "role": "assistant", "status": status, "object": "realtime.item", "content": [part]}
        )

    def _part(self, resp: _Response, text: str) -> dict[str, str]:
        return {"type": "audio", "transcript": text} if resp.audio_mode else {"type": "text", "text": text}

    def _open_message(self, resp: _Response, say: str) -> list[BaseModel]:
        resp.message_id = self._id("item")
        item = self._message_item(resp, "in_progress")
        previous = self._conversation.last_id
        if resp.in_conversation:
            self._conversation.insert(item, previous)
        common = dict(response_id=resp.id, item_id=resp.message_id, output_index=0, content_index=0)
        out = [
            self._ev(rt.ResponseOutputItemAddedEvent, type="response.output_item.added", response_id=resp.id, output_index=0, item=item),
            self._ev(rt.ConversationItemAdded, type="conversation.item.added", item=item, previous_item_id=previous),
            self._ev(rt.ResponseContentPartAddedEvent, type="response.content_part.added", part=self._part(resp, ""), **common),
        ]
        if resp.audio_mode:
            resp.speech_request = self._id("speech")
            resp.phase = Phase.SYNTHESIZING
            self._speech_out.append(SpeechRequest(resp.speech_request, say, resp.voice))
            return out
        resp.transcript = say
        for word in words_of(say):
            out.append(self._ev(rt.ResponseTextDeltaEvent, type="response.output_text.delta", delta=word, **common))
        return out + self._finish_response(resp, status="completed")

    def _stream_audio(self, resp: _Response, now: float) -> list[BaseModel]:
        assert resp.pacer is not None
        out: list[BaseModel] = []
        common = dict(response_id=resp.id, item_id=resp.message_id, output_index=0, content_index=0)
        for chunk in resp.pacer.due(now):
            # Transcript deltas run alongside the audio, word by word.
            for word in chunk.words:
                resp.transcript += word
                out.append(self._ev(rt.ResponseAudioTranscriptDeltaEvent, type="response.output_audio_transcript.delta", delta=word, **common))
            data = audio_codec.encode(chunk.pcm, resp.fmt)
            out.append(
                self._ev(
                    rt.ResponseAudioDeltaEvent,
                    type="response.output_audio.delta",
                    delta=base64.b64encode(data).decode("ascii"),
                    **common,
                )
            )
        if resp.pacer.done:
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
            sent = resp.sent_audio()
            audio_ms = int(sent.size * 1000 / audio_codec.SAMPLE_RATE)
            common = dict(response_id=resp.id, item_id=resp.message_id, output_index=0, content_index=0)
            if resp.audio_mode and status == "completed":
                out.append(self._ev(rt.ResponseAudioDoneEvent, type="response.output_audio.done", **common))
                out.append(
                    self._ev(rt.ResponseAudioTranscriptDoneEvent, type="response.output_audio_transcript.done", transcript=resp.transcript, **common)
                )
            elif status == "completed":
                out.append(self._ev(rt.ResponseTextDoneEvent, type="response.output_text.done", text=resp.transcript, **common))
            out.append(self._ev(rt.ResponseContentPartDoneEvent, type="response.content_part.done", part=self._part(resp, resp.transcript), **common))
            item = self._message_item(resp, "completed" if status == "completed" else "incomplete")
            if resp.in_conversation and resp.message_id in self._conversation:
                self._conversation.replace(item)
                self._conversation.set_assistant_audio(resp.message_id, sent)
            out.append(self._ev(rt.ResponseOutputItemDoneEvent, type="response.output_item.done", response_id=resp.id, output_index=0, item=item))
            if resp.in_conversation:
                previous = self._conversation.previous_of(resp.message_id)
                out.append(self._ev(rt.ConversationItemDone, type="conversation.item.done", item=item, previous_item_id=previous))
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
        out_text = text_tokens(resp.transcript) + sum(text_tokens(getattr(o, "arguments", None)) for o in output)
        usage = response_usage(resp.usage_in, out_text, audio_out_tokens(audio_ms))
        out.append(
            self._ev(
                rt.ResponseDoneEvent,
                type="response.done",
                response=self._response_model(resp, status, status_details=details, output=output, usage=usage),
            )
        )
        resp.phase = Phase.DONE
        if self._response is resp:
            self._response = None
        return out

    def _emit_call(self, resp: _Response, name: str, arguments: str, index: int, output: list[BaseModel]) -> list[BaseModel]:
        item_id, call_id = self._id("item"), self._id("call")
        in_progress = rt.RealtimeConversationItemFunctionCall(
            id=item_id, type="function_call", status="in_progress", object="realtime.item", name=name, call_id=call_id, arguments=""
        )
        done = in_progress.model_copy(update={"status": "completed", "arguments": arguments})
        previous = self._conversation.last_id
        if resp.in_conversation:
            self._conversation.insert(done, previous)
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
