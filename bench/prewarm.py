"""Prewarm before and after: a job's set-up time and the caller's wait for the greeting.

One livekit-server and the local realtime backend; our worker started twice,
with AGENT_PREWARM=false (the job builds its tool registry, stores and audio
front-end itself) and with it on (the idle job process built them). For each,
``--calls`` callers one after another join a fresh room and wait for the
greeting's first audio. It prints p50/p95 of the job's set-up until the
greeting is asked for (the job's own log line, agent/timing.py) and of join
-> first greeting audio, as the caller hears it.

    python -m agent.testing.netns -- .venv/bin/python bench/prewarm.py --calls 12
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.testing.harness import Testbed, free_port, room_name  # noqa: E402

SETUP_LINE = re.compile(r"job set-up until the greeting is asked for: (.*); total (\d+) ms")


def _pct(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] if len(values) > 1 else values[0]


async def measure(bed: Testbed, prewarm: bool, calls: int) -> tuple[list[float], list[float], dict[str, list[float]]]:
    name = "prewarm-on" if prewarm else "prewarm-off"
    worker = bed.stack.start_worker(
        env=bed.worker_environment(AGENT_PREWARM=str(prewarm).lower(), AGENT_HTTP_PORT=str(free_port()), AGENT_METRICS_PORT=str(free_port())),
        name=name,
        timeout=90,
    )
    worker.wait_for_log("process initialized", 90)
    greet_s: list[float] = []
    try:
        for _ in range(calls + 1):  # the first call warms the machine's caches; not counted
            await asyncio.sleep(2.0)  # the idle processes are made again
            caller = bed.caller(room_name(name))
            joined = time.time()
            try:
                await caller.join()
                heard = await caller.wait_for_speech(timeout=30)
                greet_s.append(heard - joined)
            finally:
                await caller.leave()
        laps: dict[str, list[float]] = {}
        totals: list[float] = []
        for match in SETUP_LINE.finditer(worker.log_text()):
            totals.append(int(match.group(2)) / 1000)
            for part in match.group(1).split(", "):
                lap, ms, _unit = part.rsplit(" ", 2)
                laps.setdefault(lap, []).append(int(ms) / 1000)
        return totals[1:], greet_s[1:], {k: v[1:] for k, v in laps.items()}
    finally:
        worker.stop()
        bed.stack.processes.remove(worker)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prewarm-") as tmp:
        with Testbed(Path(tmp), worker=False) as bed:

            async def both() -> dict[bool, tuple[list[float], list[float], dict[str, list[float]]]]:
                return {flag: await measure(bed, flag, args.calls) for flag in (False, True)}

            results = asyncio.run(both())
    for flag, (totals, greet, laps) in results.items():
        print(f"prewarm {'on ' if flag else 'off'}: job set-up p50 {_pct(totals, 50) * 1000:.0f} ms p95 {_pct(totals, 95) * 1000:.0f} ms; "
              f"join -> greeting p50 {_pct(greet, 50):.2f} s p95 {_pct(greet, 95):.2f} s (n={len(greet)})")  # fmt: skip
        print("   laps p50: " + ", ".join(f"{k} {_pct(v, 50) * 1000:.0f} ms" for k, v in laps.items() if v))
    (off_t, off_g, _), (on_t, on_g, _) = results[False], results[True]
    print(f"on/off: job set-up x{_pct(on_t, 50) / _pct(off_t, 50):.2f}, join -> greeting x{_pct(on_g, 50) / _pct(off_g, 50):.2f} (p50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
