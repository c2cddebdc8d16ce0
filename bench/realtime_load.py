"""Load benchmark for the local OpenAI-Realtime-compatible server.

Run: ``.venv/bin/python bench/realtime_load.py [--levels 1,50,200] [--turns 3] [--quick]``.
It prints figures and asserts nothing.

For each concurrency level N the server runs in its own process
(``python -m agent realtime-server``), so that its CPU and memory are read
from ``/proc/<pid>`` apart from the clients'. N WebSocket sessions, started
evenly over ``--stagger`` seconds and spread over several client processes
(``--sessions-per-client``), each stream what a phone caller would: 24 kHz
PCM16 mono in 20 ms ``input_audio_buffer.append`` events (``--frame-ms``),
paced in real time, made of 0.5 s of silence, a spoken sentence (espeak-ng,
made once), then silence until ``response.done``; ``--turns`` times. The default session
(server VAD, 500 ms of silence ends a turn, a response is created
automatically) is used unchanged. Before the clients start, one warm-up
turn fills the server's speech cache, as in a long-running server whose
scripted brain repeats its lines (``--no-warmup`` measures a cold cache).

Measured, on arrival times at the client (one monotonic clock for all processes):

- ``vad``: ``input_audio_buffer.speech_stopped`` -> first ``response.output_audio.delta``;
- ``commit``: ``input_audio_buffer.committed`` -> first audio delta;
- ``ingest``: how late the server noticed the end of speech: arrival of
  ``speech_stopped`` minus the send time of the frame holding ``audio_end_ms``
  (grows when the server falls behind on input);
- ``eos``: what a caller waits: last speech frame sent -> first audio delta
  (includes the 500 ms of silence the VAD waits for);
- ``transcript`` (with ``--transcribe``, which asks for input audio
  transcription as the LiveKit worker does): ``committed`` ->
  ``conversation.item.input_audio_transcription.completed``;
- server CPU: utime+stime of the server process (espeak-ng children not
  included) over the window in which all N sessions stream, in % of one core;
- server RSS: VmRSS; per session = (peak during the run - RSS after warm-up) / N;
  ``idle`` is the RSS of the fresh server before any session;
- client health: ``wake lag`` is how late a client woke for a frame (client
  event loop too busy), ``send block`` how long ``ws.send`` waited (the
  server not reading fast enough: TCP back-pressure); client CPU is the
  sum over client processes, in % of one core; whole-machine CPU over the
  same window shows whether something else was competing for the cores;
- server health: session handlers still running 1 s after every client
  closed ("opened" minus "closed" lines of the server's INFO log), and
  whether the server exited on SIGINT.

WebSocket compression is off, as with livekit-plugins-openai (aiohttp);
``--deflate`` turns permessage-deflate on.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import json
import math
import multiprocessing as mp
import os
import queue
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue as MpQueue
from pathlib import Path
from typing import Any

import numpy as np
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent.sound.espeak import speak
from agent.sound.resample import resample
from agent.testing.recording import voiced_span

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 24000
LEAD_SILENCE_MS = 500
SENTENCE = "Please book a table for two people tonight."
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- audio ------------------------------------------------------------------


def spoken_sentence(text: str = SENTENCE) -> bytes:
    """The sentence as 24 kHz PCM16 mono bytes, spoken by espeak-ng."""
    pcm, rate = speak(text, voice="en-us")
    return trim_silence(resample(pcm, rate, SAMPLE_RATE)).astype("<i2").tobytes()


def trim_silence(pcm: np.ndarray, level_dbfs: float = -50.0) -> np.ndarray:
    """Drop espeak-ng's leading and trailing silence, so that the last frame sent is speech."""
    span = voiced_span(pcm, SAMPLE_RATE, level_dbfs)
    return pcm[span[0] : span[1]] if span is not None else pcm


def append_event(pcm: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode("ascii")})


