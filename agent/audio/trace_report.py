"""Report on front-end traces: how close did the agent's echo come to starting a turn?

A worker run with ``AGENT_FRONTEND_TRACE_DIR`` writes one 3-channel WAV per
room (near end in, near end out, reference as fed to the canceller; see
``AudioFrontend.write_trace``). For each, this prints:

- the turns the local server's VAD (default ``VadConfig``: -40 dBFS, 60 ms to
  start) starts on the output, i.e. what the model was sent;
- outside those turns, the 10 ms frames of output over -40 and over -50 dBFS
  and the longest run of them. Outside the caller's turns the output should
  be silent; frames over -40 dBFS there are residual echo that came within
  reach of a turn (six in a row start one).

Run ``python -m agent.audio.trace_report DIR_OR_WAV...``.
"""

from __future__ import annotations

import sys
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.sound.vad import EnergyVad, SpeechStarted, VadConfig
from agent.sound.wav import read_wav

FRAME_MS = 10


@dataclass(frozen=True)
class TraceReport:
    name: str
    seconds: float
    turns: int
    over_40: int
    longest_40: int
    over_50: int
    longest_50: int

    def line(self) -> str:
        return (
            f"{self.name}: {self.seconds:.0f} s, {self.turns} turns; outside them, frames over -40 dBFS: "
            f"{self.over_40} (longest run {self.longest_40}), over -50 dBFS: {self.over_50} (longest run {self.longest_50})"
        )


def read_trace(path: Path) -> tuple[int, np.ndarray]:
    """(rate, samples x 3 int16: near in, near out, reference)."""
    data, rate = read_wav(path)
    if data.shape[1] != 3:
        raise ValueError(f"{path}: not a front-end trace (3 channels of 16-bit PCM expected)")
    return rate, data


def _longest_run(mask: np.ndarray) -> int:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def report(name: str, rate: int, out: np.ndarray, vad: VadConfig | None = None) -> TraceReport:
    """``out`` is the front-end's output (int16 mono at ``rate``; the VAD assumes 24 kHz)."""
    vad = vad or VadConfig()
    frame = rate * FRAME_MS // 1000
    n = len(out) // frame
    turn = np.zeros(n, bool)
    detector = EnergyVad(vad)
    start: int | None = None
    turns = 0
    for event in detector.process(out):
        if isinstance(event, SpeechStarted):
            turns += 1
            start = event.audio_start_ms // FRAME_MS
        elif start is not None:
            turn[start : event.audio_end_ms // FRAME_MS + 1] = True
            start = None
    if start is not None:
        turn[start:] = True
    power = np.mean(out[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
    level = 10 * np.log10(power / 32768.0**2 + 1e-12)
    over_40 = (level > -40) & ~turn
    over_50 = (level > -50) & ~turn
    return TraceReport(name, n * FRAME_MS / 1000, turns, int(over_40.sum()), _longest_run(over_40), int(over_50.sum()), _longest_run(over_50))


def report_file(path: Path) -> TraceReport:
    """The report on the front-end's output channel of the trace at ``path``."""
    rate, data = read_trace(path)
    return report(path.name, rate, data[:, 1].copy())


def traces(paths: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        found.extend(sorted(p.glob("*.wav")) if p.is_dir() else [p])
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python -m agent.audio.trace_report DIR_OR_WAV...", file=sys.stderr)
        return 2
    reports = []
    for path in traces(args):
        try:
            reports.append(report_file(path))
        except (OSError, EOFError, ValueError, wave.Error) as e:
            print(f"{path}: skipped: {e}", file=sys.stderr)
            continue
        print(reports[-1].line())
    if reports:
        print(
            f"[figure] {len(reports)} traces: output frames over -40 dBFS outside turns: "
            f"{sum(r.over_40 for r in reports)} in all, longest run {max(r.longest_40 for r in reports)} (a turn needs 6)"
        )
    return 0 if reports else 1


if __name__ == "__main__":
    raise SystemExit(main())
