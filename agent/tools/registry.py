"""One registry of the tools a voice agent may call, handed to the session as
livekit-agents function tools.

Every tool, whatever its source (a typed Python function, a declarative HTTP
call, an MCP server), becomes a :class:`ToolDef`: a name, a description, a
JSON schema of its parameters, and an async ``run``. The registry executes
calls the same way for all of them:

1. arguments parsed and validated against the schema; a validation error
   goes back to the model as the tool's output (it can correct itself);
2. a tool with side effects claims its call id in the :class:`Ledger` first,
   so it runs at most once per call id (a replay gets the recorded result);
3. a per-tool timeout; an exception becomes an error output, never a dead
   session.

Calls in flight when the caller interrupts are not cancelled: livekit-agents
lets them finish and records their output without speaking it, and a side
effect half-done is worse than a stale answer. ``end_call`` and the like
take effect when they return.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from livekit.agents import FunctionTool, RunContext, ToolError, function_tool
from livekit.agents.llm.utils import build_legacy_openai_schema, prepare_function_arguments

from .ledger import Ledger

log = logging.getLogger("agent.tools")

DEFAULT_TIMEOUT_S = 10.0


@dataclass
class CallContext:
    """What a running tool may know of its call; typed tools read it with :func:`current_call`."""

    call_id: str
    room: str | None = None
    services: Any = None  # agent.tools.builtin.Services in the worker; anything in tests


_current: contextvars.ContextVar[CallContext] = contextvars.ContextVar("agent_tool_call")


def current_call() -> CallContext:
    """The call being executed (inside a tool function)."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("current_call() is only available while a tool runs") from None


Runner = Callable[[dict[str, Any], CallContext], Awaitable[Any]]


class ToolObserver(Protocol):
    """Hears of each tool call the model makes, as it starts and as it ends."""

    def tool_started(self, call_id: str, name: str, arguments: Any) -> None: ...

    def tool_finished(self, call_id: str, name: str, arguments: Any, output: str, *, is_error: bool) -> None: ...


@dataclass(frozen=True)
class ToolDef:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Runner = field(repr=False)
    side_effects: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    source: str = "python"  # python | http | mcp

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass(frozen=True)
class Outcome:
    output: str
    is_error: bool = False
    ran: bool = True  # False when the ledger answered (the tool did not run again)