@dataclass(frozen=True)
class Frames:
    """Pre-encoded append events of ``frame_ms`` each: one turn's lead silence + speech, and silence."""

    frame_ms: int
    speech: tuple[str, ...]
    silence: str

    @classmethod
    def build(cls, speech_pcm: bytes, frame_ms: int) -> Frames:
        frame_bytes = SAMPLE_RATE * frame_ms // 1000 * 2
        silence_pcm = bytes(frame_bytes)
        padded = speech_pcm + bytes(-len(speech_pcm) % frame_bytes)
        speech = [append_event(padded[i : i + frame_bytes]) for i in range(0, len(padded), frame_bytes)]
        lead = [append_event(silence_pcm)] * (LEAD_SILENCE_MS // frame_ms)
        return cls(frame_ms, tuple(lead + speech), append_event(silence_pcm))


# ---- client -----------------------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    url: str
    frames: Frames
    turns: int
    turn_timeout_s: float
    deflate: bool
    transcription_model: str | None  # set: the session asks for input audio transcription


@dataclass
class TurnResult:
    speech_end_sent: float | None = None  # send time of the last speech frame
    stopped_at: float | None = None  # arrival of the first speech_stopped
    stop_frame_sent: float | None = None  # send time of the frame holding audio_end_ms
    vad_stops: int = 0
    item_id: str | None = None  # the committed user item
    committed_at: float | None = None
    transcript_at: float | None = None  # arrival of ...input_audio_transcription.completed
    first_delta_at: float | None = None
    done_at: float | None = None
    status: str | None = None  # response.done status


@dataclass
class SessionResult:
    index: int
    connected: bool = False
    failure: str | None = None  # why the session ended early
    error_codes: list[str] = field(default_factory=list)  # server "error" events
    turns: list[TurnResult] = field(default_factory=list)
    stream_start: float | None = None
    stream_end: float | None = None
    wake_lags: array.array[float] = field(default_factory=lambda: array.array("f"))
    send_block_max: float = 0.0


class _Session:
    """One caller: a paced sender and a receiver that timestamps server events."""

    def __init__(self, ws: websockets.ClientConnection, cfg: ClientConfig, result: SessionResult) -> None:
        self.ws, self.cfg, self.result = ws, cfg, result
        self.send_times: list[float] = []  # by frame index: session audio position = index * frame_ms
        self.turn = TurnResult()
        self.turn_done = asyncio.Event()
        self.turns_by_item: dict[str, TurnResult] = {}  # transcripts may arrive after response.done

    async def run(self) -> None:
        receiver = asyncio.create_task(self._receive())
        try:
            await self._stream()
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)

    async def _stream(self) -> None:
        start = time.monotonic()
        self.result.stream_start = start
        for _ in range(self.cfg.turns):
            self.turn, self.turn_done = TurnResult(), asyncio.Event()
            self.result.turns.append(self.turn)
            for message in self.cfg.frames.speech:
                await self._send_paced(start, message)
            self.turn.speech_end_sent = self.send_times[-1]
            give_up = time.monotonic() + self.cfg.turn_timeout_s
            while not self.turn_done.is_set():
                if time.monotonic() > give_up:
                    self.result.failure = "turn_timeout"
                    return
                await self._send_paced(start, self.cfg.frames.silence)
        self.result.stream_end = time.monotonic()

    async def _send_paced(self, start: float, message: str) -> None:
        due = start + len(self.send_times) * self.cfg.frames.frame_ms / 1000
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        woke = time.monotonic()
        self.result.wake_lags.append(max(0.0, woke - due))
        self.send_times.append(woke)
        await self.ws.send(message)
        self.result.send_block_max = max(self.result.send_block_max, time.monotonic() - woke)

    async def _receive(self) -> None:
        async for raw in self.ws:
            now = time.monotonic()
            event = json.loads(raw)
            self._on_event(event, now)

    def _on_event(self, event: dict[str, Any], now: float) -> None:
        kind, turn = event.get("type"), self.turn
        if kind == "response.output_audio.delta":
            if turn.first_delta_at is None:
                turn.first_delta_at = now
        elif kind == "input_audio_buffer.speech_stopped":
            turn.vad_stops += 1
            if turn.stopped_at is None:
                turn.stopped_at = now
                frame = max(0, math.ceil(event["audio_end_ms"] / self.cfg.frames.frame_ms) - 1)
                turn.stop_frame_sent = self.send_times[min(frame, len(self.send_times) - 1)]
        elif kind == "input_audio_buffer.committed":
            if turn.committed_at is None:
                turn.committed_at, turn.item_id = now, event["item_id"]
                self.turns_by_item[event["item_id"]] = turn
        elif kind == "conversation.item.input_audio_transcription.completed":
            if (owner := self.turns_by_item.get(event["item_id"])) is not None:
                owner.transcript_at = now
        elif kind == "conversation.item.input_audio_transcription.failed":
            self.result.error_codes.append(str(event["error"].get("code")))
        elif kind == "response.done":
            turn.done_at, turn.status = now, event["response"]["status"]
            self.turn_done.set()
        elif kind == "error":
            self.result.error_codes.append(str(event["error"].get("code")))


