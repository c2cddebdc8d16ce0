"""Session records (agent.records): what is stored when a session closes, and how it is listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from livekit.agents import llm, utils
from livekit.agents.voice.events import CloseReason

from agent.cost import Usage, parse_prices
from agent.errors import ConfigError
from agent.metrics import SessionMeter
from agent.records import SessionRecord, SessionRecorder, SessionRecords, parse_since
from agent.transcript import TranscriptStore

ROOT = Path(__file__).resolve().parents[1]


def _record(room: str, started_at: float, **extra: object) -> SessionRecord:
    fields: dict[str, object] = dict(room=room, worker="AW_1", job_id="AJ_1", model="gpt-realtime", started_at=started_at,
                                     ended_at=started_at + 30, close_reason="participant_disconnected", turns=2)  # fmt: skip
    fields.update(extra)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def test_records_come_back_as_stored_oldest_first(tmp_path: Path) -> None:
    store = SessionRecords(tmp_path / "agent.db")
    late = _record("r1", 2000.0, tool_calls=[{"name": "place_order", "call_id": "c1", "outcome": "ok"}], usage={"audio_in": 5}, cost_usd=0.5)
    store.add(late)
    store.add(_record("r2", 1000.0))
    got = store.select()
    assert [r.room for r in got] == ["r2", "r1"]
    assert got[1] == late
    assert got[1].duration_s == 30


def test_records_filter_by_room_and_start(tmp_path: Path) -> None:
    store = SessionRecords(tmp_path / "agent.db")
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
    store = SessionRecords(tmp_path / "agent.db")
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
    store = SessionRecords(db)
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
