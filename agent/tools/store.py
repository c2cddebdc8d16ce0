"""The demo store: customers and orders of a small coffee shop, in SQLite.

The built-in tools act on it. It is seeded on first use, so a fresh
database already has customers, and orders of theirs, to look up. SQLite
in WAL mode lets the worker's job processes (one per room) share one
file; every write is a short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..db import connect, prepare
from ..errors import StoreError as StoreError  # re-exported: where tools and tests import it from

MENU = {  # item -> price in cents
    "latte": 450,
    "cappuccino": 420,
    "espresso": 300,
    "americano": 350,
    "flat white": 430,
    "tea": 280,
    "croissant": 320,
}

SEED_CUSTOMERS = [
    ("C-1001", "Alice Martin", "+15550100", "alice@example.com"),
    ("C-1002", "Bob Chen", "+15550101", "bob@example.com"),
    ("C-1003", "Carla Diaz", "+15550102", "carla@example.com"),
]
# (id, customer, items, status): a caller's first "where is my order?" finds
# something. Fixed ids well above 1, so the AUTOINCREMENT sequence numbers new
# orders after them (1005, ...) and a new order never takes a seeded id.
SEED_ORDERS: list[tuple[int, str, list[dict[str, Any]], str]] = [
    (1001, "C-1001", [{"item": "latte", "quantity": 2}, {"item": "croissant", "quantity": 1}], "delivered"),
    (1002, "C-1001", [{"item": "cappuccino", "quantity": 1}], "preparing"),
    (1003, "C-1002", [{"item": "flat white", "quantity": 1}, {"item": "croissant", "quantity": 2}], "ready"),
    (1004, "C-1003", [{"item": "tea", "quantity": 2}], "cancelled"),
]
# A phone number is matched on its last digits (callers drop or add the
# country code); fewer than this many would match several customers.
PHONE_DIGITS = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT UNIQUE, email TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT REFERENCES customers(id),
    items TEXT NOT NULL,            -- JSON list of {item, quantity, price_cents}
    total_cents INTEGER NOT NULL,
    status TEXT NOT NULL,           -- placed | preparing | ready | delivered | cancelled
    room TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, room TEXT, reason TEXT, created_at REAL NOT NULL
);
"""


def menu_item(spoken: str) -> str | None:
    """The menu's name for what the caller said: case, spaces and plurals forgiven."""
    name = " ".join(spoken.lower().split())
    for candidate in (name, name[:-1] if name.endswith("s") else name, name[:-2] if name.endswith("es") else name):
        if candidate in MENU:
            return candidate
    return None


@dataclass(frozen=True)
class Order:
    id: int
    customer_id: str | None
    items: list[dict[str, Any]]
    total_cents: int
    status: str

    def items_spoken(self) -> str:
        return ", ".join(f"{i['quantity']} {i['item']}" for i in self.items)

    def summary(self) -> str:
        return f"order {self.id}: {self.items_spoken()}, total ${self.total_cents / 100:.2f}, {self.status}"


