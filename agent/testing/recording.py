"""What a test caller heard, and its analysis: levels, speech segments, first speech.

Pure: numpy frames with their arrival times in, figures out; no room, no
livekit, no event loop. A :class:`Recording` holds the frames
:class:`~agent.testing.caller.Caller` received (or any audio wrapped with
:meth:`Recording.from_pcm`), so a test can ask *who* was heard *when*.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sound.wav import write_wav

__all__ = ["FRAME_MS", "SAMPLE_RATE", "ReceivedFrame", "Recording", "dbfs", "sum_squares", "voiced_span"]

SAMPLE_RATE = 48_000  # what the caller publishes and records
FRAME_MS = 10
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
DBFS_FLOOR = -120.0


def dbfs(sum_squares: float, n: int) -> float:
    """The level of ``n`` int16 samples whose squares sum to ``sum_squares``, floored at -120 dBFS."""
    if n == 0 or sum_squares <= 0.0:
        return DBFS_FLOOR
    return max(DBFS_FLOOR, 10.0 * math.log10(sum_squares / n / (32768.0 * 32768.0)))


def sum_squares(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64)
    return float(np.dot(x, x))


def voiced_span(pcm: np.ndarray, rate: int, level_dbfs: float) -> tuple[int, int] | None:
    """Samples from the start of int16 ``pcm`` to its first 10 ms window louder than
    ``level_dbfs`` and past its last one; None if none is (espeak-ng pads its
    sentences with silence: where the speech itself starts and ends)."""
    n = rate * FRAME_MS // 1000
    windows = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    levels = 10 * np.log10(np.maximum((windows * windows).mean(axis=1), 1e-12) / (32768.0 * 32768.0))
    voiced = np.flatnonzero(levels > level_dbfs)
    return (int(voiced[0]) * n, (int(voiced[-1]) + 1) * n) if voiced.size else None


@dataclass(frozen=True)
class ReceivedFrame:
    """One received audio frame; ``time`` is ``time.time()`` when it reached Python."""

    time: float
    identity: str
    track_sid: str
    pcm: np.ndarray  # int16 mono
    sum_squares: float

    @property
    def dbfs(self) -> float:
        return dbfs(self.sum_squares, len(self.pcm))


class Recording:
    """Frames received from remote audio tracks (int16 mono), with arrival times.

    Several tracks (participants) may be in one recording; level analysis is
    done per track and merged on the wall clock, so ``speech_segments`` is the
    union of everybody's speech.
    """

    def __init__(self, frames: list[ReceivedFrame], sample_rate: int = SAMPLE_RATE) -> None:
        self.frames = frames
        self.sample_rate = sample_rate

    @classmethod
    def from_pcm(
        cls,
        pcm: np.ndarray,
        sample_rate: int,
        *,
        start_time: float = 0.0,
        identity: str = "",
        frame_ms: int = FRAME_MS,
    ) -> Recording:
        """Wrap plain audio (e.g. a source WAV) so it can be analysed the same way."""
        pcm = np.asarray(pcm, dtype=np.int16)
        step = max(1, sample_rate * frame_ms // 1000)
        frames = []
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            t = start_time + (i + len(chunk)) / sample_rate  # like arrival: end of the frame
            frames.append(ReceivedFrame(t, identity, "", chunk, sum_squares(chunk)))
        return cls(frames, sample_rate)

    def identities(self) -> list[str]:
        return sorted({f.identity for f in self.frames})

    def filter(self, identity: str | None = None, *, after: float | None = None) -> Recording:
        return Recording(
            [
                f
                for f in self.frames
                if (identity is None or f.identity == identity) and (after is None or f.time > after)
            ],
            self.sample_rate,
        )

    @property
    def duration(self) -> float:
        """Seconds of audio, summed over tracks."""
        return sum(len(f.pcm) for f in self.frames) / self.sample_rate

    def _by_track(self) -> dict[str, list[ReceivedFrame]]:
        tracks: dict[str, list[ReceivedFrame]] = collections.defaultdict(list)
        for f in self.frames:
            tracks[f.identity + "/" + f.track_sid].append(f)
        return tracks

    def rms_dbfs_windows(self, window_ms: int = 20) -> list[tuple[float, float]]:
        """(wall time, dBFS) per window, time = start of the window's audio, sorted by time.

        A frame's audio is taken to end when it arrived; windows are whole frames.
        """
        need = max(1, self.sample_rate * window_ms // 1000)
        out: list[tuple[float, float]] = []
        for frames in self._by_track().values():
            start: float | None = None
            ss, n = 0.0, 0
            for f in frames:
                if start is None:
                    start = f.time - len(f.pcm) / self.sample_rate
                ss += f.sum_squares
                n += len(f.pcm)
                if n >= need:
                    out.append((start, dbfs(ss, n)))
                    start, ss, n = None, 0.0, 0
            if start is not None and n > 0:
                out.append((start, dbfs(ss, n)))
        out.sort()
        return out

    def speech_segments(
        self, threshold_dbfs: float = -40.0, min_silence_ms: int = 300, *, window_ms: int = 20
    ) -> list[tuple[float, float]]:
        """(start, end) wall times of speech: windows above ``threshold_dbfs``, with
        gaps shorter than ``min_silence_ms`` bridged."""
        window_s = window_ms / 1000
        gap_s = min_silence_ms / 1000
        segments: list[tuple[float, float]] = []
        for t, level in self.rms_dbfs_windows(window_ms):
            if level < threshold_dbfs:
                continue
            if segments and t - segments[-1][1] < gap_s:
                segments[-1] = (segments[-1][0], max(segments[-1][1], t + window_s))
            else:
                segments.append((t, t + window_s))
        return segments

    def first_speech(
        self,
        *,
        after: float | None = None,
        threshold_dbfs: float = -40.0,
        min_duration: float = 0.2,
        window_ms: int = 20,
    ) -> float | None:
        """Start time of the first run of windows, all above the threshold, lasting
        ``min_duration`` -- per track, windows starting after ``after``."""
        best: float | None = None
        window_s = window_ms / 1000
        for frames in self._by_track().values():
            run_start: float | None = None
            windows = Recording(frames, self.sample_rate).rms_dbfs_windows(window_ms)
            for t, level in windows:
                if (after is not None and t <= after) or level < threshold_dbfs:
                    run_start = None
                    continue
                if run_start is None:
                    run_start = t
                if t + window_s - run_start >= min_duration - 1e-9:
                    best = run_start if best is None else min(best, run_start)
                    break
        return best

    def max_dbfs(self) -> float:
        return max((f.dbfs for f in self.frames), default=DBFS_FLOOR)

    def pcm(self) -> np.ndarray:
        """int16 mono; several tracks are mixed, each placed by its first frame's arrival."""
        tracks = self._by_track()
        if not tracks:
            return np.zeros(0, np.int16)
        if len(tracks) == 1:
            return np.concatenate([f.pcm for f in self.frames]).astype(np.int16)
        placed = []
        for frames in tracks.values():
            data = np.concatenate([f.pcm for f in frames]).astype(np.int32)
            placed.append((frames[0].time - len(frames[0].pcm) / self.sample_rate, data))
        t0 = min(t for t, _ in placed)
        offsets = [round((t - t0) * self.sample_rate) for t, _ in placed]
        mix = np.zeros(max(o + len(d) for o, (_, d) in zip(offsets, placed, strict=True)), np.int32)
        for o, (_, d) in zip(offsets, placed, strict=True):
            mix[o : o + len(d)] += d
        return np.clip(mix, -32768, 32767).astype(np.int16)

    def to_wav(self, path: str | Path) -> None:
        write_wav(path, self.pcm(), self.sample_rate)

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return f"Recording({len(self.frames)} frames, {self.duration:.2f}s, from {self.identities()})"

