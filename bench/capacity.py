"""Capacity: how many spoken conversations a worker carries, ours against the
stock livekit-agents realtime worker (bench/stock_worker.py), in one run.

One livekit-server and one local realtime backend serve both workers, which
take turns. For M = 1, 2, 3, ... concurrent rooms, each room gets a simulated
caller (agent.testing's Caller, real WebRTC) that waits for the greeting and
then says ``--turns`` sentences, waiting for each answer. M rises until the
p95 turn latency (end of the caller's sentence to the first answer audio it
hears) passes ``--p95-limit`` s, or a call fails (no greeting, no answer).

It prints, per worker and M: greeted rooms, failures, turn latency p50/p95,
dispatch time (room joined to agent joined), and the PSS of the worker's
processes per session (PSS, not RSS: job processes fork from one server and
share pages). Then the capacity (the largest M that passed), sessions per
core, memory per session, and the ratios ours/stock.

Everything runs on this machine: the callers, livekit-server and the backend
share its cores with the worker, so the capacity compares the two workers
under one load, not absolute production capacity. On the 2-core machine the
callers (one Python process, real-time audio in and out for every room) are
the first to run out of CPU, at 5-6 rooms, whichever worker serves them; so
the bench also measures the worker's own CPU (its processes' CPU time over
the step, including the job processes that ended) per session, and from it
the sessions one core of a worker host carries.

By default both workers ask for no input transcription
(``--transcription off``): the local backend then answers at once and the
turn latency is the workers' own (plus the 500 ms VAD hangover). With
``--transcription pocketsphinx`` it is the whole local system's, whose one
transcription process takes over a second a turn even with one room.

    python -m agent.testing.netns -- .venv/bin/python bench/capacity.py
    python -m agent.testing.netns -- .venv/bin/python bench/capacity.py --rooms 1,2,4,6 --turns 2 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livekit import rtc  # noqa: E402

from agent.stack import ManagedProcess  # noqa: E402
from agent.testing.caller import Caller, load_wav, speech_wav  # noqa: E402
from agent.testing.harness import Testbed, free_port, room_name  # noqa: E402

SENTENCES = [
    "What time does the coffee shop open on Sunday morning?",
    "Can you tell me the status of my order please?",
    "I would like to book a table for two people tonight.",
    "Thank you very much, that is all for today.",
]


@dataclass
class Step:
    worker: str
    rooms: int
    greeted: int = 0
    failures: list[str] = field(default_factory=list)
    turn_s: list[float] = field(default_factory=list)
    dispatch_s: list[float] = field(default_factory=list)
    pss_mb: float = 0.0  # the worker's processes with the calls on
    idle_pss_mb: float = 0.0  # the same before the calls
    worker_cores: float = 0.0  # the worker's processes' CPU over the step's wall time, in cores

    @property
    def cores_per_session(self) -> float:
        return self.worker_cores / self.rooms

    @property
    def p95(self) -> float:
        return _pct(self.turn_s, 95)

    @property
    def pss_per_session_mb(self) -> float:
        return (self.pss_mb - self.idle_pss_mb) / self.rooms


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def _tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in found:
            continue
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
        found.append(p)
    return found


def _pss_mb(pid: int) -> float:
    """PSS of ``pid`` and all its descendants, in MB."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _cpu_s(pid: int) -> float:
    """CPU seconds used by ``pid``'s tree: the live processes' own time plus
    what their reaped children used (so a job process that ended still counts)."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, workdir: Path, turns: int, p95_limit: float, transcription: str) -> None:
        self.workdir = workdir
        self.turns = turns
        self.p95_limit = p95_limit
        self.transcription = transcription
        self.bed = Testbed(workdir, worker=False)
        self.speech: list[tuple[object, int]] = []

    def start(self) -> None:
        self.bed.start()
        for i, text in enumerate(SENTENCES):
            pcm, rate = load_wav(speech_wav(text, str(self.workdir / f"s{i}.wav")))
            self.speech.append((pcm, rate))

    def start_worker(self, kind: str, max_jobs: int) -> ManagedProcess:
        env = self.bed.worker_environment(
            AGENT_HTTP_PORT=str(free_port()), AGENT_MAX_JOBS=str(max_jobs), AGENT_METRICS_PORT=str(free_port()), AGENT_REDISPATCH="0",
            AGENT_INPUT_TRANSCRIPTION=self.transcription,
        )
        if kind == "ours":
            return self.bed.stack.start_worker(env=env, name="ours", timeout=90)
        proc = self.bed.stack.spawn("stock", [sys.executable, str(ROOT / "bench" / "stock_worker.py"), "start"], env=env)
        proc.wait_for_log("registered worker", 90)
        return proc

    async def call(self, room: str, step: Step, stagger: float) -> None:
        await asyncio.sleep(stagger)
        caller: Caller = self.bed.caller(room, f"caller-{room}")
        joined = time.time()
        try:
            await caller.join()
            agent_joined = asyncio.get_running_loop().create_future()

            def on_join(p: rtc.RemoteParticipant) -> None:
                if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and not agent_joined.done():
                    agent_joined.set_result(time.time())

            for p in caller.room.remote_participants.values():
                on_join(p)
            caller.room.on("participant_connected", on_join)
            try:
                await caller.wait_for_speech(timeout=30)
            except TimeoutError:
                step.failures.append(f"{room}: no greeting in 30 s")
                return
            step.greeted += 1
            if agent_joined.done():
                step.dispatch_s.append(agent_joined.result() - joined)
            await caller.wait_for_quiet(1.0, timeout=30)
            for turn in range(self.turns):
                pcm, rate = self.speech[turn % len(self.speech)]
                await caller.say(pcm, rate)  # type: ignore[arg-type]
                _, said_end = caller.spoken[-1]
                try:
                    answer = await caller.wait_for_speech(after=said_end, timeout=20)
                except TimeoutError:
                    step.failures.append(f"{room}: no answer to turn {turn + 1} in 20 s")
                    return
                step.turn_s.append(answer - said_end)
                await caller.wait_for_quiet(1.0, timeout=30)
        except Exception as e:  # a failed call is a figure, not the end of the bench
            step.failures.append(f"{room}: {type(e).__name__}: {e}")
        finally:
            await caller.leave()

    async def run_step(self, kind: str, worker: ManagedProcess, rooms: int) -> Step:
        step = Step(kind, rooms)
        await asyncio.sleep(3.0)  # the previous step's job processes end, idle ones are made
        step.idle_pss_mb = _pss_mb(worker.pid)
        cpu_before, started = _cpu_s(worker.pid), time.monotonic()
        names = [room_name(f"cap-{kind}") for _ in range(rooms)]
        calls = [asyncio.create_task(self.call(room, step, stagger=0.5 * i)) for i, room in enumerate(names)]
        # PSS while every call is on: sampled during the calls, the peak kept.
        while not all(c.done() for c in calls):
            step.pss_mb = max(step.pss_mb, _pss_mb(worker.pid))
            await asyncio.wait(calls, timeout=1.0)
        ended = time.monotonic()
        await asyncio.sleep(3.0)  # the jobs end and are reaped: their CPU moves to their parents' counts
        step.worker_cores = (_cpu_s(worker.pid) - cpu_before) / (ended - started)
        return step

    async def measure(self, kind: str, counts: list[int]) -> list[Step]:
        worker = self.start_worker(kind, max_jobs=2 * max(counts) + 2)  # its load stays under the 0.7 threshold
        steps: list[Step] = []
        try:
            # The first job process of a worker is slower; one warm-up call, not counted.
            await self.run_step(kind, worker, 1)
            for rooms in counts:
                step = await self.run_step(kind, worker, rooms)
                steps.append(step)
                print(_line(step), flush=True)
                if step.failures or step.p95 > self.p95_limit:
                    break
        finally:
            worker.stop()
            self.bed.stack.processes.remove(worker)
        return steps


def _line(s: Step) -> str:
    turns = f"turn p50 {_pct(s.turn_s, 50):.2f} s p95 {s.p95:.2f} s" if s.turn_s else "no turns"
    dispatch = f"dispatch p50 {_pct(s.dispatch_s, 50):.2f} s" if s.dispatch_s else "dispatch -"
    fails = f"; failures: {'; '.join(s.failures)}" if s.failures else ""
    return (
        f"{s.worker:5} {s.rooms:2} rooms: greeted {s.greeted}, {turns}, {dispatch}, PSS {s.pss_per_session_mb:.0f} MB/session, "
        f"worker CPU {100 * s.cores_per_session:.1f} % of a core per session{fails}"
    )


def _capacity(steps: list[Step], p95_limit: float) -> Step | None:
    passed = [s for s in steps if not s.failures and s.p95 <= p95_limit]
    return passed[-1] if passed else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", default="1,2,3,4,5,6,8", help="the counts of concurrent rooms to try, rising")
    parser.add_argument("--turns", type=int, default=3, help="sentences each caller says")
    parser.add_argument("--p95-limit", type=float, default=1.0, help="the p95 turn latency (s) a count must stay under")
    parser.add_argument("--workers", default="stock,ours", help="which workers, in order")
    parser.add_argument(
        "--transcription", default="off",
        help="what the backend transcribes the callers with (AGENT_INPUT_TRANSCRIPTION of both workers): 'off' (the default) "
             "measures the workers, the backend answering at once; 'pocketsphinx' the whole local system, whose one "
             "transcription process then sets the pace (over 1 s a turn with one room)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the steps here")
    args = parser.parse_args()
    counts = [int(x) for x in args.rooms.split(",")]
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="capacity-") as tmp:
        bench = Bench(Path(tmp), args.turns, args.p95_limit, args.transcription)
        bench.start()
        async def measure_all() -> dict[str, list[Step]]:
            return {kind: await bench.measure(kind, counts) for kind in args.workers.split(",")}

        try:
            results = asyncio.run(measure_all())
        finally:
            bench.bed.stop()

    print(f"\ncapacity on {cores} cores (p95 turn latency <= {args.p95_limit:.1f} s, no failed call; input transcription {args.transcription}):")
    best: dict[str, Step | None] = {}
    for kind, steps in results.items():
        best[kind] = cap = _capacity(steps, args.p95_limit)
        if cap is None:
            print(f"  {kind}: not even {counts[0]} room(s)")
            continue
        print(
            f"  {kind}: {cap.rooms} sessions = {cap.rooms / cores:.2f} per core of this machine; PSS {cap.pss_per_session_mb:.0f} MB per session; "
            f"turn p95 {cap.p95:.2f} s; dispatch p50 {_pct(cap.dispatch_s, 50):.2f} s; the worker's own CPU "
            f"{100 * cap.cores_per_session:.1f} % of a core per session = {1 / cap.cores_per_session:.1f} sessions per worker core"
        )
    ours, stock = best.get("ours"), best.get("stock")
    if ours is not None and stock is not None:
        print(
            f"  ours/stock: sessions per core of this machine x{ours.rooms / stock.rooms:.2f}, "
            f"sessions per worker core x{stock.cores_per_session / ours.cores_per_session:.2f}, "
            f"memory per session x{ours.pss_per_session_mb / stock.pss_per_session_mb:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({k: [asdict(s) for s in v] for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
