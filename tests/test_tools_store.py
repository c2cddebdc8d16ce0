"""The demo store: its seed (customers with orders a caller can ask about) and
finding a caller's customer record and orders from what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.tools import CallContext, Ledger, Services, Store, ToolRegistry
from agent.tools.builtin import register_builtins
from agent.tools.store import MENU, StoreError


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "agent.db")


def _ids(orders: list) -> list[int]:  # type: ignore[type-arg]
    return [o.id for o in orders]


# ------------------------------------------------------------------ the seed


def test_a_fresh_store_has_orders_for_the_seeded_customers(store: Store) -> None:
    seeded = store.orders()
    assert [(o.id, o.customer_id, o.status) for o in seeded] == [
        (1001, "C-1001", "delivered"),
        (1002, "C-1001", "preparing"),
        (1003, "C-1002", "ready"),
        (1004, "C-1003", "cancelled"),
    ]
    for order in seeded:  # priced from the menu, as a placed order is
        assert order.items and all(line["price_cents"] == MENU[line["item"]] for line in order.items)
        assert order.total_cents == sum(line["quantity"] * line["price_cents"] for line in order.items)


def test_opening_the_store_again_does_not_reseed_or_undo_changes(tmp_path: Path) -> None:
    first = Store(tmp_path / "agent.db")
    placed = first.place_order([{"item": "tea"}], customer_id="C-1003")
    first.cancel_order(placed.id)
    again = Store(tmp_path / "agent.db")
    assert _ids(again.orders()) == [1001, 1002, 1003, 1004, placed.id]
    assert again.get_order(placed.id).status == "cancelled"  # type: ignore[union-attr]


def test_new_orders_are_numbered_after_the_seeded_ones(store: Store) -> None:
    assert store.place_order([{"item": "latte"}]).id == 1005
    assert store.place_order([{"item": "tea"}]).id == 1006


def test_only_a_placed_order_can_be_cancelled(store: Store) -> None:
    with pytest.raises(StoreError, match=r"order 1002 cannot be cancelled \(preparing\)"):
        store.cancel_order(1002)
    assert store.cancel_order(1004).status == "cancelled"  # already cancelled: says so, no error


# ------------------------------------------------------------------ finding a caller


@pytest.mark.parametrize("name", ["Alice Martin", "alice", "  MARTIN ", "Alice  Martin"])
def test_a_customer_is_found_by_full_or_partial_name(store: Store, name: str) -> None:
    assert store.find_customer(name=name)["id"] == "C-1001"  # type: ignore[index]


@pytest.mark.parametrize("phone", ["+15550101", "+1 555 0101", "1-555-0101", "(555) 0101", "555.0101", "5550101"])
def test_a_customer_is_found_by_phone_in_any_format(store: Store, phone: str) -> None:
    assert store.find_customer(phone=phone)["id"] == "C-1002"  # type: ignore[index]


def test_a_customer_is_found_by_email_whatever_its_case(store: Store) -> None:
    assert store.find_customer(email=" Carla@Example.COM ")["id"] == "C-1003"  # type: ignore[index]


@pytest.mark.parametrize("details", [
    {"name": "Zoe Quinn"}, {"phone": "+1 555 9999"}, {"email": "nobody@example.com"},
    {"phone": "0101"},  # too few digits to tell one number from another
    {"name": " "}, {"name": "%"},  # nothing to match on; a LIKE wildcard is a character
    {},
])  # fmt: skip
def test_an_unknown_caller_is_not_matched_to_anyone(store: Store, details: dict[str, str]) -> None:
    assert store.find_customer(**details) is None


def test_a_customers_orders_come_newest_first(store: Store) -> None:
    placed = store.place_order([{"item": "espresso", "quantity": 2}], customer_id="C-1001")
    assert _ids(store.customer_orders("C-1001")) == [placed.id, 1002, 1001]
    assert _ids(store.customer_orders("C-1001", limit=2)) == [placed.id, 1002]
    assert store.customer_orders("C-9999") == []


# ------------------------------------------------------------------ the find_orders tool


@pytest.fixture
def registry(tmp_path: Path) -> ToolRegistry:
    registry = ToolRegistry(ledger=Ledger(tmp_path / "agent.db"))
    register_builtins(registry)
    return registry


def _call(store: Store, call_id: str) -> CallContext:
    return CallContext(call_id, room="r", services=Services(store=store, room_name="r"))


async def test_find_orders_lists_a_callers_orders_by_phone(registry: ToolRegistry, store: Store) -> None:
    outcome = await registry.execute("find_orders", {"phone": "555 0100"}, _call(store, "f1"))
    assert not outcome.is_error, outcome.output
    found = json.loads(outcome.output)
    assert found["customer_id"] == "C-1001" and found["name"] == "Alice Martin"
    assert [(o["order_id"], o["status"]) for o in found["orders"]] == [(1002, "preparing"), (1001, "delivered")]
    assert found["message"].startswith("Alice Martin has 2 orders: order 1002: ")


async def test_find_orders_includes_an_order_just_placed_for_the_customer(registry: ToolRegistry, store: Store) -> None:
    customer = json.loads((await registry.execute("get_customer", {"name": "Carla"}, _call(store, "g1"))).output)
    await registry.execute("place_order", {"item": "croissant", "customer_id": customer["customer_id"]}, _call(store, "p1"))
    found = json.loads((await registry.execute("find_orders", {"email": "carla@example.com"}, _call(store, "f2"))).output)
    assert [(o["order_id"], o["status"], o["items"]) for o in found["orders"]] == [
        (1005, "placed", "1 croissant"), (1004, "cancelled", "2 tea")]  # fmt: skip


async def test_find_orders_for_an_unknown_caller_says_so(registry: ToolRegistry, store: Store) -> None:
    outcome = await registry.execute("find_orders", {"name": "Zoe"}, _call(store, "f3"))
    assert not outcome.is_error and json.loads(outcome.output) == {"orders": [], "message": "No customer found with those details."}
    empty = await registry.execute("find_orders", {}, _call(store, "f4"))
    assert empty.is_error and "phone number, an email address or a name" in empty.output
