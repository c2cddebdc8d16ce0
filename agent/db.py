"""SQLite for the worker's small stores (demo store, tool ledger, transcript).

One file is shared by the job processes of a worker (one per room), so every
connection uses WAL (readers do not block the writer) and waits for a busy
lock rather than failing; statements autocommit unless a ``with db:`` block
groups them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=10000")
    db.row_factory = sqlite3.Row
    return db


def prepare(path: str | Path, schema: str, seed: Iterable[tuple[str, Sequence[Sequence[object]]]] = ()) -> Path:
    """Make the file's folder, its tables (``schema``, idempotent) and seed rows
    (``(statement, rows)`` pairs), in one transaction; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(connect(path)) as db, db:
        db.executescript(schema)
        for statement, rows in seed:
            db.executemany(statement, rows)
    return path
