"""Session records: one summary row per finished session, in the worker's SQLite file.

When a session closes, :class:`SessionRecorder` stores what it was: room,
worker, job, start, end, close reason, caller turns, the transcript (from
:class:`~agent.transcript.TranscriptStore`, the items written since the
session started), tool calls and their outcomes, token usage, cost and
realtime reconnects (from the session's :class:`~agent.metrics.SessionMeter`).
``python -m agent sessions`` lists them.

A job process that is killed writes no record: it has no chance to. The
store is SQLite by default (``AGENT_DB_PATH``, shared with the transcript
and the demo store), or PostgreSQL when ``AGENT_RECORDS_URL`` names one;
both keep one ``sessions`` table of the same columns (JSON ones as JSONB in
PostgreSQL). The record is written in the session's close handler, synchronously:
milliseconds for SQLite or a reachable PostgreSQL; an unreachable one holds
the closing job process (which serves this one room, whose caller is gone)
for up to its 5 s connect timeout, then the record is lost with an error in
the log.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from .config import Settings
from .db import connect, prepare
from .errors import ConfigError, RecordsUnavailable
from .metrics import SessionMeter
from .transcript import TranscriptStore

log = logging.getLogger("agent.records")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    worker TEXT NOT NULL,
    job_id TEXT NOT NULL,
    model TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    close_reason TEXT NOT NULL,
    turns INTEGER NOT NULL,
    transcript TEXT NOT NULL,   -- JSON list of {role, text, interrupted} and tool items
    tool_calls TEXT NOT NULL,   -- JSON list of {name, call_id, outcome}
    usage TEXT NOT NULL,        -- JSON of agent.cost.Usage plus "responses"
    cost_usd REAL NOT NULL,
    reconnects INTEGER NOT NULL,
    rollovers INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_room ON sessions (room, started_at);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at);
"""
_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id BIGSERIAL PRIMARY KEY,
    room TEXT NOT NULL,
    worker TEXT NOT NULL,
    job_id TEXT NOT NULL,
    model TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION NOT NULL,
    close_reason TEXT NOT NULL,
    turns INTEGER NOT NULL,
    transcript JSONB NOT NULL,
    tool_calls JSONB NOT NULL,
    usage JSONB NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    reconnects INTEGER NOT NULL,
    rollovers INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_room ON sessions (room, started_at);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at)
"""

_JSON_COLUMNS = ("transcript", "tool_calls", "usage")


@dataclass(frozen=True)
class SessionRecord:
    room: str
    worker: str
    job_id: str
    model: str
    started_at: float  # Unix time
    ended_at: float
    close_reason: str
    turns: int
    transcript: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    reconnects: int = 0
    rollovers: int = 0

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": round(self.duration_s, 3)}


class SessionRecords(Protocol):
    """Where records go: :class:`SqliteRecords` (the default) or :class:`PostgresRecords`
    (``AGENT_RECORDS_URL``). Both raise :class:`~agent.errors.RecordsUnavailable` when
    the database cannot be reached or refuses the statement."""

    def add(self, record: SessionRecord) -> None: ...

    def select(self, *, room: str | None = None, since: float | None = None) -> list[SessionRecord]:
        """Records oldest first; ``room``: that room's only; ``since``: started at that Unix time or later."""
        ...


def open_records(settings: Settings) -> SessionRecords:
    """The store the settings name; nothing is connected until it is used."""
    if settings.records_url:
        return PostgresRecords(settings.records_url)
    return SqliteRecords(settings.db_path)


def _where(room: str | None, since: float | None, mark: str) -> tuple[str, list[object]]:
    query = "SELECT * FROM sessions WHERE 1=1"
    args: list[object] = []
    if room is not None:
        query += f" AND room = {mark}"
        args.append(room)
    if since is not None:
        query += f" AND started_at >= {mark}"
        args.append(since)
    return query + " ORDER BY started_at, id", args


def _record(row: dict[str, Any]) -> SessionRecord:
    data = dict(row)
    del data["id"]
    for name in _JSON_COLUMNS:
        if isinstance(data[name], str):  # SQLite keeps JSON as text; PostgreSQL's JSONB comes back decoded
            data[name] = json.loads(data[name])
    return SessionRecord(**data)


