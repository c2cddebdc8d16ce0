"""Speech from espeak-ng, run as a subprocess.

Three ways in, one command line:

- :func:`speak_wav`: a WAV file (22.05 kHz mono), for tests that play a file
  (the test caller's microphone, a browser's fake microphone);
- :func:`speak`: the samples now, for benchmarks that build a scene;
- :class:`Synthesizer`: text -> int16 mono at 24 kHz on an event loop, with
  OpenAI's voice names and a cache, for the local realtime server and the
  worker's reconnect notice.

Every failure is a :class:`~agent.errors.SpeechError`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections import OrderedDict

import numpy as np

from ..errors import SpeechError
from . import REALTIME_RATE
from .resample import resample
from .wav import read_mono

__all__ = ["OPENAI_VOICES", "SpeechError", "Synthesizer", "speak", "speak_wav"]

ESPEAK = "espeak-ng"
NOT_INSTALLED = "espeak-ng is not installed (apt-get install espeak-ng)"

# OpenAI voice names -> espeak-ng voice variants, so that two configured
# voices sound different here too.
OPENAI_VOICES = {
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


def espeak_argv(text: str, *, voice: str, words_per_minute: int | None = None, wav_path: str | None = None, binary: str = ESPEAK) -> list[str]:
    """The command line: the WAV goes to ``wav_path``, or to stdout without one.

    ``--`` ends the options, so a sentence that starts with ``-`` is spoken.
    """
    rate = [] if words_per_minute is None else ["-s", str(words_per_minute)]
    out = ["--stdout"] if wav_path is None else ["-w", wav_path]
    return [binary, *out, "-v", voice, *rate, "--", text]


def _run(argv: list[str]) -> bytes:
    try:
        done = subprocess.run(argv, check=True, capture_output=True)
    except FileNotFoundError as exc:
        raise SpeechError(NOT_INSTALLED) from exc
    except subprocess.CalledProcessError as exc:
        raise SpeechError(f"espeak-ng failed: {exc.stderr.decode(errors='replace')}") from exc
    return done.stdout


def speak_wav(text: str, path: str, *, voice: str) -> str:
    """Synthesize ``text`` with espeak-ng into ``path`` (22.05 kHz mono WAV); returns ``path``."""
    _run(espeak_argv(text, voice=voice, wav_path=path))
    return path


def speak(text: str, *, voice: str, words_per_minute: int | None = None) -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng: int16 mono and its sample rate (22.05 kHz)."""
    out = _run(espeak_argv(text, voice=voice, words_per_minute=words_per_minute))
    if not out:
        raise SpeechError("espeak-ng wrote no audio")
    return read_mono(out)


class Synthesizer:
    """Text -> int16 mono 24 kHz, with an LRU cache.

    Synthesis is I/O for the protocol (it happens outside the state machine):
    the server shell calls :meth:`synthesize` and hands the samples back to
    the protocol. Results are cached by (voice, text) because scripted brains
    repeat their lines, and a cache hit costs nothing on the event loop.
    ``voice`` is an OpenAI voice name (:data:`OPENAI_VOICES`); others speak
    espeak-ng's ``en-us``.
    """

    def __init__(self, *, words_per_minute: int = 175, cache_size: int = 256) -> None:
        self.words_per_minute = words_per_minute
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._binary = shutil.which(ESPEAK)
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
            raise SpeechError(NOT_INSTALLED)
        argv = espeak_argv(text, voice=OPENAI_VOICES.get(voice, "en-us"), words_per_minute=self.words_per_minute, binary=self._binary)
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0 or not out:
            raise SpeechError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace')[:200]}")
        pcm, rate = read_mono(out)
        return resample(pcm, rate, REALTIME_RATE)
