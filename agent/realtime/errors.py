"""Every ``error`` event the local realtime server sends, in one table.

Clients key their recovery on the exact ``code`` (livekit-agents,
pipecat and the openai-agents SDK treat ``item_truncate_invalid_item_id``
or ``response_cancel_not_active`` as benign races after an interruption),
so each case carries the code, type, ``param`` and wording OpenAI's
Realtime service sends for the same mistake, with where that was seen.
Cases marked UNVERIFIED keep a code of our own choosing because no
published trace of OpenAI's answer was found; they say so here.

Sources, abbreviated in the table:

- [speaches]: speaches-ai/speaches ``tests/realtime/test_conversation.py``,
  a suite that runs against both speaches and ``api.openai.com`` and asserts
  the exact error (code, message, ``param: None``).
- [sonic]: swigerb/SonicAIDriveThru conformance docs, errors recorded live
  against GA ``gpt-realtime`` deployments (unknown/missing parameter,
  unknown event type, duplicate item id).
- [pipecat#2106]: a GA-era trace of OpenAI's truncate-past-the-end answer.
- [livekit#6157]: livekit/agents issue 6157, OpenAI's answer to a truncate of
  a message with no model audio.
- [agents-js#304]: livekit/agents-js issue 304, OpenAI's answer to a
  negative ``audio_end_ms``.
- [clients]: the code is matched verbatim by published clients
  (livekit-plugins-openai ``realtime_model.py``, pipecat, openai-agents and
  many hand-written ones) and quoted in their issue trackers.
- [rest]: the OpenAI API's shared validation layer (``invalid_type`` with
  "Invalid type for 'x': expected a decimal, but got a string instead."),
  also quoted for Realtime ``session.update`` fields (e.g.
  ``session.audio.input.format``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

ErrorType = Literal["invalid_request_error", "server_error"]


@dataclass(frozen=True)
class ErrorSpec:
    code: str
    message: str  # a str.format template over the fields the case is raised with
    param: str | None = None  # a template too; None where OpenAI sends ``param: null``
    type: ErrorType = "invalid_request_error"


class Case(Enum):
    """What went wrong; ``ERRORS[case]`` says how OpenAI reports it."""

    # ---- parsing the event (the edge) -------------------------------------
    INVALID_JSON = "invalid_json"
    MISSING_TYPE = "missing_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_PARAMETER = "missing_parameter"
    INVALID_TYPE = "invalid_type"
    INVALID_VALUE = "invalid_value"
    BELOW_MINIMUM = "below_minimum"
    EVENT_TOO_LARGE = "event_too_large"
    # ---- session ---------------------------------------------------------
    UNSUPPORTED_SESSION_TYPE = "unsupported_session_type"
    SESSION_EXPIRED = "session_expired"
    # ---- input audio -----------------------------------------------------
    AUDIO_NOT_BASE64 = "audio_not_base64"
    AUDIO_NOT_DECODABLE = "audio_not_decodable"
    COMMIT_TOO_SMALL = "commit_too_small"
    OUTPUT_BUFFER_ON_WEBSOCKET = "output_buffer_on_websocket"
    # ---- conversation ----------------------------------------------------
    ITEM_TYPE_UNSUPPORTED = "item_type_unsupported"
    ITEM_AUDIO_INVALID = "item_audio_invalid"
    DUPLICATE_ITEM_ID = "duplicate_item_id"
    PREVIOUS_ITEM_NOT_FOUND = "previous_item_not_found"
    RETRIEVE_UNKNOWN_ITEM = "retrieve_unknown_item"
    DELETE_UNKNOWN_ITEM = "delete_unknown_item"
    TRUNCATE_UNKNOWN_ITEM = "truncate_unknown_item"
    TRUNCATE_NOT_MODEL_AUDIO = "truncate_not_model_audio"
    TRUNCATE_PAST_END = "truncate_past_end"
    # ---- responses -------------------------------------------------------
    RESPONSE_ALREADY_ACTIVE = "response_already_active"
    CANCEL_NOT_ACTIVE = "cancel_not_active"
    RESPONSE_FAILED = "response_failed"


ERRORS: dict[Case, ErrorSpec] = {
    # UNVERIFIED: no trace of OpenAI's answer to a frame that is not JSON was found.
    Case.INVALID_JSON: ErrorSpec("invalid_json", "The event is not valid JSON: {detail}"),
    # [sonic] records missing_required_parameter for a missing nested 'session.type';
    # the API reference's illustrative example for a missing top-level 'type' shows
    # code 'invalid_event' instead (not seen in a trace), so this follows the live one.
    Case.MISSING_TYPE: ErrorSpec("missing_required_parameter", "Missing required parameter: 'type'.", "type"),
    # [sonic]: invalid_value, param 'type', the message lists the supported types.
    Case.UNKNOWN_EVENT_TYPE: ErrorSpec(
        "invalid_value", "Invalid value: '{value}'. Supported values are: {supported}.", "type"
    ),
    # [sonic]: "Missing required parameter: 'session.type'.", param 'session.type'.
    Case.MISSING_PARAMETER: ErrorSpec("missing_required_parameter", "Missing required parameter: '{param}'.", "{param}"),
    # Not sent: OpenAI refuses unknown fields with unknown_parameter ([sonic]), but what
    # is unknown to this openai package is not what is unknown to the service (the
    # livekit plugin sends newer fields), so they are accepted.
    # [rest]: a JSON value of the wrong type is a type error, never a value error.
    Case.INVALID_TYPE: ErrorSpec(
        "invalid_type", "Invalid type for '{param}': expected {expected}, but got {got} instead.", "{param}"
    ),
    # [rest], [sonic]: a value of the right type that is not allowed (e.g. an audio
    # format rate other than 24000: the openai models refuse every unsupported format).
    Case.INVALID_VALUE: ErrorSpec("invalid_value", "Invalid value for '{param}': {detail}.", "{param}"),
    # [agents-js#304]: "Invalid 'audio_end_ms': integer below minimum value. Expected a
    # value >= 0, but got -11 instead.", param 'audio_end_ms'.
    Case.BELOW_MINIMUM: ErrorSpec(
        "integer_below_min_value",
        "Invalid '{param}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
        "{param}",
    ),
    # UNVERIFIED: OpenAI documents a per-event size limit but no trace of its error was found.
    Case.EVENT_TOO_LARGE: ErrorSpec("message_too_large", "The event is {size} bytes; the limit is {limit}."),
    # UNVERIFIED code for a session type this server does not run ('transcription');
    # invalid_value on the parameter follows [rest].
    Case.UNSUPPORTED_SESSION_TYPE: ErrorSpec(
        "invalid_value", "Only 'realtime' sessions are supported here.", "session.type"
    ),
    # [clients] (livekit-agents treats it as the planned end of a session) and DESIGN.md:
    # "Your session hit the maximum duration of 60 minutes.", then the socket closes.
    Case.SESSION_EXPIRED: ErrorSpec("session_expired", "Your session hit the maximum duration of {minutes:g} minutes."),
    # UNVERIFIED: no trace of OpenAI's answer to bad base64 or undecodable audio was found.
    Case.AUDIO_NOT_BASE64: ErrorSpec("invalid_value", "The 'audio' field is not valid base64.", "audio"),
    Case.AUDIO_NOT_DECODABLE: ErrorSpec("invalid_value", "{detail} (session input format is {format}).", "audio"),
    # [clients]: code and wording quoted in pipecat, livekit-agents and openai-agents issues.
    Case.COMMIT_TOO_SMALL: ErrorSpec(
        "input_audio_buffer_commit_empty",
        "Error committing input audio buffer: buffer too small. Expected at least {minimum}ms of audio,"
        " but buffer only has {have:.2f}ms of audio.",
    ),
    # [sonic]: over a WebSocket the service does not list output_audio_buffer.clear among
    # its event types, so it is refused like an unknown type (invalid_value, param 'type').
    Case.OUTPUT_BUFFER_ON_WEBSOCKET: ErrorSpec(
        "invalid_value", "output_audio_buffer.clear is only supported on WebRTC connections.", "type"
    ),
    # UNVERIFIED: item types this server does not hold (e.g. mcp_call); invalid_value per [rest].
    Case.ITEM_TYPE_UNSUPPORTED: ErrorSpec("invalid_value", "Item type '{item_type}' is not supported here.", "item.type"),
    Case.ITEM_AUDIO_INVALID: ErrorSpec("invalid_value", "Item audio is not valid base64 audio.", "item.content"),
    # [sonic] (recorded live) and [clients] (livekit-agents reads it as "already there").
    Case.DUPLICATE_ITEM_ID: ErrorSpec(
        "item_create_duplicate_item_id", "Error adding item: an item with id '{item_id}' already exists."
    ),
    # Seen in one client's fake whose comment says code and wording are copied from
    # the service; the form matches the verified item_create_* and item_*_invalid_item_id
    # codes. Not independently confirmed.
    Case.PREVIOUS_ITEM_NOT_FOUND: ErrorSpec(
        "item_create_invalid_previous_item_id",
        "Error adding item: the previous item with id '{item_id}' does not exist.",
    ),
    # [speaches]: exact code, message and param None, checked against api.openai.com.
    Case.RETRIEVE_UNKNOWN_ITEM: ErrorSpec(
        "item_retrieve_invalid_item_id", "Error retrieving item: the item with id '{item_id}' does not exist."
    ),
    Case.DELETE_UNKNOWN_ITEM: ErrorSpec(
        "item_delete_invalid_item_id", "Error deleting item: the item with id '{item_id}' does not exist."
    ),
    # [clients] match the code; the wording follows the retrieve/delete ones (not seen).
    Case.TRUNCATE_UNKNOWN_ITEM: ErrorSpec(
        "item_truncate_invalid_item_id", "Error truncating item: the item with id '{item_id}' does not exist."
    ),
    # [livekit#6157]: code unsupported_content_type, this wording.
    Case.TRUNCATE_NOT_MODEL_AUDIO: ErrorSpec(
        "unsupported_content_type", "Only model output audio messages can be truncated"
    ),
    # [pipecat#2106]: invalid_value, param None, "Audio content of 2450ms is already shorter than 2535ms".
    Case.TRUNCATE_PAST_END: ErrorSpec(
        "invalid_value", "Audio content of {duration_ms}ms is already shorter than {audio_end_ms}ms"
    ),
    # [clients]: code and wording quoted in livekit-agents and pipecat issues.
    Case.RESPONSE_ALREADY_ACTIVE: ErrorSpec(
        "conversation_already_has_active_response",
        "Conversation already has an active response in progress: {response_id}."
        " Wait until the response is finished before creating a new one.",
    ),
    # [clients]: code and wording quoted in traces; param UNVERIFIED (kept).
    Case.CANCEL_NOT_ACTIVE: ErrorSpec(
        "response_cancel_not_active", "Cancellation failed: no active response found.", "response_id"
    ),
    # Our own failure (speech synthesis); OpenAI's server errors have type server_error.
    # The code is ours (UNVERIFIED: OpenAI's server errors often carry none).
    Case.RESPONSE_FAILED: ErrorSpec(
        "response_failed", "The response failed: {detail}", type="server_error"
    ),
}


class ProtocolError(Exception):
    """A client mistake (or our own failure) that becomes an ``error`` event.

    Raised with the case and the fields its templates need; never escapes
    the protocol, which turns it into an event naming the offending event.
    """

    def __init__(self, case: Case, *, event_id: str | None = None, **fields: Any) -> None:
        spec = ERRORS[case]
        self.case = case
        self.code = spec.code
        self.type: ErrorType = spec.type
        self.message = spec.message.format(**fields)
        self.param = spec.param.format(**fields) if spec.param is not None else None
        self.event_id = event_id
        super().__init__(self.message)
