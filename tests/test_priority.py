"""Callers at normal CPU priority in an idle-priority lane (agent/testing/priority.py),
the system under test kept at idle (Stack(idle=True))."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scheduling policies are Linux's")

_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from pathlib import Path
    from agent.stack import Stack
    from agent.testing import priority

    def names(policies):
        return sorted({ {os.SCHED_IDLE: "idle", os.SCHED_OTHER: "normal"}.get(p, str(p)) for p in policies.values() })

    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()  # a thread started before the join (the SDK's)
    seen = {"lane_idle": priority.LANE_IDLE, "before": names(priority.thread_policies())}
    priority.caller_joined()
    priority.caller_joined()
    seen["joined"] = names(priority.thread_policies())
    stack = Stack(Path(sys.argv[1]), idle=priority.LANE_IDLE)
    child = stack.spawn("child", [sys.executable, "-c", "import os; print(os.sched_getscheduler(0) == os.SCHED_IDLE)"])
    child.proc.wait(30)
    seen["child_idle"] = child.log_text().strip()
    priority.caller_left()
    seen["one_left"] = names(priority.thread_policies())
    priority.caller_left()
    seen["all_left"] = names(priority.thread_policies())
    stop.set()
    print(json.dumps(seen))
    """
)


def _run(prefix: list[str], tmp_path: Path) -> dict[str, object]:
    out = subprocess.run([*prefix, sys.executable, "-c", _SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(os.geteuid() != 0, reason="leaving SCHED_IDLE needs CAP_SYS_NICE")
def test_in_an_idle_lane_a_joined_caller_runs_at_normal_priority_and_the_servers_stay_idle(tmp_path: Path) -> None:
    seen = _run(["chrt", "--idle", "0"], tmp_path)
    assert seen["lane_idle"] is True
    assert seen["before"] == ["idle"]
    assert seen["joined"] == ["normal"], "every thread of the caller's process at normal priority"
    assert seen["child_idle"] == "True", "a process the harness starts stays at idle priority"
    assert seen["one_left"] == ["normal"], "a caller still joined keeps it"
    assert seen["all_left"] == ["idle"], "the last caller gone, back to idle"


@pytest.mark.skipif(os.geteuid() != 0, reason="leaving SCHED_IDLE needs CAP_SYS_NICE")
def test_in_a_normal_lane_nothing_changes(tmp_path: Path) -> None:
    seen = _run(["chrt", "--other", "0"], tmp_path)  # this test itself may run in an idle lane
    assert seen["lane_idle"] is False
    assert seen["before"] == seen["joined"] == seen["one_left"] == seen["all_left"] == ["normal"]
    assert seen["child_idle"] == "False"
