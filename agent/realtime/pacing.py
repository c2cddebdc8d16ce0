"""Response pacing: when each piece of a spoken reply is due.

A reply's audio goes out in ``chunk_ms`` deltas: the first ``first_burst_ms``
at once, the rest at ``audio_pace`` seconds of audio per second of wall
time; transcript deltas run alongside, word by word. Pure: the caller
passes ``now`` and turns the chunks into events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import audio as audio_codec


@dataclass(frozen=True)
class Pace:
    audio_pace: float = 2.0  # seconds of audio sent per second of wall time
    first_burst_ms: int = 400  # audio sent at once when a reply starts
    chunk_ms: int = 100  # audio per delta


@dataclass(frozen=True)
class Chunk:
    words: tuple[str, ...]  # transcript deltas due with this audio
    pcm: np.ndarray = field(repr=False)


def words_of(text: str) -> list[str]:
    """Split keeping the spaces, so that the deltas join back into the text."""
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


class AudioPacer:
    """One reply's audio and words, released as they fall due."""

    def __init__(self, pcm: np.ndarray, text: str, started_at: float, pace: Pace) -> None:
        self.pcm = pcm
        self._words = words_of(text)
        self._started_at = started_at
        self._pace = pace
        self.sent_samples = 0
        self._sent_words = 0

    @property
    def done(self) -> bool:
        return self.sent_samples >= self.pcm.size

    def next_due(self) -> float:
        burst = self._pace.first_burst_ms * audio_codec.SAMPLE_RATE / 1000
        ahead = max(0.0, self.sent_samples - burst)
        return self._started_at + ahead / audio_codec.SAMPLE_RATE / self._pace.audio_pace

    def due(self, now: float) -> list[Chunk]:
        out: list[Chunk] = []
        chunk = int(self._pace.chunk_ms * audio_codec.SAMPLE_RATE / 1000)
        total = self.pcm.size
        while not self.done and self.next_due() <= now:
            end = min(total, self.sent_samples + chunk)
            words_due = math.ceil(len(self._words) * end / total) if total else len(self._words)
            words = tuple(self._words[self._sent_words : words_due])
            self._sent_words = max(self._sent_words, words_due)
            out.append(Chunk(words, self.pcm[self.sent_samples : end]))
            self.sent_samples = end
        return out

    def sent(self) -> np.ndarray:
        return self.pcm[: self.sent_samples]