class SqliteRecords:
    """The ``sessions`` table of the worker's SQLite file (``AGENT_DB_PATH``)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            prepare(self._path, _SCHEMA)
            self._ready = True
        return connect(self._path)

    def add(self, record: SessionRecord) -> None:
        row = asdict(record)
        for name in _JSON_COLUMNS:
            row[name] = json.dumps(row[name])
        try:
            with closing(self._connect()) as db, db:
                db.execute(f"INSERT INTO sessions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        except (sqlite3.Error, OSError) as e:
            raise RecordsUnavailable(f"cannot store the session record in {self._path}: {e}") from None

    def select(self, *, room: str | None = None, since: float | None = None) -> list[SessionRecord]:
        query, args = _where(room, since, "?")
        try:
            with closing(self._connect()) as db:
                return [_record(dict(row)) for row in db.execute(query, args).fetchall()]
        except (sqlite3.Error, OSError) as e:
            raise RecordsUnavailable(f"cannot read the session records in {self._path}: {e}") from None


class PostgresRecords:
    """The ``sessions`` table of a PostgreSQL database (``AGENT_RECORDS_URL``), with psycopg.

    Each call opens its own connection (a session ends once; the CLI lists once):
    no pool to keep across the job process's life."""

    CONNECT_TIMEOUT_S = 5

    def __init__(self, url: str) -> None:
        self._url = url
        self._ready = False

    def _where(self) -> str:
        parsed = urlsplit(self._url)
        return f"{parsed.hostname or 'localhost'}:{parsed.port or 5432}{parsed.path}"  # never the password

    def _connect(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        db = psycopg.connect(self._url, connect_timeout=self.CONNECT_TIMEOUT_S, autocommit=True, row_factory=dict_row)
        if not self._ready:
            # Job processes may create the table at the same moment, and CREATE ... IF NOT
            # EXISTS is not safe against that in PostgreSQL: one at a time, by a lock.
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(hashtext('agent.sessions'))")
                for statement in _PG_SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            self._ready = True
        return db

    def add(self, record: SessionRecord) -> None:
        import psycopg

        row = asdict(record)
        values = ", ".join("%s::jsonb" if name in _JSON_COLUMNS else "%s" for name in row)
        args = [json.dumps(v) if name in _JSON_COLUMNS else v for name, v in row.items()]
        try:
            with self._connect() as db:
                db.execute(f"INSERT INTO sessions ({', '.join(row)}) VALUES ({values})", args)
        except psycopg.Error as e:
            raise RecordsUnavailable(f"cannot store the session record in PostgreSQL at {self._where()}: {_first_line(e)}") from None

    def select(self, *, room: str | None = None, since: float | None = None) -> list[SessionRecord]:
        import psycopg

        query, args = _where(room, since, "%s")
        try:
            with self._connect() as db:
                return [_record(row) for row in db.execute(query, args).fetchall()]
        except psycopg.Error as e:
            raise RecordsUnavailable(f"cannot read the session records in PostgreSQL at {self._where()}: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: float) -> float:
    """``--since``: an age (``90s``, ``30m``, ``2h``, ``7d``) or an ISO date/time (local time unless it says).

    Returns a Unix time."""
    if m := _AGE.fullmatch(text.strip()):
        return now - float(m.group(1)) * _AGE_UNITS[m.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither an age (90s, 30m, 2h, 7d) nor an ISO date/time (2026-12-02T14:00)") from None


def transcript_entries(items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The transcript store's items as the record keeps them (the "end" markers left out)."""
    return [{"kind": kind, **data} for kind, data in items if kind != "end"]


class SessionRecorder:
    """Writes one session's record when the session closes."""

    def __init__(
        self, records: SessionRecords, transcript: TranscriptStore, meter: SessionMeter, *, room: str, worker: str, job_id: str
    ) -> None:
        self._records = records
        self._transcript = transcript
        self._meter = meter
        self._room, self._worker, self._job_id = room, worker, job_id
        self.written: SessionRecord | None = None

    def attach(self, session: Any) -> None:
        session.on("close", lambda ev: self.finish(str(getattr(ev.reason, "value", ev.reason))))

    def finish(self, reason: str) -> SessionRecord | None:
        if self.written is not None:
            return self.written  # one record per session
        m = self._meter
        record = SessionRecord(
            room=self._room, worker=self._worker, job_id=self._job_id, model=m.model,
            started_at=m.started_at, ended_at=m.clock(), close_reason=reason, turns=m.turns,
            transcript=transcript_entries(self._transcript.items(self._room, since=m.started_at)),
            tool_calls=[asdict(c) for c in m.tool_calls],
            usage={**m.usage.as_dict(), "responses": m.responses},
            cost_usd=m.cost_usd, reconnects=m.reconnects, rollovers=m.rollovers,
        )  # fmt: skip
        try:
            self._records.add(record)
        except RecordsUnavailable as e:  # the caller's session is over either way: say so, do not crash the close
            log.error("the record of the session in room %s is lost: %s", self._room, e)
            return None
        self.written = record
        log.info("session record of room %s: %.1f s, %d turns, $%.4f", self._room, record.duration_s, record.turns, record.cost_usd)
        return record