async def _ask_for_transcription(ws: websockets.ClientConnection, model: str) -> None:
    """session.update with input audio transcription, as the LiveKit worker sends to the local backend."""
    update = {"type": "realtime", "audio": {"input": {"transcription": {"model": model}}}}
    await ws.send(json.dumps({"type": "session.update", "session": update}))
    while json.loads(await asyncio.wait_for(ws.recv(), 30)).get("type") != "session.updated":
        pass


async def run_session(cfg: ClientConfig, index: int, start_at: float) -> SessionResult:
    result = SessionResult(index)
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    try:
        async with websockets.connect(
            cfg.url,
            open_timeout=30,
            ping_interval=None,
            max_size=None,
            compression="deflate" if cfg.deflate else None,
        ) as ws:
            created = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if created.get("type") != "session.created":
                result.failure = f"first event {created.get('type')}"
                return result
            result.connected = True
            if cfg.transcription_model:
                await _ask_for_transcription(ws, cfg.transcription_model)
            await _Session(ws, cfg, result).run()
    except InvalidStatus as e:
        result.failure = f"http_{e.response.status_code}"
    except ConnectionClosed as e:
        result.failure = f"closed_{e.rcvd.code if e.rcvd else 'abnormal'}"
    except (OSError, TimeoutError) as e:
        result.failure = type(e).__name__
    return result


async def run_sessions(cfg: ClientConfig, starts: dict[int, float]) -> list[SessionResult]:
    return list(await asyncio.gather(*(run_session(cfg, i, t) for i, t in starts.items())))


@dataclass
class WorkerResult:
    sessions: list[SessionResult]
    cpu_s: float
    wall_s: float


def client_worker(cfg: ClientConfig, starts: dict[int, float], out: MpQueue[WorkerResult]) -> None:
    """A client process: runs its sessions, each starting at an absolute monotonic time."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    sessions = asyncio.run(run_sessions(cfg, starts))
    out.put(WorkerResult(sessions, time.process_time() - cpu0, time.monotonic() - wall0))


# ---- server process ---------------------------------------------------------


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK


class ServerProcess:
    """``python -m agent realtime-server`` in its own process (``agent.stack``), with /proc readings."""

    def __init__(self, port: int, max_sessions: int, log_dir: Path, name: str) -> None:
        env = {
            "AGENT_LOCAL_REALTIME_MAX_SESSIONS": str(max_sessions),
            "AGENT_LOG_LEVEL": "INFO",  # session opened/closed lines give the leak count
        }
        # Imported here, in the parent only: every client process re-imports
        # this module (multiprocessing's spawn) and needs none of the stack.
        from agent.stack import Stack

        self.port = port
        self.stack = Stack(log_dir, cwd=ROOT)
        try:
            self.process = self.stack.start_realtime("127.0.0.1", port, env=env, timeout=30.0, name=name)
        except BaseException:
            self.stack.stop()  # it may have started and then failed to listen
            raise
        self.pid = self.process.pid

    def cpu_s(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; utime, stime are fields 14, 15
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def _log_lines(self) -> list[str]:
        return self.process.log_text().splitlines()

    def problems(self) -> list[str]:
        """Warning/error lines and tracebacks from the server's log."""
        return [ln for ln in self._log_lines() if any(k in ln for k in ("WARNING", "ERROR", "Traceback", "Error:"))]

    def open_sessions(self) -> int:
        """Sessions whose handler has not finished: "opened" minus "closed" log lines."""
        lines = [ln for ln in self._log_lines() if "agent.realtime: session " in ln]
        return sum(" opened " in ln for ln in lines) - sum(" closed " in ln for ln in lines)

    def stop(self, grace_s: float = 5.0) -> bool:
        """SIGINT, then SIGKILL after ``grace_s``; True if SIGINT was enough.

        SIGINT goes to the server alone, as Ctrl-C to ``python -m agent
        realtime-server`` would: stopping its own children is its job. The
        SIGKILL goes to its whole process group, leftovers included.
        """
        proc = self.process.proc
        graceful = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                graceful = False
        self.process.stop(timeout=0, sig=signal.SIGKILL)
        self.stack.processes.clear()
        return graceful


