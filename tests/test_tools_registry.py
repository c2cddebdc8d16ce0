"""The tool registry: schemas, validation, timeouts, failures, exactly-once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import function_tool

from agent.tools import CallContext, Ledger, Services, Store, ToolDef, ToolRegistry
from agent.tools.builtin import register_builtins


@function_tool
async def add_note(text: str, priority: int = 1, tags: list[str] | None = None) -> str:
    """Add a note for the staff.

    Args:
        text: what to write down
        priority: 1 (low) to 3 (high)
        tags: optional labels
    """
    return f"noted: {text} (p{priority})"


def _counting_tool(name: str = "charge", *, side_effects: bool = True, delay: float = 0.0, fail: bool = False, timeout: float = 5.0) -> tuple[ToolDef, list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    async def run(arguments: dict[str, Any], call: CallContext) -> Any:
        calls.append(arguments)
        await asyncio.sleep(delay)
        if fail:
            raise RuntimeError("card reader on fire")
        return {"message": f"charged {arguments['amount']}", "n": len(calls)}

    schema = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number", "minimum": 0}}}
    return ToolDef(name, "Charge the card", schema, run, side_effects=side_effects, timeout=timeout), calls


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "agent.db")


# ------------------------------------------------------------------ schemas


def test_typed_tool_schema_comes_from_hints_and_docstring() -> None:
    registry = ToolRegistry()
    tool = registry.add_function(add_note)
    assert tool.name == "add_note"
    assert tool.description.startswith("Add a note for the staff.")
    props = tool.parameters["properties"]
    assert props["text"]["type"] == "string" and props["text"]["description"] == "what to write down"
    assert props["priority"]["type"] == "integer" and props["priority"]["default"] == 1
    assert tool.parameters["required"] == ["text"]


def test_a_bad_schema_is_refused_at_registration() -> None:
    async def run(arguments: dict[str, Any], call: CallContext) -> str:
        return ""

    with pytest.raises(ValueError, match="schema is invalid"):
        ToolRegistry().add(ToolDef("broken", "", {"type": "objekt"}, run))


def test_two_tools_cannot_share_a_name() -> None:
    tool, _ = _counting_tool()
    registry = ToolRegistry([tool])
    with pytest.raises(ValueError, match="already registered"):
        registry.add(tool)


# ------------------------------------------------------------------ execution


async def test_typed_tool_runs_with_converted_arguments() -> None:
    registry = ToolRegistry()
    registry.add_function(add_note)
    outcome = await registry.execute("add_note", '{"text": "call back", "priority": 3}', CallContext("c1"))
    assert outcome == type(outcome)("noted: call back (p3)")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"amount": "ten"}', "amount: 'ten' is not of type 'number'"),
        ("{}", "'amount' is a required property"),
        ('{"amount": -1}', "amount: -1 is less than the minimum of 0"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
async def test_invalid_arguments_go_back_to_the_model_and_nothing_runs(arguments: str, expected: str) -> None:
    tool, calls = _counting_tool()
    outcome = await ToolRegistry([tool]).execute("charge", arguments, CallContext("c1"))
    assert outcome.is_error and expected in outcome.output, outcome
    assert calls == []


async def test_timeout_becomes_an_error_output() -> None:
    tool, _ = _counting_tool(delay=5, timeout=0.2, side_effects=False)
    outcome = await ToolRegistry([tool]).execute("charge", {"amount": 1}, CallContext("c1"))
    assert outcome.is_error and "did not answer within 0.2 seconds" in outcome.output


async def test_exception_becomes_an_error_output() -> None:
    tool, _ = _counting_tool(fail=True, side_effects=False)
    outcome = await ToolRegistry([tool]).execute("charge", {"amount": 1}, CallContext("c1"))
    assert outcome.is_error and "RuntimeError: card reader on fire" in outcome.output


async def test_unknown_tool_is_an_error_output() -> None:
    outcome = await ToolRegistry().execute("nope", {}, CallContext("c1"))
    assert outcome.is_error and "no tool named 'nope'" in outcome.output


# ------------------------------------------------------------------ exactly once


async def test_side_effect_runs_once_per_call_id_and_replays_get_the_recorded_result(ledger: Ledger) -> None:
    tool, calls = _counting_tool()
    registry = ToolRegistry([tool], ledger=ledger)
    first = await registry.execute("charge", {"amount": 5}, CallContext("call_A", room="r1"))
    again = await registry.execute("charge", {"amount": 5}, CallContext("call_A", room="r1"))
    other = await registry.execute("charge", {"amount": 5}, CallContext("call_B", room="r1"))
    assert len(calls) == 2  # call_A once, call_B once
    assert again.output == first.output and not again.ran and first.ran
    assert json.loads(other.output)["n"] == 2
    entry = ledger.get("call_A")
    assert entry is not None and entry.status == "done" and entry.arguments == {"amount": 5}
    assert entry.room == "r1" and json.loads(entry.result or "")["n"] == 1


async def test_concurrent_duplicates_run_once(ledger: Ledger) -> None:
    tool, calls = _counting_tool(delay=0.3)
    registry = ToolRegistry([tool], ledger=ledger)
    outcomes = await asyncio.gather(*(registry.execute("charge", {"amount": 1}, CallContext("same")) for _ in range(5)))
    assert len(calls) == 1
    assert len({o.output for o in outcomes}) == 1


async def test_ledger_is_shared_across_registries_like_across_processes(ledger: Ledger, tmp_path: Path) -> None:
    tool, calls = _counting_tool()
    await ToolRegistry([tool], ledger=ledger).execute("charge", {"amount": 1}, CallContext("x"))
    await ToolRegistry([tool], ledger=Ledger(tmp_path / "agent.db")).execute("charge", {"amount": 1}, CallContext("x"))
    assert len(calls) == 1


async def test_a_run_that_died_half_way_is_not_repeated(ledger: Ledger) -> None:
    tool, calls = _counting_tool(timeout=0.5)
    ledger.claim("ghost", "charge", {"amount": 1})  # its process was killed mid-run
    outcome = await ToolRegistry([tool], ledger=ledger).execute("charge", {"amount": 1}, CallContext("ghost"))
    assert outcome.is_error and "not repeated" in outcome.output
    assert calls == []


async def test_read_only_tools_skip_the_ledger(ledger: Ledger) -> None:
    tool, calls = _counting_tool(side_effects=False)
    registry = ToolRegistry([tool], ledger=ledger)
    for _ in range(2):
        await registry.execute("charge", {"amount": 1}, CallContext("same"))
    assert len(calls) == 2 and ledger.entries() == []


# ------------------------------------------------------------------ built-ins on the demo store


async def test_builtins_place_and_cancel_an_order(tmp_path: Path) -> None:
    registry = ToolRegistry(ledger=Ledger(tmp_path / "agent.db"))
    register_builtins(registry)
    store = Store(tmp_path / "agent.db")
    call = lambda cid: CallContext(cid, room="r", services=Services(store=store, room_name="r"))  # noqa: E731
    found = json.loads((await registry.execute("get_customer", {"email": "BOB@example.com"}, call("c0"))).output)
    assert found["customer_id"] == "C-1002"
    placed = await registry.execute("place_order", {"item": "Lattes", "quantity": 2, "customer_id": "C-1002"}, call("c1"))
    order_id = json.loads(placed.output)["order_id"]
    assert store.get_order(order_id).items == [{"item": "latte", "quantity": 2, "price_cents": 450}]  # type: ignore[union-attr]
    refused = await registry.execute("place_order", {"item": "pizza"}, call("c2"))
    assert refused.is_error and "we don't sell 'pizza'" in refused.output
    cancelled = await registry.execute("cancel_order", {"order_id": order_id}, call("c3"))
    assert json.loads(cancelled.output)["status"] == "cancelled"
    status = await registry.execute("get_order_status", {"order_id": order_id}, call("c4"))
    assert "cancelled" in status.output
    assert len(store.orders(room="r")) == 1


async def test_escalation_marks_the_room_and_calls_the_webhook(tmp_path: Path, serve_app: Any) -> None:
    from aiohttp import web

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    base = await serve_app(app)
    marked: list[str] = []

    async def mark(reason: str) -> bool:
        marked.append(reason)
        return False  # not a phone call being transferred

    registry = ToolRegistry(ledger=Ledger(tmp_path / "agent.db"))
    register_builtins(registry)
    services = Services(store=Store(tmp_path / "agent.db"), room_name="r9",
                        escalation_webhook=f"{base}/hook", mark_escalated=mark)  # fmt: skip
    outcome = await registry.execute("escalate_to_human", {"reason": "wants a manager"}, CallContext("e1", "r9", services))
    assert "notified" in outcome.output
    assert marked == ["wants a manager"]
    assert received and received[0]["room"] == "r9" and received[0]["reason"] == "wants a manager"


# ------------------------------------------------------------------ which tools a room gets


def test_room_metadata_narrows_the_configured_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agent.config import Settings
    from agent.tools import tool_names_for_room

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENT_TOOLS", "all")
    everything = Settings.from_env()
    assert tool_names_for_room(everything, [None, ""]) is None
    assert tool_names_for_room(everything, ['{"tools": ["get_customer"]}', None]) == ["get_customer"]
    assert tool_names_for_room(everything, ["not json", '{"tools": ["end_call"]}']) == ["end_call"]
    monkeypatch.setenv("AGENT_TOOLS", "get_customer, place_order")
    pool = Settings.from_env()
    assert tool_names_for_room(pool, [None]) == ["get_customer", "place_order"]
    # a room cannot grant itself a tool outside the pool
    assert tool_names_for_room(pool, ['{"tools": ["place_order", "cancel_order"]}']) == ["place_order"]