class ToolRegistry:
    def __init__(self, tools: Iterable[ToolDef] = (), *, ledger: Ledger | None = None) -> None:
        self._tools: dict[str, ToolDef] = {}
        self.ledger = ledger
        for t in tools:
            self.add(t)

    # ------------------------------------------------------------------ contents

    def add(self, tool: ToolDef) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered ({self._tools[tool.name].source})")
        try:
            Draft202012Validator.check_schema(tool.parameters)
        except SchemaError as e:
            raise ValueError(f"tool {tool.name!r}: its parameter schema is invalid: {e.message}") from None
        self._tools[tool.name] = tool

    def add_function(self, fn: FunctionTool[Any, Any], *, side_effects: bool = False, timeout: float = DEFAULT_TIMEOUT_S) -> ToolDef:
        """Register a typed livekit-agents ``@function_tool``: its schema comes from the
        type hints and docstring, its arguments are converted by livekit-agents."""
        schema = build_legacy_openai_schema(fn, internally_tagged=True)

        async def run(arguments: dict[str, Any], call: CallContext) -> Any:
            args, kwargs = prepare_function_arguments(fnc=fn, json_arguments=json.dumps(arguments))
            return await fn(*args, **kwargs)

        tool = ToolDef(schema["name"], schema.get("description", ""), schema["parameters"], run, side_effects, timeout)
        self.add(tool)
        return tool

    def get(self, name: str) -> ToolDef | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def select(self, names: Iterable[str] | None) -> ToolRegistry:
        """A registry with only ``names`` (None: all); unknown names are logged and skipped."""
        wanted = list(self._tools) if names is None else list(dict.fromkeys(names))
        for name in wanted:
            if name not in self._tools:
                log.warning("tool %r is not registered; known tools: %s", name, ", ".join(self._tools))
        # The tools were checked when they were added here: checking their schemas
        # again (jsonschema's meta-schema walk) took 0.3-0.5 s of a job's event loop
        # before its greeting on a loaded machine (CI worker log, 2026-12-07).
        chosen = ToolRegistry(ledger=self.ledger)
        chosen._tools = {n: self._tools[n] for n in wanted if n in self._tools}
        return chosen

    # ------------------------------------------------------------------ execution

    async def execute(self, name: str, arguments: dict[str, Any] | str, call: CallContext) -> Outcome:
        tool = self._tools.get(name)
        if tool is None:
            return Outcome(f"error: there is no tool named {name!r}", is_error=True, ran=False)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except json.JSONDecodeError as e:
                return Outcome(f"error: the arguments are not valid JSON ({e.msg}); send a JSON object", True, ran=False)
        if not isinstance(arguments, dict):
            return Outcome("error: the arguments must be a JSON object", True, ran=False)
        problems = _validation_errors(arguments, tool.parameters)
        if problems:
            return Outcome("error: invalid arguments: " + "; ".join(problems), True, ran=False)
        if tool.side_effects and self.ledger is not None:
            claimed = await asyncio.to_thread(self.ledger.claim, call.call_id, name, arguments, call.room)
            if not claimed:
                return await self._recorded(tool, call)
        outcome = await self._run(tool, arguments, call)
        if tool.side_effects and self.ledger is not None:
            await asyncio.to_thread(self.ledger.finish, call.call_id, outcome.output, is_error=outcome.is_error)
        return outcome

    async def _recorded(self, tool: ToolDef, call: CallContext) -> Outcome:
        assert self.ledger is not None
        entry = await self.ledger.wait_result(call.call_id, timeout=tool.timeout + 1)
        log.info("tool %s: call %s already handled (%s); not running it again", tool.name, call.call_id, entry and entry.status)
        if entry is not None and entry.status == "done" and entry.result is not None:
            return Outcome(entry.result, entry.is_error, ran=False)
        return Outcome(
            f"error: call {call.call_id} of {tool.name} was started before and did not finish; "
            "it was not repeated, to avoid doing it twice",
            is_error=True,
            ran=False,
        )

    async def _run(self, tool: ToolDef, arguments: dict[str, Any], call: CallContext) -> Outcome:
        token = _current.set(call)
        try:
            result = await asyncio.wait_for(tool.run(arguments, call), tool.timeout)
        except TimeoutError:
            log.warning("tool %s timed out after %.1fs (call %s)", tool.name, tool.timeout, call.call_id)
            return Outcome(f"error: {tool.name} did not answer within {tool.timeout:g} seconds", True)
        except ToolError as e:  # meant for the model
            return Outcome(f"error: {e.message}", True)
        except Exception as e:
            log.exception("tool %s failed (call %s)", tool.name, call.call_id)
            return Outcome(f"error: {tool.name} failed: {_describe(e)}", True)
        finally:
            _current.reset(token)
        return Outcome(_as_text(result))

    # ------------------------------------------------------------------ livekit-agents

    def function_tools(self, make_call: Callable[[RunContext[Any]], CallContext], observer: ToolObserver | None = None) -> list[Any]:
        """The registry as livekit-agents raw function tools for an Agent.

        ``make_call`` turns the framework's RunContext into our CallContext
        (call id, room, services); ``observer`` hears of each call as it starts
        and ends (agent.feed publishes them to the room).
        """
        return [self._function_tool(t, make_call, observer) for t in self._tools.values()]

    def _function_tool(self, tool: ToolDef, make_call: Callable[[RunContext[Any]], CallContext], observer: ToolObserver | None) -> Any:
        async def handler(raw_arguments: dict[str, Any], context: RunContext[Any]) -> str:
            call = make_call(context)
            if observer is not None:
                observer.tool_started(call.call_id, tool.name, raw_arguments)
            try:
                outcome = await self.execute(tool.name, raw_arguments, call)
            except asyncio.CancelledError:  # the reply was interrupted: the call did not end by itself
                if observer is not None:
                    observer.tool_finished(call.call_id, tool.name, raw_arguments, "cancelled", is_error=True)
                raise
            if observer is not None:
                observer.tool_finished(call.call_id, tool.name, raw_arguments, outcome.output, is_error=outcome.is_error)
            if outcome.is_error:
                raise ToolError(outcome.output.removeprefix("error: "))
            return outcome.output

        return function_tool(handler, raw_schema=tool.schema())


def _validation_errors(arguments: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path)
        problems.append(f"{where}: {err.message}" if where else err.message)
    return problems


def _as_text(result: Any) -> str:
    if result is None:
        return "done"
    if isinstance(result, str):
        return result
    return json.dumps(result, default=str)


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
