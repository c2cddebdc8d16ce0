"""Session records (agent.records): what is stored when a session closes, and how it is listed."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from livekit.agents import llm, utils
from livekit.agents.voice.events import CloseReason

from agent.cost import Usage, parse_prices
from agent.errors import ConfigError, RecordsUnavailable
from agent.metrics import SessionMeter
from agent.records import PostgresRecords, SessionRecord, SessionRecorder, SessionRecords, SqliteRecords, parse_since
from agent.testing.harness import free_port
from agent.transcript import TranscriptStore

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- a real PostgreSQL


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server (Debian's package) on a free loopback port; yields its
    URL without a database. It runs as the ``postgres`` user when we are root (it refuses root)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    bindir = Path(bins[-1]) if bins else Path(shutil.which("pg_ctl") or "pg_ctl").parent
    root = Path(tempfile.mkdtemp(prefix="agent-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "agent", "--no-sync"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    try:
        yield f"postgresql://agent@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres: str) -> str:
    """A fresh database on the server: its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return f"{postgres}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SessionRecords:
    if request.param == "sqlite":
        return SqliteRecords(tmp_path / "agent.db")
    return PostgresRecords(request.getfixturevalue("postgres_db"))


def _record(room: str, started_at: float, **extra: object) -> SessionRecord:
    fields: dict[str, object] = dict(room=room, worker="AW_1", job_id="AJ_1", model="gpt-realtime", started_at=started_at,
                                     ended_at=started_at + 30, close_reason="participant_disconnected", turns=2)  # fmt: skip
    fields.update(extra)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def test_records_come_back_as_stored_oldest_first(store: SessionRecords) -> None:
    late = _record("r1", 2000.0, tool_calls=[{"name": "place_order", "call_id": "c1", "outcome": "ok"}], usage={"audio_in": 5}, cost_usd=0.5)
    store.add(late)
    store.add(_record("r2", 1000.0))
    got = store.select()
    assert [r.room for r in got] == ["r2", "r1"]
    assert got[1] == late
    assert got[1].duration_s == 30


def test_records_filter_by_room_and_start(store: SessionRecords) -> None:
    for room, t in (("r1", 1000.0), ("r2", 2000.0), ("r1", 3000.0)):
        store.add(_record(room, t))
    assert [r.started_at for r in store.select(room="r1")] == [1000.0, 3000.0]
    assert [r.started_at for r in store.select(since=2000.0)] == [2000.0, 3000.0]
    assert [r.started_at for r in store.select(room="r1", since=2000.0)] == [3000.0]


def test_the_recorder_stores_the_session_once_with_its_figures(tmp_path: Path) -> None:
    transcript = TranscriptStore(tmp_path / "agent.db")
    transcript.append("r1", "message", {"role": "user", "text": "an earlier call", "interrupted": False})
    time.sleep(0.01)
    meter = SessionMeter(model="gpt-realtime", prices=parse_prices(None), silence_s=0.5)  # starts now
    store = SqliteRecords(tmp_path / "agent.db")
    recorder = SessionRecorder(store, transcript, meter, room="r1", worker="AW_1", job_id="AJ_1")
    session: utils.EventEmitter[str] = utils.EventEmitter()
    meter.attach(session)
    recorder.attach(session)
    transcript.record_message("r1", llm.ChatMessage(role="user", content=["two lattes please"]))
    transcript.record_message("r2", llm.ChatMessage(role="user", content=["another room"]))
    meter.on_usage(Usage(audio_in=600, audio_out=1200))
    meter.on_tool_call("place_order", "c1", is_error=False)
    meter.on_reconnected()
    session.emit("close", SimpleNamespace(reason=CloseReason.PARTICIPANT_DISCONNECTED))
    recorder.finish("again")  # a second end writes nothing
    (got,) = store.select()
    assert got.close_reason == "participant_disconnected"
    assert (got.room, got.worker, got.job_id, got.model) == ("r1", "AW_1", "AJ_1", "gpt-realtime")
    assert got.started_at == meter.started_at and got.started_at <= got.ended_at <= time.time()
    assert got.cost_usd == pytest.approx(0.30)
    assert got.usage == {**Usage(audio_in=600, audio_out=1200).as_dict(), "responses": 1}
    assert got.tool_calls == [{"name": "place_order", "call_id": "c1", "outcome": "ok"}]
    assert got.reconnects == 1 and got.rollovers == 0
    # this session's items of this room only: not the earlier call's, not the other room's
    assert got.transcript == [{"kind": "message", "role": "user", "text": "two lattes please", "interrupted": False}]