def price(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """An order's lines (``{item, quantity, price_cents}``, menu names) and its total in cents."""
    if not items:
        raise StoreError("an order needs at least one item")
    lines: list[dict[str, Any]] = []
    for entry in items:
        name = menu_item(str(entry.get("item", "")))
        if name is None:
            raise StoreError(f"we don't sell {entry.get('item')!r}; the menu is {', '.join(MENU)}")
        quantity = int(entry.get("quantity", 1))
        if not 1 <= quantity <= 20:
            raise StoreError("quantity must be between 1 and 20")
        lines.append({"item": name, "quantity": quantity, "price_cents": MENU[name]})
    return lines, sum(line["quantity"] * line["price_cents"] for line in lines)


_SEEDED_AT = 1767225600.0  # 2026-01-01 UTC: a fixed time keeps the seed the same in every database


def _seed_order_rows() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for order_id, customer_id, items, status in SEED_ORDERS:
        lines, total = price(items)
        rows.append((order_id, customer_id, json.dumps(lines), total, status, _SEEDED_AT))
    return rows


_SEED_ORDER_ROWS = _seed_order_rows()  # once per process: a session's set-up opens the store on its event loop


def _order(row: sqlite3.Row) -> Order:
    return Order(row["id"], row["customer_id"], json.loads(row["items"]), row["total_cents"], row["status"])


class Store:
    def __init__(self, path: str | Path) -> None:
        # INSERT OR IGNORE: opening the store again neither duplicates the seed
        # nor undoes what callers did to seeded rows.
        self.path = prepare(path, _SCHEMA, [
            ("INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?)", SEED_CUSTOMERS),
            ("INSERT OR IGNORE INTO orders (id, customer_id, items, total_cents, status, room, created_at)"
             " VALUES (?, ?, ?, ?, ?, NULL, ?)", _SEED_ORDER_ROWS),
        ])  # fmt: skip

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    # ---------------------------------------------------------------- customers

    def find_customer(self, *, phone: str | None = None, email: str | None = None, name: str | None = None) -> dict[str, Any] | None:
        """The customer with this phone number (any format), email address or
        name (full or partial), tried in that order; None if nobody matches."""
        digits = "".join(c for c in phone or "" if c.isdigit())
        spoken_name = " ".join((name or "").lower().split())
        with closing(self._connect()) as db:
            if len(digits) >= PHONE_DIGITS:
                for row in db.execute("SELECT * FROM customers ORDER BY id"):
                    if row["phone"] and "".join(c for c in row["phone"] if c.isdigit()).endswith(digits[-PHONE_DIGITS:]):
                        return dict(row)
            if email and email.strip():
                row = db.execute("SELECT * FROM customers WHERE lower(email) = lower(?)", (email.strip(),)).fetchone()
                if row:
                    return dict(row)
            if spoken_name:
                # instr, not LIKE: a "%" or "_" the caller said is a character, not a wildcard
                row = db.execute(
                    "SELECT * FROM customers WHERE instr(lower(name), ?) > 0 ORDER BY id", (spoken_name,)
                ).fetchone()
                if row:
                    return dict(row)
        return None

    # ---------------------------------------------------------------- orders

    def place_order(self, items: list[dict[str, Any]], *, customer_id: str | None = None, room: str | None = None) -> Order:
        lines, total = price(items)
        with closing(self._connect()) as db, db:
            cur = db.execute(
                "INSERT INTO orders (customer_id, items, total_cents, status, room, created_at) VALUES (?, ?, ?, 'placed', ?, ?)",
                (customer_id, json.dumps(lines), total, room, time.time()),
            )
            order_id = int(cur.lastrowid or 0)
        return Order(order_id, customer_id, lines, total, "placed")

    def get_order(self, order_id: int) -> Order | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        return None if row is None else _order(row)

    def cancel_order(self, order_id: int) -> Order:
        with closing(self._connect()) as db, db:
            cur = db.execute("UPDATE orders SET status = 'cancelled' WHERE id = ? AND status = 'placed'", (order_id,))
            changed = cur.rowcount
        order = self.get_order(order_id)
        if order is None:
            raise StoreError(f"there is no order {order_id}")
        if not changed and order.status != "cancelled":
            raise StoreError(f"order {order_id} cannot be cancelled ({order.status})")
        return order

    def orders(self, room: str | None = None) -> list[Order]:
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT * FROM orders" + (" WHERE room = ?" if room else "") + " ORDER BY id", (room,) if room else ()
            ).fetchall()
        return [_order(r) for r in rows]

    def customer_orders(self, customer_id: str, *, limit: int = 5) -> list[Order]:
        """A customer's latest orders, newest first."""
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT * FROM orders WHERE customer_id = ? ORDER BY id DESC LIMIT ?", (customer_id, limit)
            ).fetchall()
        return [_order(r) for r in rows]

    # ---------------------------------------------------------------- escalations

    def record_escalation(self, room: str | None, reason: str) -> int:
        with closing(self._connect()) as db, db:
            cur = db.execute("INSERT INTO escalations (room, reason, created_at) VALUES (?, ?, ?)", (room, reason, time.time()))
            return int(cur.lastrowid or 0)
