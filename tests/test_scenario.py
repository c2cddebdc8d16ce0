"""Scenarios without code (agent/testing/scenario.py): a YAML file of caller
steps run against any worker by ``python -m agent.testing run``, with a report
and an exit code for CI pipelines that are not Python."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.testing.harness import SLOTS
from agent.testing.scenario import ScenarioError, load

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_example_scenario_loads() -> None:
    scenario = load(ROOT / "examples" / "scenario.yaml")
    assert [s.kind for s in scenario.calls[0].steps] == ["hear", "say", "hear", "silence"]
    assert isinstance(scenario.brain, dict) and scenario.brain["rules"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("calls: []\n", "'calls' must be a list"),
        ("calls:\n  - steps: [{sing: la}]\n", "call 1, step 1: one of hear, say"),
        ("calls:\n  - steps: [{hear: hi, say: hello}]\n", "one of hear, say"),
        ("calls:\n  - steps: [{hear: hi, within: 3, loudly: true}]\n", "unknown option(s) loudly"),
        ("brian: {}\ncalls:\n  - steps: [{say: hi}]\n", "unknown key(s) brian"),
        ("- just a list\n", "a scenario is a mapping"),
        ("calls: [\n", "scenario.yaml"),
    ],
)
def test_a_wrong_scenario_is_refused_with_where_and_why(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ScenarioError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load(_write(tmp_path, text))


def _run(scenario: Path, worker: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.testing", "run", str(scenario), "--worker", worker, "--out", str(out), "--slot", str(SLOTS["plugin-inner"])],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


# The room lane: the backend must transcribe the caller's question in real time. In an
# idle-priority lane it was starved twice (its transcript was given up on at 6 s: "I heard you").
@pytest.mark.room
def test_a_scenario_passes_against_the_stock_agent_and_fails_against_a_broken_one(tmp_path: Path) -> None:
    passed = _run(ROOT / "examples" / "scenario.yaml", "examples.stock_agent:server", tmp_path / "good")
    print(f"\n[scenario] stock agent:\n{passed.stdout}{passed.stderr[-2000:]}")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "1 of 1 calls passed" in passed.stdout and passed.stdout.count("  ok   ") == 4

    failed = _run(ROOT / "examples" / "scenario.yaml", "examples.broken_agents:never_greets", tmp_path / "bad")
    print(f"\n[scenario] an agent that never greets:\n{failed.stdout}")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL 1. hear: 'how can I help you'" in failed.stdout and "heard no speech" in failed.stdout
    assert "0 of 1 calls passed" in failed.stdout
    assert (tmp_path / "bad" / "greets-and-answers" / "caller.wav").exists()
    assert list((tmp_path / "bad").glob("worker-*.log"))


def test_a_worker_that_does_not_start_is_one_clear_error(tmp_path: Path) -> None:
    scenario = _write(tmp_path, "calls:\n  - steps: [{say: hi}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "agent.testing", "run", str(scenario), "--worker", "no_such_module:server", "--out", str(tmp_path / "out"),
         "--slot", str(SLOTS["plugin-inner"])],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "could not run the scenario" in done.stderr and "no_such_module" in done.stderr
