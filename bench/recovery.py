"""Recovery times of the fault-injection room tests, over several runs.

Each fault is one room test (tests/test_resilience*_rooms.py) that asserts the
conversation goes on, the fact is remembered and nothing is done twice; each
prints its recovery figure on a ``[figure]`` line. This script runs every test
``--runs`` times (each run a fresh pytest process, so a fresh testbed) and
prints p50 and max per figure. A failed run is reported as such and counted.

    python -m agent.testing.netns -- python bench/recovery.py --runs 5
    python -m agent.testing.netns -- python bench/recovery.py --runs 5 --only hang
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (test node id, {figure label: regex with one group, seconds})
FAULTS: dict[str, tuple[str, dict[str, str]]] = {
    "ws-cut": (
        "tests/test_resilience_rooms.py::test_realtime_connection_cut_mid_answer_reconnects_and_answers",
        {"silence heard (s)": r"silence heard ([\d.]+)s", "full answer after asking (s)": r"full answer ([\d.]+)s"},
    ),
    "hang": (
        "tests/test_resilience_rooms.py::test_hung_backend_is_detected_announced_and_reconnected",
        {"notice after the hang (s)": r"notice heard ([\d.]+)s", "answer after the backend is back (s)": r"order confirmed ([\d.]+)s"},
    ),
    "network": (
        "tests/test_resilience_network_rooms.py::test_caller_network_drop_resumes_with_the_same_agent_and_conversation",
        {"answer after the network is back (s)": r"order confirmed ([\d.]+)s"},
    ),
    "livekit-restart": (
        "tests/test_resilience_process_rooms.py::test_livekit_server_crash_and_restart",
        {"rejoining caller greeted after (s)": r"greeted after ([\d.]+)s"},
    ),
    "job-kill": (
        "tests/test_resilience_process_rooms.py::test_killed_job_is_replaced_and_the_conversation_restored",
        {"new agent speaks after (s)": r"speaks in the room after ([\d.]+)s"},
    ),
    "rollover": (
        "tests/test_resilience_rooms.py::test_session_rolls_over_before_its_cap_with_the_context_carried",
        {"answer audio after asking (s)": r"answer audio ([\d.]+)s after asking"},
    ),
}


def run_once(node: str) -> tuple[bool, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", node],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    return done.returncode == 0, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=sorted(FAULTS), help="faults to run (default: all)")
    args = parser.parse_args()
    names = args.only or list(FAULTS)
    print(f"{'fault':<16} {'figure':<40} {'runs':>4} {'p50':>6} {'max':>6}  failed")
    failures = 0
    for name in names:
        node, figures = FAULTS[name]
        values: dict[str, list[float]] = {label: [] for label in figures}
        failed = 0
        started = time.monotonic()
        for _ in range(args.runs):
            ok, out = run_once(node)
            if not ok:
                failed += 1
                tail = "\n".join(out.splitlines()[-15:])
                print(f"--- {name}: a run failed; the end of its output:\n{tail}\n---", flush=True)
                continue
            for label, pattern in figures.items():
                values[label] += [float(v) for v in re.findall(pattern, out)]
        failures += failed
        for label, got in values.items():
            p50 = f"{statistics.median(got):6.2f}" if got else "     -"
            top = f"{max(got):6.2f}" if got else "     -"
            print(f"{name:<16} {label:<40} {len(got):>4} {p50} {top}  {failed}", flush=True)
        print(f"{'':<16} ({args.runs} runs in {time.monotonic() - started:.0f} s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
