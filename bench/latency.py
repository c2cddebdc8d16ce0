"""Latency: our worker against the stock livekit-agents realtime worker
(bench/stock_worker.py), side by side in one run, as a caller measures it.

One livekit-server and one local realtime backend serve both workers, which
run at once under different agent names; each call's token picks one, and
the calls alternate between them, so that both meet the same machine in the
same state. The backend is set so that only the workers differ: no input
transcription (it answers at once), a fixed reply (long enough to barge into),
server VAD with a 500 ms hangover for both.

Figures (p50 / p95 / max, and ours/stock at p50):
  join -> greeting       the caller is connected -> the first greeting audio it hears
  dispatch               the caller connects (the room is made) -> the agent joins it
  turn                   end of the caller's sentence -> first reply audio, less the 500 ms hangover
  barge-in               the caller starts speaking over a reply -> the last agent audio it hears
  K rooms at once        K callers connect together -> the last of them hears its greeting
  job memory             the PSS of the largest job process during a conversation
                         (the process alone: before 2026-12-04 this summed the
                         forkserver and every job process under it)

Ours is also decomposed from its own log (agent.timing's timeline lines, the
same clock as the callers'): the milestones of the greeting from the job's
start, and of a reply from the backend's end of turn.

    python -m agent.testing.netns -- .venv/bin/python bench/latency.py [--joins 20] [--turns 30] [--json out.json] [--plot out.png]

The plot needs matplotlib (`.venv/bin/pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from capacity import _pct, _tree  # noqa: E402
from livekit import rtc  # noqa: E402
from stock_worker import GREETING  # noqa: E402

from agent.stack import ManagedProcess  # noqa: E402
from agent.testing.caller import Caller, load_wav, speech_wav  # noqa: E402
from agent.testing.harness import Testbed, free_port, room_name, wait_workers_ready  # noqa: E402
from agent.timing import GREETING_TIMELINE, REPLY_TIMELINE, parse_timeline  # noqa: E402

HANGOVER_S = 0.5  # both workers ask for server VAD with silence_duration_ms=500
BARGE_AFTER_S = 1.0  # the caller speaks over a reply this long after it started
# The backend's one reply to speech: about six seconds, no pause long enough to
# read as the end of the agent's speech (speech_segments bridges 300 ms).
REPLY = "Our shop is open every day from nine in the morning until six in the evening and we deliver to every part of the town"
SENTENCES = [
    "What time do you open on Sunday?",
    "Where is my order today?",
    "Can I book a table for two?",
    "Do you deliver to my street?",
]
KINDS = ("stock", "ours")
NAMES = {"stock": "stock-agent", "ours": "our-agent"}


@dataclass
class Figures:
    greeting_s: list[float] = field(default_factory=list)
    dispatch_s: list[float] = field(default_factory=list)
    turn_s: list[float] = field(default_factory=list)
    barge_s: list[float] = field(default_factory=list)
    burst_s: dict[int, list[float]] = field(default_factory=dict)
    job_pss_mb: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rooms: dict[str, str] = field(default_factory=dict)  # room -> what it measured (for the log's timelines)
    heard: list[tuple[str, float]] = field(default_factory=list)  # (room, when the caller heard a greeting or reply)


class Bench:
    def __init__(self, workdir: Path, ours_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.ours_env = ours_env or {}
        script = workdir / "brain.json"
        script.write_text(json.dumps({"heard_audio": REPLY}))
        self.bed = Testbed(workdir, worker=False, realtime_env={"AGENT_BRAIN_SCRIPT": str(script)})
        self.workers: dict[str, ManagedProcess] = {}
        self.figures = {kind: Figures() for kind in KINDS}
        self.speech: list[tuple[object, int, float]] = []  # (pcm, rate, seconds to the last voiced sample)

    def start(self) -> None:
        self.bed.start()
        for i, text in enumerate(SENTENCES):
            pcm, rate = load_wav(speech_wav(text, str(self.workdir / f"s{i}.wav")))
            self.speech.append((pcm, rate, voiced_end(pcm, rate)))
        for kind in KINDS:
            env = self.bed.worker_environment(
                AGENT_HTTP_PORT=str(free_port()), AGENT_METRICS_PORT=str(free_port()), AGENT_REDISPATCH="0",
                AGENT_MAX_JOBS="12", AGENT_INPUT_TRANSCRIPTION="off", AGENT_NAME=NAMES[kind], AGENT_GREETING=GREETING,
            )  # fmt: skip
            if kind == "ours":
                self.workers[kind] = self.bed.stack.start_worker(env={**env, **self.ours_env}, name="ours", timeout=90)
            else:
                self.workers[kind] = self.bed.stack.spawn("stock", [sys.executable, str(ROOT / "bench" / "stock_worker.py"), "start"], env=env)
        self.workers["stock"].wait_for_log("registered worker", 90)
        wait_workers_ready([self.workers["ours"]], timeout=90)
        time.sleep(3.0)  # both pools of idle job processes made

    def stop(self) -> None:
        self.bed.stop()

    # ------------------------------------------------------------------ one call

    async def _connect(self, kind: str, room: str) -> tuple[Caller, float, asyncio.Future[float]]:
        """Join ``room`` dispatching ``kind``'s agent; (caller, when the connect began, when the agent joined)."""
        caller = self.bed.caller(room, f"caller-{room}", agent_name=NAMES[kind])
        agent_joined: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def on_join(p: rtc.RemoteParticipant) -> None:
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and not agent_joined.done():
                agent_joined.set_result(time.time())

        began = time.time()
        await caller.join()
        for p in caller.room.remote_participants.values():
            on_join(p)
        caller.room.on("participant_connected", on_join)
        return caller, began, agent_joined

    async def join(self, kind: str) -> None:
        figures = self.figures[kind]
        room = room_name(f"join-{kind}")
        figures.rooms[room] = "join"
        caller, began, agent_joined = await self._connect(kind, room)
        try:
            heard = await caller.wait_for_speech(timeout=20)
            assert caller.joined_at is not None
            figures.greeting_s.append(heard - caller.joined_at)
            figures.heard.append((room, heard))
            if agent_joined.done():
                figures.dispatch_s.append(agent_joined.result() - began)
        except TimeoutError as e:
            figures.failures.append(f"join {room}: {e}")
        finally:
            await caller.leave()

    async def burst(self, kind: str, rooms: int) -> None:
        figures = self.figures[kind]
        began = time.time()

        async def one() -> float:
            room = room_name(f"burst{rooms}-{kind}")
            figures.rooms[room] = f"burst {rooms}"
            caller, _, _ = await self._connect(kind, room)
            try:
                return await caller.wait_for_speech(timeout=30)
            finally:
                await caller.leave()

        try:
            greeted = await asyncio.gather(*(one() for _ in range(rooms)))
            figures.burst_s.setdefault(rooms, []).append(max(greeted) - began)
        except TimeoutError as e:
            figures.failures.append(f"{rooms} rooms at once: {e}")

    async def conversation(self, kind: str, turns: int) -> None:
        """Turns in one room, each sentence barging into the previous reply."""
        figures = self.figures[kind]
        room = room_name(f"talk-{kind}")
        figures.rooms[room] = "turns"
        caller, _, _ = await self._connect(kind, room)
        worker = self.workers[kind]
        peak = 0.0

        def sample() -> None:
            nonlocal peak
            peak = max([peak, *(_own_pss_mb(p) for p in _job_processes(worker.pid))])

        try:
            await caller.wait_for_speech(timeout=20)
            await caller.wait_for_quiet(1.0, timeout=30)
            reply: float | None = None
            for turn in range(turns):
                if reply is not None:
                    await asyncio.sleep(max(0.0, reply + BARGE_AFTER_S - time.time()))
                pcm, rate, voiced = self.speech[turn % len(self.speech)]
                await caller.say(pcm, rate)  # type: ignore[arg-type]
                start, played = caller.spoken[-1]
                end = start + voiced  # espeak-ng ends a sentence with 0.2-0.3 s of silence: not speech
                sample()
                if reply is not None:  # the agent must have fallen silent before the sentence ended
                    segments = [s for s in caller.heard().speech_segments() if s[0] < end and s[1] > reply]
                    if not segments or segments[-1][1] > played - 0.1:
                        figures.failures.append(f"turn {turn + 1}: the agent did not stop for the caller")
                        await caller.wait_for_quiet(1.0, timeout=30)
                        reply = None
                        continue
                    figures.barge_s.append(segments[-1][1] - start)
                try:
                    reply = await caller.wait_for_speech(after=played, timeout=20)
                except TimeoutError as e:
                    figures.failures.append(f"turn {turn + 1}: {e}")
                    reply = None
                    continue
                figures.turn_s.append(reply - end - HANGOVER_S)
                figures.heard.append((room, reply))
            await caller.wait_for_quiet(1.0, timeout=30)
        finally:
            figures.job_pss_mb.append(peak)
            await caller.leave()

    # ------------------------------------------------------------------ the run

    async def run(self, joins: int, turns: int, bursts: int) -> None:
        for i in range(joins):
            for kind in KINDS if i % 2 == 0 else reversed(KINDS):
                await self.join(kind)
                await asyncio.sleep(2.0)  # its job ends before the next call
        blocks = 3
        for b in range(blocks):
            for kind in KINDS if b % 2 == 0 else reversed(KINDS):
                await self.conversation(kind, turns // blocks + (1 if b < turns % blocks else 0))
                await asyncio.sleep(3.0)
        for i in range(bursts):
            for rooms in (2, 5):
                for kind in KINDS if i % 2 == 0 else reversed(KINDS):
                    await self.burst(kind, rooms)
                    await asyncio.sleep(4.0)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _job_processes(worker_pid: int) -> list[int]:
    """The worker's job processes: the children of its forkserver (Linux),
    else its own children other than multiprocessing's helpers."""
    tree = _tree(worker_pid)
    cmdlines = {}
    for pid in tree:
        try:
            cmdlines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdlines[pid] = b""
    servers = {pid for pid in tree if b"multiprocessing.forkserver" in cmdlines[pid]}
    helpers = servers | {pid for pid in tree if b"multiprocessing.resource_tracker" in cmdlines[pid]}
    if servers:
        return [pid for pid in tree if _parent(pid) in servers]
    return [pid for pid in tree if pid != worker_pid and pid not in helpers]


def _own_pss_mb(pid: int) -> float:
    """PSS of one process alone (its children not included), in MB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def voiced_end(pcm: object, rate: int, threshold: int = 500) -> float:
    """Seconds from the start of int16 ``pcm`` to its last sample louder than ``threshold``.

    Per sample, not per 10 ms window as ``agent.testing.recording.voiced_span``:
    a window rule at -40 dBFS ends "What time do you open on Sunday?" 87 ms
    sooner (its quiet last syllable), and README's turn figures rest on this one."""
    import numpy as np

    loud = np.nonzero(np.abs(np.asarray(pcm, dtype=np.int32)) > threshold)[0]
    return float(loud[-1] + 1) / rate if len(loud) else 0.0


# ---------------------------------------------------------------------- our log


def timelines(log_path: Path) -> list[tuple[str, str, dict[str, float]]]:
    """Every timeline line of our worker's log (text or JSON lines): (kind, room, marks)."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        message = line
        if line.startswith("{"):
            try:
                message = str(json.loads(line).get("message", ""))
            except ValueError:
                continue
        for kind in (GREETING_TIMELINE, REPLY_TIMELINE):
            at = message.find(f"{kind} in room ")
            if at >= 0 and (parsed := parse_timeline(message[at:])) is not None:
                found.append(parsed)
    return found


def with_heard(marks: list[tuple[str, dict[str, float]]], heard: list[tuple[str, float]]) -> list[dict[str, float]]:
    """Each timeline with ``caller heard it`` added: the first time the caller heard
    speech in that room at or after the first frame was played."""
    out = []
    for room, m in marks:
        played = m["first frame played"]
        times = [t for r, t in heard if r == room and t >= played - 0.02]
        if times:
            out.append({**m, "caller heard it": min(times)})
    return out


def decompose(marks: list[dict[str, float]]) -> list[tuple[str, float]]:
    """The median time from each milestone to the next, over the lines whose
    milestones came in the most common order (each line is in time order)."""
    if not marks:
        return []
    orders = collections.Counter(tuple(m) for m in marks)
    names = list(orders.most_common(1)[0][0])
    same = [m for m in marks if list(m) == names]
    return [(b, statistics.median(m[b] - m[a] for m in same)) for a, b in zip(names, names[1:], strict=False)]


# ---------------------------------------------------------------------- report


def _row(label: str, values: dict[str, list[float]], unit: float = 1000, suffix: str = "ms") -> str:
    cells = []
    for kind in KINDS:
        v = values[kind]
        cells.append(f"{_pct(v, 50) * unit:.0f} / {_pct(v, 95) * unit:.0f} / {max(v) * unit:.0f} {suffix} (n={len(v)})" if v else "-")
    ratio = _pct(values["ours"], 50) / _pct(values["stock"], 50) if values["ours"] and values["stock"] else float("nan")
    return f"| {label} | {cells[0]} | {cells[1]} | x{ratio:.2f} |"


def report(bench: Bench) -> tuple[str, dict[str, dict[str, list[float]]]]:
    f = bench.figures
    rows: dict[str, dict[str, list[float]]] = {
        "join -> greeting": {k: f[k].greeting_s for k in KINDS},
        "dispatch (connect -> agent joined)": {k: f[k].dispatch_s for k in KINDS},
        "turn (end of speech -> reply, less 500 ms hangover)": {k: f[k].turn_s for k in KINDS},
        "barge-in (caller's onset -> agent silent)": {k: f[k].barge_s for k in KINDS},
        "2 rooms at once -> all greeted": {k: f[k].burst_s.get(2, []) for k in KINDS},
        "5 rooms at once -> all greeted": {k: f[k].burst_s.get(5, []) for k in KINDS},
    }
    lines = ["| figure (p50 / p95 / max) | stock worker | ours | ours/stock p50 |", "|---|---|---|---|"]
    lines += [_row(label, values) for label, values in rows.items()]
    memory = {k: f[k].job_pss_mb for k in KINDS}
    lines.append(_row("job process PSS in a conversation", memory, unit=1, suffix="MB"))
    rows["job PSS (MB)"] = memory
    return "\n".join(lines), rows


def plot(rows: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {label: v for label, v in rows.items() if "PSS" not in label and all(v.values())}
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 4), squeeze=False)
    for ax, (label, values) in zip(axes[0], shown.items(), strict=False):
        ax.boxplot([[x * 1000 for x in values[k]] for k in KINDS], tick_labels=list(KINDS), showfliers=True)
        ax.set_title(label, fontsize=8, wrap=True)
        ax.set_ylabel("ms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=20, help="calls each worker greets, one at a time")
    parser.add_argument("--turns", type=int, default=30, help="turns each worker answers (in three conversations)")
    parser.add_argument("--bursts", type=int, default=3, help="times each worker takes 2 and 5 rooms at once")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--plot", type=Path, help="write a PNG of the distributions here (needs matplotlib)")
    parser.add_argument("--logs", type=Path, help="copy both workers' logs and the server's and backend's into this folder")
    parser.add_argument(
        "--ours-env", action="append", default=[], metavar="NAME=VALUE",
        help="a setting for our worker only (repeatable), e.g. AGENT_BARGE_IN=0 for a before/after",
    )  # fmt: skip
    args = parser.parse_args()
    ours_env = dict(item.split("=", 1) for item in args.ours_env if "=" in item)
    if len(ours_env) != len(args.ours_env):
        parser.error("--ours-env takes NAME=VALUE")

    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        bench = Bench(Path(tmp), ours_env)
        try:
            bench.start()
            asyncio.run(bench.run(args.joins, args.turns, args.bursts))
        finally:
            bench.stop()
        lines = timelines(Path(bench.workers["ours"].log_path))
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for kind, worker in bench.workers.items():
                shutil.copy(worker.log_path, args.logs / f"{kind}.log")
            for proc in bench.bed.stack.processes:  # livekit-server, the realtime backend (its VAD events)
                if proc.log_path is not None and proc.log_path.exists():
                    shutil.copy(proc.log_path, args.logs / f"{proc.name}.log")

    table, rows = report(bench)
    print("\n" + table)
    for kind in KINDS:
        for failure in bench.figures[kind].failures:
            print(f"  {kind} failure: {failure}")
    rooms = bench.figures["ours"].rooms
    heard = bench.figures["ours"].heard
    greetings = with_heard([(room, m) for kind, room, m in lines if kind == GREETING_TIMELINE and rooms.get(room) == "join"], heard)
    replies = with_heard(
        [(room, m) for kind, room, m in lines if kind == REPLY_TIMELINE and rooms.get(room) == "turns" and "speech stopped" in m], heard
    )
    print(f"\nours, the greeting from the job's start (median of {len(greetings)}, in their most common order):")
    for name, took in decompose(greetings):
        print(f"  -> {name}: {took * 1000:.0f} ms")
    print(f"ours, a reply from the backend's end of turn (median of {len(replies)}):")
    for name, took in decompose(replies):
        print(f"  -> {name}: {took * 1000:.0f} ms")
    if args.json:
        data = {"rows": rows, "ours_greeting": decompose(greetings), "ours_reply": decompose(replies),
                "figures": {k: asdict(v) for k, v in bench.figures.items()}}  # fmt: skip
        args.json.write_text(json.dumps(data, indent=1, default=str))
    if args.plot:
        try:
            plot(rows, args.plot)
            print(f"plot: {args.plot}")
        except ImportError:
            print("no plot: matplotlib is not installed (.venv/bin/pip install -e '.[bench]')")
    return 1 if any(bench.figures[k].failures for k in KINDS) else 0


if __name__ == "__main__":
    sys.exit(main())
