"""Speech for the local backend: espeak-ng, run as a subprocess, resampled to 24 kHz.

Synthesis is I/O for the protocol (it happens outside the state machine):
the server shell calls ``Synthesizer.synthesize`` and hands the samples
back to the protocol. Results are cached by (voice, text) because scripted
brains repeat their lines, and a cache hit costs nothing on the event loop.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import wave
from collections import OrderedDict

import numpy as np

from .audio import SAMPLE_RATE, resample

# OpenAI voice names -> espeak-ng voice variants, so that two configured
# voices sound different here too.
_VOICES = {
    "marin": "en-us+f3",
    "cedar": "en-us+m3",
    "alloy": "en-us+f2",
    "ash": "en-us+m2",
    "ballad": "en-us+m4",
    "coral": "en-us+f4",
    "echo": "en-us+m1",
    "sage": "en-us+f1",
    "shimmer": "en-us+f5",
    "verse": "en-us+m5",
}


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


def wav_to_pcm24k(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        frames = w.readframes(w.getnframes())
    if width != 2:
        raise SpeechError(f"expected 16-bit WAV, got {8 * width}-bit")
    pcm = np.frombuffer(frames, dtype="<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return resample(pcm, rate, SAMPLE_RATE)


class Synthesizer:
    """Text -> int16 mono 24 kHz, with an LRU cache."""

    def __init__(self, *, words_per_minute: int = 175, cache_size: int = 256) -> None:
        self.words_per_minute = words_per_minute
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._binary = shutil.which("espeak-ng")
        # Syntheses in progress, shared and owned here (not by the first
        # requester, whose cancellation must not cancel the others): 200
        # sessions asking for one sentence at once start one espeak-ng.
        self._pending: dict[tuple[str, str], asyncio.Task[np.ndarray]] = {}

    async def synthesize(self, text: str, voice: str = "marin") -> np.ndarray:
        key = (voice, text)
        if (hit := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return hit
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._run_and_cache(key, text, voice), name="espeak")
            self._pending[key] = task
            task.add_done_callback(lambda _t: self._pending.pop(key, None))
        return await asyncio.shield(task)

    async def _run_and_cache(self, key: tuple[str, str], text: str, voice: str) -> np.ndarray:
        pcm = await self._run(text, voice)
        self._cache[key] = pcm
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return pcm

    async def aclose(self) -> None:
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, text: str, voice: str) -> np.ndarray:
        if self._binary is None:
            raise SpeechError("espeak-ng is not installed (apt-get install espeak-ng)")
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            "--stdout",
            "-v",
            _VOICES.get(voice, "en-us"),
            "-s",
            str(self.words_per_minute),
            "--",
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0 or not out:
            raise SpeechError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace')[:200]}")
        return wav_to_pcm24k(out)