def test_since_takes_an_age_or_an_iso_time() -> None:
    assert parse_since("90s", now=1000.0) == 910.0
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("1.5d", now=200_000.0) == 200_000.0 - 129_600
    assert parse_since("2026-12-02T14:00", now=0.0) == datetime(2026, 12, 2, 14, 0).timestamp()
    with pytest.raises(ConfigError, match="neither an age"):
        parse_since("yesterday", now=0.0)


def _sessions(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "LIVEKIT_"))}
    env.update(AGENT_DB_PATH=str(db), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "agent", "sessions", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_sessions_command_lists_and_filters_the_records(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    store = SqliteRecords(db)
    store.add(_record("lobby", 1_000_000.0, cost_usd=0.0237, tool_calls=[{"name": "end_call", "call_id": "c9", "outcome": "ok"}]))
    store.add(_record("kitchen", 2_000_000.0))
    table = _sessions(db=db)
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert len(rows) == 3 and rows[0].startswith("started")
    assert "lobby" in rows[1] and "0.0237" in rows[1] and "30.0s" in rows[1] and "participant_disconnected" in rows[1]
    as_json = _sessions("--room", "lobby", "--json", db=db)
    (only,) = json.loads(as_json.stdout)
    assert only["room"] == "lobby" and only["duration_s"] == 30 and only["tool_calls"][0]["name"] == "end_call"
    since = _sessions("--since", datetime.fromtimestamp(1_500_000.0).isoformat(), "--json", db=db)
    assert [r["room"] for r in json.loads(since.stdout)] == ["kitchen"]


def test_the_sessions_command_says_what_a_bad_since_is(tmp_path: Path) -> None:
    done = _sessions("--since", "soon", db=tmp_path / "agent.db")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        "error: --since 'soon' is neither an age (90s, 30m, 2h, 7d) nor an ISO date/time (2026-12-02T14:00)"
    ]


def test_postgres_records_keep_json_as_jsonb(postgres_db: str) -> None:
    import psycopg

    PostgresRecords(postgres_db).add(_record("r1", 1000.0, usage={"audio_in": 600, "responses": 2}))
    with psycopg.connect(postgres_db) as db:
        row = db.execute("SELECT usage->>'audio_in', pg_typeof(transcript)::text FROM sessions").fetchone()
    assert row == ("600", "jsonb")


def test_postgres_job_processes_creating_the_table_at_once_all_get_their_row(postgres_db: str) -> None:
    # Several sessions ending together on a fresh database: CREATE TABLE IF NOT
    # EXISTS races in PostgreSQL without the lock.
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def end_session(n: int) -> None:
        store = PostgresRecords(postgres_db)  # one per job process
        start.wait()
        try:
            store.add(_record(f"r{n}", 1000.0 + n))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=end_session, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.room for r in PostgresRecords(postgres_db).select()) == [f"r{n}" for n in range(6)]


def test_an_unreachable_postgres_is_one_clear_error_without_the_password() -> None:
    store = PostgresRecords(f"postgresql://agent:s3cret@127.0.0.1:{free_port()}/agent")
    with pytest.raises(RecordsUnavailable) as e:
        store.add(_record("r1", 1000.0))
    assert "PostgreSQL at 127.0.0.1:" in str(e.value) and "s3cret" not in str(e.value)
    assert e.value.retryable


def test_a_session_whose_record_cannot_be_stored_ends_all_the_same(tmp_path: Path) -> None:
    meter = SessionMeter(model="gpt-realtime", prices=parse_prices(None), silence_s=0.5)
    store = PostgresRecords(f"postgresql://agent@127.0.0.1:{free_port()}/agent")
    recorder = SessionRecorder(store, TranscriptStore(tmp_path / "agent.db"), meter, room="r1", worker="AW_1", job_id="AJ_1")
    assert recorder.finish("participant_disconnected") is None  # logged, not raised


def test_the_records_url_must_be_postgres(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agent.config import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENT_RECORDS_URL", "mysql://agent@db/agent")
    with pytest.raises(ConfigError, match="AGENT_RECORDS_URL must be a PostgreSQL URL"):
        Settings.from_env()


def test_the_sessions_command_reads_postgres_when_the_url_is_set(postgres_db: str, tmp_path: Path) -> None:
    PostgresRecords(postgres_db).add(_record("pg-room", 1000.0))
    env_db = tmp_path / "unused.db"
    done = subprocess.run(
        [sys.executable, "-m", "agent", "sessions", "--json"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}, "AGENT_DB_PATH": str(env_db),
             "AGENT_RECORDS_URL": postgres_db, "PYTHONPATH": str(ROOT)},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [r["room"] for r in json.loads(done.stdout)] == ["pg-room"]
    assert not env_db.exists()
