"""Prewarm: an idle job process builds what a job needs before its greeting
(agent.prewarm), and the job takes it instead of building it again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.config import Settings
from agent.prewarm import Prepared, prewarm, take_prepared
from agent.timing import Stopwatch
from agent.worker import build_server


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENT_DB_PATH", str(tmp_path / "agent.db"))
    return tmp_path


def test_an_idle_process_prepares_once_and_the_job_takes_it(env: Path) -> None:
    proc = SimpleNamespace(userdata={})
    prewarm(proc)  # type: ignore[arg-type]
    prepared = next(iter(proc.userdata.values()))
    assert isinstance(prepared, Prepared)
    assert "get_customer" in prepared.registry[0].names() and (env / "agent.db").exists()

    clock = Stopwatch()
    assert take_prepared(proc, Settings.from_env(), clock) is prepared  # type: ignore[arg-type]
    assert list(clock.laps) == ["prewarmed"]
    # Used up: one process serves one job, and nothing is shared by two.
    again = take_prepared(proc, Settings.from_env(), Stopwatch())  # type: ignore[arg-type]
    assert again is not prepared and isinstance(again, Prepared)


def test_without_prewarm_the_job_builds_everything_itself(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_PREWARM", "false")
    proc = SimpleNamespace(userdata={})
    prewarm(proc)  # type: ignore[arg-type]
    assert proc.userdata == {}
    clock = Stopwatch()
    take_prepared(proc, Settings.from_env(), clock)  # type: ignore[arg-type]
    assert list(clock.laps) == ["front-end", "transcript", "tools", "services"]


def test_the_worker_runs_prewarm_in_its_job_processes(env: Path) -> None:
    server = build_server(Settings.from_env())
    assert server.setup_fnc is prewarm


def test_with_barge_in_the_worker_vad_is_loaded_in_prewarm(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_BARGE_IN", "true")
    clock = Stopwatch()
    prepared = Prepared.make(Settings.from_env(), clock)
    assert prepared.vad is not None and "barge-in VAD" in clock.laps
    monkeypatch.setenv("AGENT_BARGE_IN", "false")
    assert Prepared.make(Settings.from_env(), Stopwatch()).vad is None
