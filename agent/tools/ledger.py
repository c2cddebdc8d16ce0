"""The call ledger: each side-effecting tool call runs at most once per call id.

A call id is claimed in SQLite before the tool runs (``INSERT`` on the
primary key: exactly one claimant wins, across processes). The winner runs
the tool and records the result; anyone who comes later with the same call
id -- a replayed conversation after a reconnect, a retried request -- gets
the recorded result, or waits for it while the first run is still going.
A run that died half-way (its process was killed) stays ``running``: it is
never re-run, because whether its side effect happened is unknown; the
caller is told so instead.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..db import connect, prepare

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_calls (
    call_id TEXT PRIMARY KEY,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    status TEXT NOT NULL,      -- running | done
    result TEXT,               -- what the model was told (JSON text)
    is_error INTEGER NOT NULL DEFAULT 0,
    room TEXT,
    started_at REAL NOT NULL,
    finished_at REAL
);
"""


@dataclass(frozen=True)
class LedgerEntry:
    call_id: str
    tool: str
    arguments: dict[str, Any]
    status: str
    result: str | None
    is_error: bool
    room: str | None
    started_at: float
    finished_at: float | None


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = prepare(path, _SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def claim(self, call_id: str, tool: str, arguments: dict[str, Any], room: str | None = None) -> bool:
        """True if this caller may run the call; False if it was claimed before."""
        with closing(self._connect()) as db, db:
            cur = db.execute(
                "INSERT OR IGNORE INTO tool_calls (call_id, tool, arguments, status, room, started_at) VALUES (?, ?, ?, 'running', ?, ?)",
                (call_id, tool, json.dumps(arguments, sort_keys=True), room, time.time()),
            )
            return cur.rowcount == 1

    def finish(self, call_id: str, result: str, *, is_error: bool = False) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "UPDATE tool_calls SET status = 'done', result = ?, is_error = ?, finished_at = ? WHERE call_id = ?",
                (result, int(is_error), time.time(), call_id),
            )

    def get(self, call_id: str) -> LedgerEntry | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM tool_calls WHERE call_id = ?", (call_id,)).fetchone()
        return _entry(row) if row else None

    def entries(self, tool: str | None = None) -> list[LedgerEntry]:
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT * FROM tool_calls" + (" WHERE tool = ?" if tool else "") + " ORDER BY started_at", (tool,) if tool else ()
            ).fetchall()
        return [_entry(r) for r in rows]

    async def wait_result(self, call_id: str, timeout: float) -> LedgerEntry | None:
        """The finished entry, polling while another run of the same call is in flight."""
        deadline = time.monotonic() + timeout
        while True:
            entry = await asyncio.to_thread(self.get, call_id)
            if entry is None or entry.status == "done" or time.monotonic() >= deadline:
                return entry
            await asyncio.sleep(0.05)


def _entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        call_id=row["call_id"],
        tool=row["tool"],
        arguments=json.loads(row["arguments"]),
        status=row["status"],
        result=row["result"],
        is_error=bool(row["is_error"]),
        room=row["room"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