# ---- one level --------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t: float
    cpu_s: float  # server
    rss_mb: float  # server
    machine_s: float  # all processes, all cores


@dataclass
class LevelRun:
    n: int
    sessions: list[SessionResult]
    samples: list[Sample]
    idle_rss_mb: float
    warm_rss_mb: float
    warmup: SessionResult | None
    client_procs: int
    client_cpu_s: float
    client_wall_s: float
    server_problems: list[str]
    leaked_sessions: int  # handlers still running 1 s after every client closed
    sigint_ok: bool  # the server exited on SIGINT (else it was killed)


def _split(starts: dict[int, float], parts: int) -> list[dict[int, float]]:
    keys = sorted(starts)
    return [{k: starts[k] for k in keys[p::parts]} for p in range(parts)]


def run_clients(server: ServerProcess, cfg: ClientConfig, n: int, args: argparse.Namespace) -> tuple[list[WorkerResult], list[Sample]]:
    """Start the client processes, sample the server until they report, return both."""
    ctx = mp.get_context("spawn")
    out: MpQueue[WorkerResult] = ctx.Queue()
    procs_n = max(1, math.ceil(n / args.sessions_per_client))
    t0 = time.monotonic() + args.spawn_grace_s
    starts = {i: t0 + args.stagger * i / n for i in range(n)}
    procs = [ctx.Process(target=client_worker, args=(cfg, part, out), daemon=True) for part in _split(starts, procs_n)]
    for p in procs:
        p.start()
    results: list[WorkerResult] = []
    samples: list[Sample] = []
    hard_deadline = t0 + args.stagger + cfg.turns * (cfg.turn_timeout_s + 10) + 30
    while len(results) < procs_n and time.monotonic() < hard_deadline:
        samples.append(Sample(time.monotonic(), server.cpu_s(), server.rss_mb(), machine_busy_s()))
        try:
            results.append(out.get(timeout=args.sample_s))
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and out.empty():
                break  # a client process died without reporting
    for p in procs:
        p.join(2)
        if p.is_alive():
            p.terminate()
    return results, samples


def run_level(n: int, args: argparse.Namespace, frames: Frames, log_dir: Path) -> LevelRun:
    from agent.testing.harness import free_port  # the parent's only (see ServerProcess)

    port = free_port()
    server = ServerProcess(port, max(2 * n, 500), log_dir, f"server-{n}")
    try:
        time.sleep(1.0)
        idle = server.rss_mb()
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=x"
        warmup = None
        if not args.no_warmup:
            warm_cfg = ClientConfig(url, frames, 1, args.turn_timeout, args.deflate, args.transcribe)
            warmup = asyncio.run(run_sessions(warm_cfg, {0: time.monotonic()}))[0]
        warm = server.rss_mb()
        cfg = ClientConfig(url, frames, args.turns, args.turn_timeout, args.deflate, args.transcribe)
        workers, samples = run_clients(server, cfg, n, args)
        time.sleep(1.0)
        leaked = server.open_sessions()
    finally:
        sigint_ok = server.stop()
    sessions = sorted((s for w in workers for s in w.sessions), key=lambda s: s.index)
    return LevelRun(
        n=n,
        sessions=sessions,
        samples=samples,
        idle_rss_mb=idle,
        warm_rss_mb=warm,
        warmup=warmup,
        client_procs=max(1, math.ceil(n / args.sessions_per_client)),
        client_cpu_s=sum(w.cpu_s for w in workers),
        client_wall_s=max((w.wall_s for w in workers), default=0.0),
        server_problems=server.problems(),
        leaked_sessions=leaked,
        sigint_ok=sigint_ok,
    )


