"""Built-in tools for the coffee-shop agent: customers and their orders, a human, hanging up.

They are typed livekit-agents function tools (schema from type hints and
docstrings) and reach the store and the room through :class:`Services`,
found with :func:`current_call` while they run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from livekit.agents import ToolError, function_tool

from .registry import ToolRegistry, current_call
from .store import MENU, Store, StoreError

log = logging.getLogger("agent.tools")

ESCALATION_TOPIC = "agent.escalation"
OPENING_HOURS = {
    "monday": "7 am to 6 pm",
    "tuesday": "7 am to 6 pm",
    "wednesday": "7 am to 6 pm",
    "thursday": "7 am to 6 pm",
    "friday": "7 am to 8 pm",
    "saturday": "8 am to 8 pm",
    "sunday": "9 am to 3 pm",
}


@dataclass
class Services:
    """What the built-in tools act on. The session fills in the room hooks."""

    store: Store
    room_name: str | None = None
    escalation_webhook: str | None = None
    # Hooks into the room (set by the session; absent in `tools call` and unit tests).
    mark_escalated: Callable[[str], Awaitable[bool]] | None = None  # reason -> marks room, sends data message; True: the call is being transferred
    end_call: Callable[[], Awaitable[None]] | None = None
    # The caller's next keypad entry (digits up to '#' or a pause), None if none came in time;
    # LookupError when the caller is not on a phone.
    read_keypad: Callable[[float], Awaitable[str | None]] | None = None
    notes: list[str] = field(default_factory=list)


def _services() -> Services:
    services = current_call().services
    if not isinstance(services, Services):
        raise ToolError("this tool needs the demo store, which is not configured here")
    return services


def _store_call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except StoreError as e:
        raise ToolError(str(e)) from None


@function_tool
async def get_opening_hours(day: str) -> str:
    """Opening hours of the coffee shop on a day of the week.

    Args:
        day: the day of the week, e.g. "sunday"
    """
    hours = OPENING_HOURS.get(day.strip().lower())
    if hours is None:
        raise ToolError(f"{day!r} is not a day of the week")
    return f"On {day.strip().capitalize()} we are open {hours}."


@function_tool
async def get_customer(phone: str | None = None, email: str | None = None, name: str | None = None) -> str:
    """Look up a customer by phone number, email address or name, to personalise the answer.

    Args:
        phone: the caller's phone number, any format
        email: the caller's email address
        name: the caller's full or partial name
    """
    customer = _find_customer(phone, email, name)
    if customer is None:
        return "No customer found with those details."
    return json.dumps({"customer_id": customer["id"], "name": customer["name"], "message": f"Found {customer['name']}."})


@function_tool
async def find_orders(phone: str | None = None, email: str | None = None, name: str | None = None) -> str:
    """The caller's latest orders with their status, found by the caller's phone number, email address or name.
    Use it when the caller asks about their order and does not give its number.

    Args:
        phone: the caller's phone number, any format
        email: the caller's email address
        name: the caller's full or partial name
    """
    services = _services()
    customer = _find_customer(phone, email, name)
    if customer is None:
        return json.dumps({"orders": [], "message": "No customer found with those details."})
    orders = services.store.customer_orders(customer["id"])
    listed = [{"order_id": o.id, "status": o.status, "items": o.items_spoken(), "total": o.total_cents / 100} for o in orders]
    if not orders:
        message = f"{customer['name']} has no orders."
    else:
        count = f"{len(orders)} order{'s' if len(orders) > 1 else ''}"
        message = f"{customer['name']} has {count}: " + "; ".join(o.summary() for o in orders) + "."
    return json.dumps({"customer_id": customer["id"], "name": customer["name"], "orders": listed, "message": message})


def _find_customer(phone: str | None, email: str | None, name: str | None) -> dict[str, Any] | None:
    if not (phone or email or name):
        raise ToolError("give a phone number, an email address or a name")
    return _services().store.find_customer(phone=phone, email=email, name=name)


@function_tool
async def place_order(item: str, quantity: int = 1, customer_id: str | None = None) -> str:
    """Place an order for a menu item (latte, cappuccino, espresso, americano, flat white, tea, croissant).

    Args:
        item: the menu item
        quantity: how many, 1 to 20
        customer_id: the customer's id from get_customer, if known
    """
    services = _services()
    order = _store_call(
        lambda: services.store.place_order([{"item": item, "quantity": quantity}], customer_id=customer_id, room=services.room_name)
    )
    return json.dumps(
        {"order_id": order.id, "total": order.total_cents / 100,
         "message": f"Order number {order.id} is placed: {quantity} {order.items[0]['item']}, ${order.total_cents / 100:.2f}."}
    )  # fmt: skip


@function_tool
async def get_order_status(order_id: int) -> str:
    """The status of an order.

    Args:
        order_id: the order number
    """
    order = _services().store.get_order(order_id)
    if order is None:
        raise ToolError(f"there is no order {order_id}")
    return json.dumps({"order_id": order.id, "status": order.status, "message": order.summary().capitalize() + "."})


@function_tool
async def cancel_order(order_id: int) -> str:
    """Cancel an order that was placed.

    Args:
        order_id: the order number
    """
    services = _services()
    order = _store_call(lambda: services.store.cancel_order(order_id))
    return json.dumps({"order_id": order.id, "status": order.status, "message": f"Order number {order.id} is cancelled."})


@function_tool
async def escalate_to_human(reason: str) -> str:
    """Hand the caller over to a person on the staff, when they ask for one or you cannot help.

    Args:
        reason: why the caller needs a person, in a few words
    """
    services = _services()
    escalation = services.store.record_escalation(services.room_name, reason)
    told = []
    transferring = False
    if services.mark_escalated is not None:
        transferring = await services.mark_escalated(reason)
        told.append("room")
    if services.escalation_webhook:
        payload = {"room": services.room_name, "reason": reason, "escalation_id": escalation}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                async with http.post(services.escalation_webhook, json=payload) as resp:
                    resp.raise_for_status()
            told.append("webhook")
        except (aiohttp.ClientError, TimeoutError) as e:
            log.error("escalation webhook %s failed: %s", services.escalation_webhook, e)
    log.info("escalation %d in room %s (%s) notified: %s", escalation, services.room_name, reason, told or "nobody")
    if transferring:  # a phone call, put through once the agent has said so (agent.phone)
        message = "The call is being put through to a member of staff now."
    else:
        message = "A member of staff has been notified and will join this call shortly."
    return json.dumps({"escalation_id": escalation, "message": message})


@function_tool
async def end_call() -> str:
    """End the call, after the caller says goodbye or asks to hang up."""
    services = _services()
    if services.end_call is not None:
        await services.end_call()
    return json.dumps({"message": "Goodbye, thanks for calling."})


KEYPAD_WAIT_S = 30.0


@function_tool
async def read_keypad() -> str:
    """Read digits the caller types on their phone's keypad (ended by # or a short pause), for numbers
    that are easier typed than said: an order number, an account number. Ask the caller to type them first."""
    services = _services()
    not_on_phone = ToolError("the caller is not on a phone: ask them to say the number instead")
    if services.read_keypad is None:
        raise not_on_phone
    try:
        digits = await services.read_keypad(KEYPAD_WAIT_S)
    except LookupError:
        raise not_on_phone from None
    if digits is None:
        raise ToolError(f"the caller typed nothing within {KEYPAD_WAIT_S:g} seconds")
    return json.dumps({"digits": digits, "message": f"The caller typed {' '.join(digits)}."})


def register_builtins(registry: ToolRegistry) -> None:
    registry.add_function(get_opening_hours)
    registry.add_function(get_customer)
    registry.add_function(find_orders)
    registry.add_function(place_order, side_effects=True)
    registry.add_function(get_order_status)
    registry.add_function(cancel_order, side_effects=True)
    registry.add_function(escalate_to_human, side_effects=True)
    registry.add_function(end_call, side_effects=True)
    registry.add_function(read_keypad, timeout=KEYPAD_WAIT_S + 5)


__all__ = ["MENU", "Services", "register_builtins"]
