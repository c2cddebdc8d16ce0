"""Brains: what the local realtime server says or does in a response.

A brain sees a plain view of the conversation (``BrainInput``) and returns
a ``Reply``: words to say and/or tool calls to make. It is pure and
deterministic, so tests can predict every reply; the protocol turns the
reply into the Realtime events.

``ScriptedBrain`` works on rules: a regular expression on the caller's
latest text (or transcript), and what to say or call when it matches.
Memory is derived from the whole conversation each time (never kept in
the brain), so a conversation replayed onto a new connection recalls the
same facts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

TurnKind = Literal["message", "function_call", "function_call_output"]

_SAY_EXACTLY = re.compile(r"say exactly:\s*[\"“](?P<text>[^\"”]+)[\"”]", re.IGNORECASE)


@dataclass(frozen=True)
class Turn:
    """One conversation item, as the brain sees it."""

    kind: TurnKind
    role: str = "user"
    text: str | None = None  # message text, or the transcript of audio
    audio_ms: int = 0  # user audio length, when the item carries audio
    name: str | None = None  # function name (function_call)
    arguments: str | None = None  # JSON text (function_call)
    call_id: str | None = None
    output: str | None = None  # function_call_output
    complete: bool = True  # False for an assistant message cut short (cancelled or interrupted)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BrainInput:
    turns: tuple[Turn, ...]
    instructions: str
    response_instructions: str | None = None  # set when response.create overrides them
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"  # "auto" | "none" | "required" | a function name


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    raw_arguments: str | None = None  # fault injection: sent as is instead of the JSON of ``arguments``


@dataclass(frozen=True)
class Reply:
    say: str | None = None
    calls: tuple[ToolCall, ...] = ()
    # Fault injection for tests: the server drops the connection (no close
    # frame) right after sending this response, as a network cut would.
    drop_connection: bool = False


class Brain(Protocol):
    def reply(self, inp: BrainInput) -> Reply: ...


@dataclass(frozen=True)
class Rule:
    """``match`` is a regex on the caller's latest words; ``say`` and ``call``
    arguments are templates over its named groups and the conversation's memory."""

    match: str
    say: str | None = None
    call: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    remember: bool = False  # named groups become memory for later turns
    drop_connection: bool = False  # fault injection: cut the connection after this response
    raw_arguments: str | None = None  # fault injection: send these (e.g. not JSON) as the call's arguments

    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.match, re.IGNORECASE)


class _Memory(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "something I don't know yet"


_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}  # fmt: skip
_WHOLE_FIELD = re.compile(r"\{(\w+)\}")


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        whole = _WHOLE_FIELD.fullmatch(template)
        if whole and whole.group(1) in values:
            # "{quantity}" alone: a number ("2" or "two") becomes a JSON number
            value = values[whole.group(1)].strip().lower()
            if value.isdigit():
                return int(value)
            if value in _NUMBER_WORDS:
                return _NUMBER_WORDS[value]
        return template.format_map(_Memory(values))
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


class ScriptedBrain:
    """Deterministic rules; the default brain of the embedded backend."""

    def __init__(
        self,
        rules: list[Rule] | None = None,
        *,
        heard_audio: str = "I heard you. Tell me more, or ask me anything.",
        after_tool: str = "Done. {output}",
        instructed: str | None = None,
    ) -> None:
        self.rules = list(rules or [])
        self.heard_audio = heard_audio
        self.after_tool = after_tool
        # What to say for a response asked for with instructions of its own (an
        # agent's greeting, "Greet the user"), when they do not say exactly what.
        self.instructed = instructed

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedBrain:
        """Load rules from a YAML or JSON file: ``{rules: [{match, say, call, arguments, remember}],
        heard_audio?, after_tool?, instructed?}``."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        rules = [Rule(**r) for r in data.get("rules", [])]
        extra = {k: data[k] for k in ("heard_audio", "after_tool", "instructed") if k in data}
        return cls(rules, **extra)

    def _memory(self, turns: tuple[Turn, ...]) -> dict[str, str]:
        memory: dict[str, str] = {}
        for turn in turns:
            if turn.kind != "message" or turn.role != "user" or not turn.text:
                continue
            for rule in self.rules:
                if rule.remember and (m := rule.pattern().search(turn.text)):
                    memory.update({k: v for k, v in m.groupdict().items() if v is not None})
        return memory

    def reply(self, inp: BrainInput) -> Reply:
        if inp.response_instructions and (m := _SAY_EXACTLY.search(inp.response_instructions)):
            return Reply(say=m.group("text").strip())
        if inp.response_instructions and self.instructed is not None:
            return Reply(say=self.instructed)
        turns = list(inp.turns)
        # A reply that was cut short answered nothing: the caller's words before it
        # (or typed while it was being cancelled, and so placed before it) still
        # wait for an answer, as they would with a real model.
        while len(turns) > 1 and turns[-1].kind == "message" and turns[-1].role == "assistant" and not turns[-1].complete:
            turns.pop()
        last = turns[-1] if turns else None
        if last is None:
            return Reply(say=self.heard_audio)
        if last.kind == "function_call_output":
            return Reply(say=_fill(self.after_tool, {"output": _summarize(last.output)}))
        if last.kind != "message" or last.role != "user":
            return Reply(say=self.heard_audio)
        text = last.text
        if not text:
            return Reply(say=self.heard_audio)
        memory = self._memory(inp.turns)
        for rule in self.rules:
            m = rule.pattern().search(text)
            if m is None:
                continue
            values = {**memory, **{k: v for k, v in m.groupdict().items() if v is not None}}
            calls: tuple[ToolCall, ...] = ()
            if rule.call:  # tool_choice is applied after the brain (tool_choice.py)
                calls = (ToolCall(rule.call, _fill(rule.arguments, values), rule.raw_arguments),)
            say = _fill(rule.say, values) if rule.say else None
            return Reply(say=say, calls=calls, drop_connection=rule.drop_connection)
        return Reply(say=f"You said: {_clip(text, ECHO_CHARS)}")


ECHO_CHARS = 200  # the default reply repeats at most this much of what was said


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " and so on"


def _summarize(output: str | None) -> str:
    """A tool output in a sentence: a JSON object's ``message``/``result`` field, else the text."""
    if not output:
        return ""
    try:
        value = json.loads(output)
    except ValueError:
        return output
    if isinstance(value, dict):
        for key in ("message", "result", "summary"):
            found = value.get(key)
            if isinstance(found, str):
                return found
    return output if len(output) < 200 else output[:200]
