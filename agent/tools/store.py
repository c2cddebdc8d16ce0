"""The demo store: customers and orders of a small coffee shop, in SQLite.

The built-in tools act on it. It is seeded on first use, so a fresh
database already has customers to look up. SQLite in WAL mode lets the
worker's job processes (one per room) share one file; every write is a
short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from ..db import connect, prepare

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT UNIQUE, email TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT REFERENCES customers(id),
    items TEXT NOT NULL,            -- JSON list of {item, quantity, price_cents}
    total_cents INTEGER NOT NULL,
    status TEXT NOT NULL,           -- placed | cancelled
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


class StoreError(ValueError):
    """A request the store refuses (unknown item, no such order...); the message is for the caller."""


@dataclass(frozen=True)
class Order:
    id: int
    customer_id: str | None
    items: list[dict[str, Any]]
    total_cents: int
    status: str

    def summary(self) -> str:
        parts = ", ".join(f"{i['quantity']} {i['item']}" for i in self.items)
        return f"order {self.id}: {parts}, total ${self.total_cents / 100:.2f}, {self.status}"


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = prepare(path, _SCHEMA, [("INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?)", SEED_CUSTOMERS)])

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    # ---------------------------------------------------------------- customers

    def find_customer(self, *, phone: str | None = None, email: str | None = None, name: str | None = None) -> dict[str, Any] | None:
        with closing(self._connect()) as db:
            if phone:
                digits = "".join(c for c in phone if c.isdigit())
                for row in db.execute("SELECT * FROM customers"):
                    if row["phone"] and "".join(c for c in row["phone"] if c.isdigit()).endswith(digits[-7:]):
                        return dict(row)
            if email:
                row = db.execute("SELECT * FROM customers WHERE lower(email) = lower(?)", (email.strip(),)).fetchone()
                if row:
                    return dict(row)
            if name:
                row = db.execute(
                    "SELECT * FROM customers WHERE lower(name) LIKE ? ORDER BY id", (f"%{name.strip().lower()}%",)
                ).fetchone()
                if row:
                    return dict(row)
        return None

    # ---------------------------------------------------------------- orders

    def place_order(self, items: list[dict[str, Any]], *, customer_id: str | None = None, room: str | None = None) -> Order:
        if not items:
            raise StoreError("an order needs at least one item")
        lines = []
        for entry in items:
            name = menu_item(str(entry.get("item", "")))
            if name is None:
                raise StoreError(f"we don't sell {entry.get('item')!r}; the menu is {', '.join(MENU)}")
            quantity = int(entry.get("quantity", 1))
            if not 1 <= quantity <= 20:
                raise StoreError("quantity must be between 1 and 20")
            lines.append({"item": name, "quantity": quantity, "price_cents": MENU[name]})
        total = sum(line["quantity"] * line["price_cents"] for line in lines)
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
        if row is None:
            return None
        return Order(row["id"], row["customer_id"], json.loads(row["items"]), row["total_cents"], row["status"])

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
        return [Order(r["id"], r["customer_id"], json.loads(r["items"]), r["total_cents"], r["status"]) for r in rows]

    # ---------------------------------------------------------------- escalations

    def record_escalation(self, room: str | None, reason: str) -> int:
        with closing(self._connect()) as db, db:
            cur = db.execute("INSERT INTO escalations (room, reason, created_at) VALUES (?, ?, ?)", (room, reason, time.time()))
            return int(cur.lastrowid or 0)