# ---- summary ----------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


@dataclass
class LevelSummary:
    n: int
    connected: int
    turns_ok: int
    turns_expected: int
    errors: int
    error_kinds: dict[str, int]
    vad_ms: list[float]
    commit_ms: list[float]
    ingest_ms: list[float]
    eos_ms: list[float]
    transcript_ms: list[float]  # empty unless the sessions asked for transcription
    transcribing: bool
    server_cpu_pct: float  # % of one core, whole server, over the full-load window
    machine_cpu_pct: float  # % of one core, every process on the machine, same window
    window_s: float
    rss_peak_mb: float
    idle_rss_mb: float
    warm_rss_mb: float
    client_procs: int
    client_cpu_pct: float
    wake_lag_p99_ms: float
    wake_lag_max_ms: float
    send_block_max_ms: float
    warmup_vad_ms: float
    server_problems: list[str]
    leaked_sessions: int
    sigint_ok: bool

    @property
    def cpu_pct_per_session(self) -> float:
        return self.server_cpu_pct / self.n

    @property
    def rss_mb_per_session(self) -> float:
        return (self.rss_peak_mb - self.warm_rss_mb) / self.n


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (b - a) * 1000


def _turn_delays(sessions: list[SessionResult]) -> dict[str, list[float]]:
    delays: dict[str, list[float]] = {"vad": [], "commit": [], "ingest": [], "eos": [], "transcript": []}
    for s in sessions:
        for t in s.turns:
            pairs = {
                "vad": (t.stopped_at, t.first_delta_at),
                "commit": (t.committed_at, t.first_delta_at),
                "ingest": (t.stop_frame_sent, t.stopped_at),
                "eos": (t.speech_end_sent, t.first_delta_at),
                "transcript": (t.committed_at, t.transcript_at),
            }
            for name, (a, b) in pairs.items():
                if (v := _ms(a, b)) is not None:
                    delays[name].append(v)
    return delays


def _error_kinds(sessions: list[SessionResult], n: int) -> dict[str, int]:
    kinds: dict[str, int] = {}

    def add(kind: str) -> None:
        kinds[kind] = kinds.get(kind, 0) + 1

    if len(sessions) < n:
        kinds["client_process_lost"] = n - len(sessions)
    for s in sessions:
        if s.failure:
            add(s.failure)
        for code in s.error_codes:
            add(f"error_event:{code}")
        for t in s.turns:
            if t.status not in (None, "completed"):
                add(f"response_{t.status}")
            if t.vad_stops > 1:
                add("extra_vad_turns")
    return kinds


def _load_window(sessions: list[SessionResult]) -> tuple[float, float]:
    """While every session streams: last start .. first end; else first start .. last end."""
    spans = [(s.stream_start, s.stream_end or s.stream_start) for s in sessions if s.stream_start is not None]
    if not spans:
        return 0.0, 0.0
    starts, ends = [a for a, _ in spans], [b for _, b in spans]
    lo, hi = max(starts), min(ends)
    if hi - lo < 2.0:
        lo, hi = min(starts), max(ends)
    return lo, hi


def _cpu_pct(samples: list[Sample], lo: float, hi: float) -> tuple[float, float, float]:
    """Server and whole-machine CPU in % of one core over [lo, hi], and the window's length."""
    inside = [s for s in samples if lo <= s.t <= hi]
    if len(inside) < 2:
        return math.nan, math.nan, 0.0
    first, last = inside[0], inside[-1]
    wall = last.t - first.t
    return 100 * (last.cpu_s - first.cpu_s) / wall, 100 * (last.machine_s - first.machine_s) / wall, wall


