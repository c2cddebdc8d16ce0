"""Server-side turn detection on the input audio buffer (energy VAD).

The local realtime server's turn detector (``agent.realtime.protocol``), and
the yardstick of the front-end's trace report (``agent.audio.trace_report``:
would this output have started a turn?); it lives here so that the worker's
audio package need not import the fake backend's.

Pure: feed int16 samples at 24 kHz, get speech start/stop positions in
milliseconds of session audio. OpenAI's ``threshold`` (0..1) maps onto a
frame-energy level: 0.5 -> -40 dBFS, 0 -> -60 dBFS, 1 -> -20 dBFS. A turn
starts after ``start_ms`` of consecutive voiced frames and stops after
``silence_duration_ms`` of unvoiced ones, as server VAD documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import REALTIME_RATE as SAMPLE_RATE

FRAME_MS = 10
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


def threshold_to_dbfs(threshold: float) -> float:
    return -60.0 + 40.0 * threshold


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    # Voiced time needed before a turn counts as started; filters clicks.
    start_ms: int = 60


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int


VadEvent = SpeechStarted | SpeechStopped


class EnergyVad:
    """Frame-energy voice activity detection with hangover."""

    def __init__(self, config: VadConfig, *, origin_ms: int = 0) -> None:
        """``origin_ms``: where in session audio this detector starts (after a reconfigure)."""
        self.config = config
        self._level_db = threshold_to_dbfs(config.threshold)
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames_seen = origin_ms // FRAME_MS  # 10 ms frames consumed since the start of session audio
        self._voiced_run = 0
        self._silent_run = 0
        self._in_speech = False

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def reset(self) -> None:
        """Forget a turn in progress (after a buffer clear or commit)."""
        self._voiced_run = 0
        self._silent_run = 0
        self._in_speech = False

    def process(self, pcm: np.ndarray) -> list[VadEvent]:
        samples = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        n_frames = samples.size // FRAME_SAMPLES
        self._pending = samples[n_frames * FRAME_SAMPLES :].copy()
        if n_frames == 0:
            return []
        frames = samples[: n_frames * FRAME_SAMPLES].reshape(n_frames, FRAME_SAMPLES).astype(np.float64)
        rms = np.sqrt(np.mean(frames * frames, axis=1)) / 32768.0
        db = 20.0 * np.log10(np.maximum(rms, 1e-10))
        voiced = db > self._level_db
        events: list[VadEvent] = []
        cfg = self.config
        start_frames = max(1, cfg.start_ms // FRAME_MS)
        stop_frames = max(1, cfg.silence_duration_ms // FRAME_MS)
        for is_voiced in voiced:
            self._frames_seen += 1
            end_ms = self._frames_seen * FRAME_MS
            if is_voiced:
                self._voiced_run += 1
                self._silent_run = 0
                if not self._in_speech and self._voiced_run >= start_frames:
                    self._in_speech = True
                    onset_ms = end_ms - self._voiced_run * FRAME_MS
                    events.append(SpeechStarted(max(0, onset_ms - cfg.prefix_padding_ms)))
            else:
                self._voiced_run = 0
                if self._in_speech:
                    self._silent_run += 1
                    if self._silent_run >= stop_frames:
                        self._in_speech = False
                        self._silent_run = 0
                        # OpenAI: audio_end_ms "includes the min_silence_duration_ms
                        # configured in the Session", i.e. it is the current position.
                        events.append(SpeechStopped(end_ms))
        return events
