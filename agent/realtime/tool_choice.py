"""``tool_choice`` as OpenAI documents it, applied to whatever a brain replied.

- ``auto``: the brain decides; calls to tools the session does not declare
  are dropped (a model never calls an undeclared function).
- ``none``: no calls; if the brain only wanted to call, it says so instead.
- ``required``: at least one call. If the brain made none, the tool whose
  name and description share the most words with the caller's last turn is
  called (the first declared one on a tie).
- a function name: exactly one call, to that function.

With ``required`` or a named function the response is the call alone, and
its arguments always validate against the tool's JSON schema: arguments
the brain got wrong are repaired from the schema (defaults, enums, types).
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .brain import BrainInput, Reply, ToolCall, ToolSpec

CANNOT_CALL = "I can't use my tools for that right now."


def apply_tool_choice(reply: Reply, inp: BrainInput) -> Reply:
    enforced = _enforce(reply, inp)
    if not enforced.say and not enforced.calls:  # never an empty response
        enforced = Reply(say=CANNOT_CALL)
    if reply.drop_connection and not enforced.drop_connection:
        enforced = Reply(enforced.say, enforced.calls, drop_connection=True)
    return enforced


def _enforce(reply: Reply, inp: BrainInput) -> Reply:
    tools = {t.name: t for t in inp.tools}
    choice = inp.tool_choice
    if choice == "none" or not tools:
        return reply if not reply.calls else Reply(say=reply.say or CANNOT_CALL)
    calls = tuple(c for c in reply.calls if c.name in tools)
    if choice == "auto":
        if calls == reply.calls:
            return reply  # (raw fault-injection arguments pass untouched here)
        return Reply(say=reply.say or (None if calls else CANNOT_CALL), calls=calls)
    if choice == "required":
        if not calls:
            tool = _best_tool(inp)
            calls = (ToolCall(tool.name, {}),)
        return Reply(calls=tuple(ToolCall(c.name, conform(c.arguments, tools[c.name].parameters)) for c in calls))
    # a named function (the protocol checked that it is declared, or it is unknown)
    named = tools.get(choice)
    if named is None:
        return Reply(say=reply.say or CANNOT_CALL)
    given = next((c.arguments for c in calls if c.name == choice), {})
    return Reply(calls=(ToolCall(choice, conform(given, named.parameters)),))


def _words(text: str | None) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", (text or "").lower()) if len(w) > 2}


def _best_tool(inp: BrainInput) -> ToolSpec:
    last_user = next((t.text for t in reversed(inp.turns) if t.kind == "message" and t.role == "user"), None)
    said = _words(last_user)
    scored = [(len(said & (_words(t.name.replace("_", " ")) | _words(t.description))), -i, t) for i, t in enumerate(inp.tools)]
    return max(scored, key=lambda s: (s[0], s[1]))[2]


def is_valid(value: Any, schema: dict[str, Any]) -> bool:
    if not schema:
        return isinstance(value, dict)
    try:
        return bool(Draft202012Validator(schema).is_valid(value))
    except SchemaError:
        return False


def conform(value: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """``value`` if it validates against ``schema``, else the closest object that does.

    Valid properties of ``value`` are kept; the rest come from :func:`example`.
    """
    if is_valid(value, schema):
        return value  # type: ignore[no-any-return]
    if not schema:
        return {}
    base = example(schema)
    if not isinstance(base, dict):
        return {}
    props = schema.get("properties") or {}
    if isinstance(value, dict):
        for key, given in value.items():
            sub = props.get(key)
            if sub is not None and is_valid(given, sub):
                base[key] = given
    if not is_valid(base, schema):
        # additional properties or cross-field rules we cannot satisfy by merging
        base = example(schema)
    return base  # type: ignore[no-any-return]


def example(schema: dict[str, Any]) -> Any:
    """A small value valid for common JSON schemas: defaults, enums, consts, minimal sizes."""
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example(schema[key][0])
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return example(merged)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: example(props.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [example(schema.get("items") or {}) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        fmt = str(schema.get("format") or "")
        text = {"email": "caller@example.com", "date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z"}.get(fmt, "")
        return text.ljust(schema.get("minLength", 0), "x")
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if "exclusiveMinimum" in schema else 0))
        high = schema.get("maximum")
        value = max(low, 0) if high is None or high >= 0 else high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return None