def summarize(run: LevelRun, turns: int, transcribing: bool) -> LevelSummary:
    sessions = run.sessions
    delays = _turn_delays(sessions)
    kinds = _error_kinds(sessions, run.n)
    lo, hi = _load_window(sessions)
    cpu_pct, machine_pct, window = _cpu_pct(run.samples, lo, hi)
    lags = [v for s in sessions for v in s.wake_lags]
    warmup_vad = _turn_delays([run.warmup])["vad"] if run.warmup else []
    return LevelSummary(
        n=run.n,
        connected=sum(s.connected for s in sessions),
        turns_ok=sum(t.status == "completed" and t.first_delta_at is not None for s in sessions for t in s.turns),
        turns_expected=run.n * turns,
        errors=sum(kinds.values()),
        error_kinds=kinds,
        vad_ms=delays["vad"],
        commit_ms=delays["commit"],
        ingest_ms=delays["ingest"],
        eos_ms=delays["eos"],
        transcript_ms=delays["transcript"],
        transcribing=transcribing,
        server_cpu_pct=cpu_pct,
        machine_cpu_pct=machine_pct,
        window_s=window,
        rss_peak_mb=max((s.rss_mb for s in run.samples), default=math.nan),
        idle_rss_mb=run.idle_rss_mb,
        warm_rss_mb=run.warm_rss_mb,
        client_procs=run.client_procs,
        client_cpu_pct=100 * run.client_cpu_s / run.client_wall_s if run.client_wall_s else math.nan,
        wake_lag_p99_ms=1000 * pct(lags, 99),
        wake_lag_max_ms=1000 * max(lags, default=math.nan),
        send_block_max_ms=1000 * max((s.send_block_max for s in sessions), default=math.nan),
        warmup_vad_ms=warmup_vad[0] if warmup_vad else math.nan,
        server_problems=run.server_problems,
        leaked_sessions=run.leaked_sessions,
        sigint_ok=run.sigint_ok,
    )


def _p(values: list[float]) -> str:
    return f"{pct(values, 50):.0f}/{pct(values, 95):.0f}" if values else "-"


def print_level(s: LevelSummary) -> None:
    warmup = "skipped" if math.isnan(s.warmup_vad_ms) else f"{s.warmup_vad_ms:.0f} ms"
    transcripts = f", commit->transcript {_p(s.transcript_ms)} ms ({len(s.transcript_ms)} transcripts)"
    lines = [
        f"level {s.n}: {s.connected}/{s.n} connected, {s.turns_ok}/{s.turns_expected} turns, {s.errors} errors"
        f" {s.error_kinds or ''}",
        f"  vad->audio p50/p95 {_p(s.vad_ms)} ms, commit->audio {_p(s.commit_ms)} ms,"
        f" ingest lag {_p(s.ingest_ms)} ms, end of speech->audio {_p(s.eos_ms)} ms"
        f"{transcripts if s.transcribing else ''} (warm-up turn: {warmup})",
        f"  server CPU {s.server_cpu_pct:.1f}% of a core over {s.window_s:.1f} s at full load,"
        f" RSS idle {s.idle_rss_mb:.1f} MB, after warm-up {s.warm_rss_mb:.1f} MB, peak {s.rss_peak_mb:.1f} MB",
        f"  clients: {s.client_procs} process(es), CPU {s.client_cpu_pct:.0f}% of a core"
        f" (whole machine {s.machine_cpu_pct:.0f}% of {100 * (os.cpu_count() or 1)}%),"
        f" wake lag p99 {s.wake_lag_p99_ms:.1f} ms max {s.wake_lag_max_ms:.1f} ms,"
        f" send block max {s.send_block_max_ms:.1f} ms",
        f"  server health: {s.leaked_sessions} session handler(s) still open after all clients closed;"
        f" {'exited on SIGINT' if s.sigint_ok else 'did NOT exit on SIGINT (killed)'}",
        *(f"  server log: {line}" for line in s.server_problems[:5]),
    ]
    if len(s.server_problems) > 5:
        lines.append(f"  server log: ... {len(s.server_problems) - 5} more problem lines")
    print("\n".join(lines), flush=True)


