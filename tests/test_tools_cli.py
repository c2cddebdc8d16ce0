"""`python -m agent tools list|call`: for operators debugging a tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env["AGENT_DB_PATH"] = str(tmp_path / "agent.db")
    return subprocess.run([sys.executable, "-m", "agent", "tools", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_list_prints_every_tool_with_its_schema(tmp_path: Path) -> None:
    done = run(tmp_path, "list")
    assert done.returncode == 0, done.stderr
    for name in ("get_customer", "find_orders", "place_order", "get_order_status", "cancel_order", "escalate_to_human", "end_call"):
        assert name in done.stdout
    assert "side effects" in done.stdout.split("place_order", 1)[1].splitlines()[0]
    assert '"required"' in done.stdout


def test_call_runs_a_tool_and_reports_errors_with_exit_1(tmp_path: Path) -> None:
    done = run(tmp_path, "call", "place_order", "--args", '{"item": "tea", "quantity": 3}', "--call-id", "op-1")
    assert done.returncode == 0, done.stderr
    # the demo store is seeded with orders 1001-1004; new orders are numbered after them
    assert json.loads(done.stdout)["message"].startswith("Order number 1005 is placed: 3 tea")
    again = run(tmp_path, "call", "place_order", "--args", '{"item": "tea", "quantity": 3}', "--call-id", "op-1")
    assert again.stdout == done.stdout  # the ledger answered; no second order
    bad = run(tmp_path, "call", "place_order", "--args", '{"item": 3}')
    assert bad.returncode == 1 and "item: 3 is not of type 'string'" in bad.stdout
