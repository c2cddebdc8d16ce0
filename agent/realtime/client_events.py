"""The edge: JSON text -> one of the ``openai`` package's client event models.

Parsed once, strictly (a string where OpenAI wants a number is a type
error, as on the service, not something to coerce), and every failure is
a ``ProtocolError`` of the case OpenAI would report (see ``errors.py``).
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

from openai.types import realtime as rt
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .errors import Case, ProtocolError

ClientEvent: TypeAlias = (
    rt.SessionUpdateEvent
    | rt.InputAudioBufferAppendEvent
    | rt.InputAudioBufferCommitEvent
    | rt.InputAudioBufferClearEvent
    | rt.ConversationItemCreateEvent
    | rt.ConversationItemRetrieveEvent
    | rt.ConversationItemTruncateEvent
    | rt.ConversationItemDeleteEvent
    | rt.ResponseCreateEvent
    | rt.ResponseCancelEvent
    | rt.OutputAudioBufferClearEvent
)

# One table: event type -> the openai model that validates it.
CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    "session.update": rt.SessionUpdateEvent,
    "input_audio_buffer.append": rt.InputAudioBufferAppendEvent,
    "input_audio_buffer.commit": rt.InputAudioBufferCommitEvent,
    "input_audio_buffer.clear": rt.InputAudioBufferClearEvent,
    "conversation.item.create": rt.ConversationItemCreateEvent,
    "conversation.item.retrieve": rt.ConversationItemRetrieveEvent,
    "conversation.item.truncate": rt.ConversationItemTruncateEvent,
    "conversation.item.delete": rt.ConversationItemDeleteEvent,
    "response.create": rt.ResponseCreateEvent,
    "response.cancel": rt.ResponseCancelEvent,
    "output_audio_buffer.clear": rt.OutputAudioBufferClearEvent,
}

# pydantic error types that mean "a JSON value of the wrong type", and how
# OpenAI names the type it expected.
_EXPECTED = {
    "float_type": "a decimal",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "a boolean",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "list_type": "an array",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _json_path(data: Any, loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """The error location as a JSON path: pydantic puts the names of union
    members in ``loc`` ('RealtimeSessionCreateRequest', 'ServerVad'); they
    are not keys of the data and are dropped."""
    path: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(str(part))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(str(part))
        elif isinstance(part, str) and not part[:1].isupper():
            path.append(part)  # a missing field: its name is part of the path
            node = None
    return tuple(path)


def _best(errors: list[ErrorDetails], data: Any) -> tuple[ErrorDetails, str]:
    """Of the errors of every union branch, the one deepest into the data:
    the branch the client meant is the one that got furthest."""
    # A union branch whose 'type' literal did not match is not what the client meant.
    wrong_branches = [e["loc"][:-1] for e in errors if e["type"] == "literal_error" and e["loc"][-1:] == ("type",)]
    meant = [e for e in errors if not any(e["loc"][: len(b)] == b for b in wrong_branches)] or errors
    scored = [(len(_json_path(data, e["loc"])), -i, e) for i, e in enumerate(meant)]
    _, _, err = max(scored, key=lambda s: (s[0], s[1]))
    return err, ".".join(_json_path(data, err["loc"]))


def _to_protocol_error(err: ErrorDetails, param: str, event_id: str | None) -> ProtocolError:
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return ProtocolError(Case.MISSING_PARAMETER, param=param, event_id=event_id)
    if kind in _EXPECTED:
        return ProtocolError(Case.INVALID_TYPE, param=param, expected=_EXPECTED[kind], got=_json_type(value), event_id=event_id)
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", ""))
        wants_string = "'" in expected
        same_type = isinstance(value, str) if wants_string else isinstance(value, (int, float)) and not isinstance(value, bool)
        if not same_type:  # e.g. an object where one of a few strings is expected
            return ProtocolError(Case.INVALID_TYPE, param=param, expected=f"one of {expected}", got=_json_type(value), event_id=event_id)
    return ProtocolError(Case.INVALID_VALUE, param=param, detail=err["msg"], event_id=event_id)


def parse_client_event(raw: str | bytes, *, max_bytes: int | None = None) -> ClientEvent:
    """JSON text -> a validated client event model, or ProtocolError.

    ``max_bytes``: the size limit of one event (the transport's own limit sits
    above it, so that an oversized event gets an error, not a closed socket).
    """
    if max_bytes is not None and len(raw) > max_bytes:
        raise ProtocolError(Case.EVENT_TOO_LARGE, size=len(raw), limit=max_bytes)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(Case.INVALID_JSON, detail=str(e)) from None
    if not isinstance(data, dict):
        raise ProtocolError(Case.INVALID_JSON, detail="an event must be a JSON object")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    etype = data.get("type")
    if not isinstance(etype, str):
        raise ProtocolError(Case.MISSING_TYPE, event_id=event_id)
    model = CLIENT_EVENTS.get(etype)
    if model is None:
        supported = ", ".join(f"'{name}'" for name in sorted(CLIENT_EVENTS))
        raise ProtocolError(Case.UNKNOWN_EVENT_TYPE, value=etype, supported=supported, event_id=event_id)
    try:
        # strict JSON mode: what JSON says is what counts (no "0.5" -> 0.5)
        event = model.model_validate_json(raw, strict=True)
    except ValidationError as e:
        err, param = _best(e.errors(), data)
        raise _to_protocol_error(err, param, event_id) from None
    # Fields the openai models do not know are kept, not refused as OpenAI refuses
    # them: the livekit plugin sends fields newer than this package's models
    # (refusing them broke its sessions), so "unknown" here is not OpenAI's "unknown".
    return event
