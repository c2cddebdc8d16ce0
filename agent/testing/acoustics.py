"""What a test caller's microphone picks up besides its voice: the echo of a
speakerphone and the steady noise of a noisy line.

Pure signal work on 10 ms frames of 48 kHz mono (no room, no livekit):
:class:`MicAcoustics` is fed the frames the caller receives and mixes, into
each 10 ms of the caller's voice (or silence), what the room adds.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from .recording import FRAME_MS, FRAME_SAMPLES

__all__ = ["BackgroundNoise", "EchoPath", "MicAcoustics", "Speakerphone"]

_SPEAKER_CUSHION = 6  # frames the speakerphone buffers before it starts playing
_SPEAKER_MAX_FRAMES = 20  # beyond this the loop stalled: drop rather than fall behind for good
_SPEAKER_GIVE_UP = 50  # frames owed with nothing arriving: the stream stopped, re-cushion when it resumes


@dataclass(frozen=True)
class Speakerphone:
    """A caller without headphones: what it hears from participants whose identity
    starts with ``from_prefix`` comes back into its microphone, ``delay_s`` later
    and ``gain_db`` louder (negative: quieter)."""

    delay_s: float = 0.15
    gain_db: float = -6.0
    from_prefix: str = "agent-"


class EchoPath:
    """The speakerphone's sound path: a speaker FIFO fed by the received stream
    and played at the microphone's own 10 ms clock, then a fixed delay line.

    A real device's echo path is fixed; it must not slip with arrival jitter or
    with a stall of the test process. The speaker's clock is the microphone's:
    a frame not there when its turn comes is played as silence and, when it
    does arrive, dropped as late (as a jitter buffer conceals and discards),
    so the path stays where it was. Only a stream that stops for
    ``_SPEAKER_GIVE_UP`` frames starts over with a new cushion.
    """

    def __init__(self, phone: Speakerphone) -> None:
        self.phone = phone
        self.underruns = 0  # dry spells mid-stream (each played as silence; the path holds)
        self._speaker: collections.deque[np.ndarray] = collections.deque()
        self._playing = False
        self._owed = 0  # frames played as silence whose audio has not arrived yet
        frames = max(1, round(phone.delay_s * 1000 / FRAME_MS))
        self._delay_line = collections.deque(np.zeros(FRAME_SAMPLES, np.int16) for _ in range(frames))

    def play(self, identity: str, pcm: np.ndarray) -> None:
        """A received frame: on the speaker if it comes from someone the phone echoes."""
        if not identity.startswith(self.phone.from_prefix) or len(pcm) != FRAME_SAMPLES:
            return
        if self._owed:
            self._owed -= 1  # its slot was played as silence: too late to play now
            return
        self._speaker.append(pcm)

    def next_frame(self) -> np.ndarray:
        """The echo in the next 10 ms of microphone signal (int32, before clipping)."""
        while len(self._speaker) > _SPEAKER_MAX_FRAMES:
            self._speaker.popleft()
        if not self._playing and len(self._speaker) >= _SPEAKER_CUSHION:
            self._playing = True  # a jitter cushion, as a real player keeps
        played = np.zeros(FRAME_SAMPLES, np.int16)
        if self._playing and self._speaker:
            played = self._speaker.popleft()
        elif self._playing:
            if not self._owed:
                self.underruns += 1
            self._owed += 1
            if self._owed > _SPEAKER_GIVE_UP:
                self._playing, self._owed = False, 0
        self._delay_line.append(played)
        echo = self._delay_line.popleft()
        return (echo.astype(np.float64) * 10 ** (self.phone.gain_db / 20)).astype(np.int32)

    def skip(self, frames: int) -> None:
        """The microphone dropped ``frames`` of its clock (a stall it did not burst):
        the speaker and the delay line move on with it, so the path holds."""
        for _ in range(frames):
            self.next_frame()


class BackgroundNoise:
    """A noisy line: steady noise at ``dbfs``, a fan or a room rather than hiss (fixed seed)."""

    def __init__(self, dbfs: float, *, seed: int = 11) -> None:
        self.dbfs = dbfs
        self._rng = np.random.default_rng(seed)

    def next_frame(self) -> np.ndarray:
        """The next 10 ms of noise (int32, before clipping)."""
        white = self._rng.standard_normal(FRAME_SAMPLES + 3)
        noise = np.convolve(white, np.ones(4) / 4, mode="valid")[:FRAME_SAMPLES]
        return (noise / 0.5 * 32768 * 10 ** (self.dbfs / 20)).astype(np.int32)


def _add(pcm: np.ndarray, extra: np.ndarray) -> np.ndarray:
    mixed: np.ndarray = np.clip(pcm.astype(np.int32) + extra, -32768, 32767)
    return mixed.astype(np.int16)


class MicAcoustics:
    """Everything between the caller's mouth and its microphone track."""

    def __init__(self, speakerphone: Speakerphone | None = None, background_noise_dbfs: float | None = None) -> None:
        self.echo = None if speakerphone is None else EchoPath(speakerphone)
        self.noise = None if background_noise_dbfs is None else BackgroundNoise(background_noise_dbfs)

    @property
    def speaker_underruns(self) -> int:
        return 0 if self.echo is None else self.echo.underruns

    def heard(self, identity: str, pcm: np.ndarray) -> None:
        """A frame the caller received (it plays on the speakerphone, if there is one)."""
        if self.echo is not None:
            self.echo.play(identity, pcm)

    def skip(self, frames: int) -> None:
        """``frames`` of microphone signal the caller never sent (it stalled)."""
        if self.echo is not None:
            self.echo.skip(frames)

    def pick_up(self, voice: np.ndarray) -> np.ndarray:
        """10 ms of microphone signal: ``voice`` (int16), then the echo, then the noise,
        each added and clipped to int16 in that order."""
        data = voice
        if self.echo is not None:
            data = _add(data, self.echo.next_frame())
        if self.noise is not None:
            data = _add(data, self.noise.next_frame())
        return data