def print_table(rows: list[LevelSummary]) -> None:
    header = (
        f"{'N':>4} {'conn':>5} {'turns':>9} {'err':>4} {'vad p50/95':>11} {'commit p50/95':>13} {'ingest p50/95':>13}"
        f" {'eos p50/95':>11} {'cpu%':>6} {'cpu%/s':>7} {'rssMB/s':>8} {'idleMB':>7} {'cli%':>5} {'lagmax':>7} {'blkmax':>7} {'leak':>5}"
    )
    print("\n" + header)
    for s in rows:
        print(
            f"{s.n:>4} {s.connected:>5} {f'{s.turns_ok}/{s.turns_expected}':>9} {s.errors:>4} {_p(s.vad_ms):>11}"
            f" {_p(s.commit_ms):>13} {_p(s.ingest_ms):>13} {_p(s.eos_ms):>11} {s.server_cpu_pct:>6.1f}"
            f" {s.cpu_pct_per_session:>7.2f} {s.rss_mb_per_session:>8.3f} {s.idle_rss_mb:>7.1f}"
            f" {s.client_cpu_pct:>5.0f} {s.wake_lag_max_ms:>7.1f} {s.send_block_max_ms:>7.1f} {s.leaked_sessions:>5}"
        )
    print("(ms; cpu% = server, % of one core; cpu%/s and rssMB/s per session; cli% = all clients; lag/blk = client ms;\n leak = server session handlers still running after every client closed)\n")
    for s in rows:
        print(
            f"[figure] level={s.n} p50_ms={pct(s.vad_ms, 50):.1f} p95_ms={pct(s.vad_ms, 95):.1f}"
            f" cpu_pct_per_session={s.cpu_pct_per_session:.3f} rss_mb_per_session={s.rss_mb_per_session:.3f}"
        )


# ---- main -------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--levels", default="1,50,200", help="comma-separated session counts (default 1,50,200)")
    parser.add_argument("--turns", type=int, default=3, help="turns per session (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: levels 1,10 and 1 turn")
    parser.add_argument("--frame-ms", type=int, default=20, help="audio per append event (LiveKit's plugin sends 100)")
    parser.add_argument("--stagger", type=float, default=1.5, help="seconds over which session starts are spread")
    parser.add_argument("--sessions-per-client", type=int, default=50, help="sessions per client process")
    parser.add_argument("--turn-timeout", type=float, default=20.0, help="seconds to wait for response.done")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up turn (cold speech cache)")
    parser.add_argument(
        "--transcribe",
        nargs="?",
        const="pocketsphinx",
        default=None,
        metavar="MODEL",
        help="ask for input audio transcription, as the LiveKit worker does (default model pocketsphinx)",
    )
    parser.add_argument("--deflate", action="store_true", help="negotiate permessage-deflate (off, like aiohttp)")
    parser.add_argument("--spawn-grace-s", type=float, default=2.0, help="time allowed to start client processes")
    parser.add_argument("--sample-s", type=float, default=0.2, help="server /proc sampling period")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.turns = "1,10", 1
    args.level_list = [int(x) for x in args.levels.split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    speech = spoken_sentence()
    frames = Frames.build(speech, args.frame_ms)
    print(
        f"speech: {len(speech) / 2 / SAMPLE_RATE:.2f} s, {len(frames.speech)} frames of {frames.frame_ms} ms per turn incl. lead silence;"
        f" levels {args.level_list}, {args.turns} turn(s), stagger {args.stagger} s, {os.cpu_count()} CPUs",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="realtime-load-") as tmp:
        for n in args.level_list:
            t = time.monotonic()
            summary = summarize(run_level(n, args, frames, Path(tmp)), args.turns, args.transcribe is not None)
            print_level(summary)
            print(f"  ({time.monotonic() - t:.0f} s)", flush=True)
            rows.append(summary)
    print_table(rows)


if __name__ == "__main__":
    main()
