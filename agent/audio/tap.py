"""The far-end tap: an ``io.AudioOutput`` link in front of the session's audio
output that hands every frame the agent plays to the front-end as its echo
reference, and tells it when playback is cut short."""

from __future__ import annotations

import time

import numpy as np
from livekit import rtc
from livekit.agents.voice import io

from .frontend import AudioFrontend


class FarEndTap(io.AudioOutput):
    def __init__(self, frontend: AudioFrontend, next_in_chain: io.AudioOutput) -> None:
        super().__init__(
            label="FarEndTap",
            capabilities=io.AudioOutputCapabilities(pause=True),
            next_in_chain=next_in_chain,
            sample_rate=next_in_chain.sample_rate,
        )
        self._frontend = frontend
        self._resampler: rtc.AudioResampler | None = None
        self._resampler_rate: int | None = None
        self.paused = False
        self.pause_generation = 0  # which pause this is (agent/audio/bargein.py resumes only its own)

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self._frontend.push_far(self._mono_at_rate(frame))
        assert self.next_in_chain is not None
        await self.next_in_chain.capture_frame(frame)

    def _mono_at_rate(self, frame: rtc.AudioFrame) -> np.ndarray:
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
        if frame.sample_rate == self._frontend.rate:
            return pcm
        if self._resampler is None or self._resampler_rate != frame.sample_rate:
            self._resampler = rtc.AudioResampler(frame.sample_rate, self._frontend.rate, num_channels=1)
            self._resampler_rate = frame.sample_rate
        out = self._resampler.push(bytearray(pcm.tobytes()))
        return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in out]) if out else np.zeros(0, np.int16)

    def flush(self) -> None:
        super().flush()
        assert self.next_in_chain is not None
        self.next_in_chain.flush()
        self._frontend.end_far_segment()

    def on_playback_started(self, *, created_at: float) -> None:
        # The room's player reports (wall clock) when the segment's first frame
        # went to the audio source: the true start of what the caller hears.
        self._frontend.far_segment_started(created_at - time.time() + self._frontend.clock())
        super().on_playback_started(created_at=created_at)

    def clear_buffer(self) -> None:
        assert self.next_in_chain is not None
        self.next_in_chain.clear_buffer()
        self._frontend.clear_far()
        if self.paused:
            # A paused reply was interrupted (the backend confirmed the barge-in):
            # the sink plays again for the next reply; what it held is dropped.
            self.resume()

    def pause(self) -> None:
        """Stop playout now (the worker's barge-in); :meth:`resume` or an interruption ends it."""
        if not self.paused:
            self.paused = True
            self.pause_generation += 1
            self._frontend.pause_far()
            super().pause()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._frontend.resume_far()
            super().resume()
