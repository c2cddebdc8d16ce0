"""Offline speech recognition with Moonshine (base-en), for what a test caller heard.

``moonshine-cpp`` (MIT, its English model and its own ONNX runtime inside the
wheel: nothing is downloaded) runs in one child process at the idle CPU
priority, so that decoding never delays the real-time audio of a room on a
small machine. The audio is cut to its voiced part and padded with silence
on each side (Moonshine returns nothing for some utterances with no lead-in,
or with a second or more of silence after them; when it returns nothing, a
different padding is tried), and a
decode that runs away (the model repeating a token) is cut by a timeout.

    async with Recognizer() as ear:
        text = await ear.transcribe(pcm, 48000)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import multiprocessing
import os
import re
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import TranscriptionError
from .resample import resample

RATE = 16_000
# Silence around the voiced part, tried in turn while Moonshine returns nothing:
# with no lead-in it misses some utterances, and with half a second it missed
# "Hello! How can I help you today?" as heard through a room (a fresh-clone run;
# a quarter of a second read it right).
PADS_S = (0.5, 0.25, 1.0)

_model: Any = None


def _init_child() -> None:
    """In the child: idle CPU priority, then the model (about 0.6 s to load)."""
    global _model
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    import moonshine_cpp

    _model = moonshine_cpp.MoonshineModel()


def _decode(audio: bytes) -> str:
    from moonshine_cpp.moonshine_cpp import moonshine_lib

    samples = np.frombuffer(audio, dtype=np.float32)
    out = ctypes.c_char_p(0)
    # moonshine_cpp's own transcribe() cannot take an array (it names a ctypes type
    # that does not exist); its C function can.
    error = moonshine_lib.moonshine_transcribe(
        _model.model_handle, samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), len(samples), ctypes.byref(out)
    )
    if error != 0:
        raise RuntimeError(f"moonshine_transcribe failed with code {error}")
    text = (out.value or b"").decode("utf-8", errors="replace")
    moonshine_lib.moonshine_free_text(out)
    return text


def _voiced(audio: np.ndarray, level_dbfs: float = -45.0) -> np.ndarray:
    """From the first to the last sample above ``level_dbfs``: Moonshine returns
    nothing for speech followed by a second or two of silence."""
    loud = np.flatnonzero(np.abs(audio) > 10 ** (level_dbfs / 20))
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio[:0]


def normalize(text: str) -> str:
    """Lower case, digits and letters only, single spaces: what matching compares."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text.lower()).split())


def word_edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Words inserted, deleted or replaced to turn ``ref`` into ``hyp`` (for word error rates)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


class Recognizer:
    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_child
            )
        return self._pool

    async def transcribe(self, pcm: np.ndarray, rate: int) -> str:
        """The words in int16 mono ``pcm`` at ``rate``; TranscriptionError if decoding fails or overruns."""
        if len(pcm) == 0:
            return ""
        audio = _voiced(resample(np.asarray(pcm, dtype=np.int16), rate, RATE).astype(np.float32) / 32768.0)
        if len(audio) == 0:
            return ""
        try:
            for pad_s in PADS_S:
                pad = np.zeros(int(pad_s * RATE), np.float32)
                data = np.concatenate([pad, audio, pad]).tobytes()
                text = await asyncio.wait_for(asyncio.wrap_future(self._executor().submit(_decode, data)), self.timeout)
                if text.strip():
                    return text
            return ""
        except TimeoutError:
            self._reset()  # the decode ran away: a fresh process for the next one
            raise TranscriptionError(f"decoding {len(audio) / RATE:.1f} s of audio took more than {self.timeout:g} s") from None
        except Exception as e:
            self._reset()
            raise TranscriptionError(f"{type(e).__name__}: {e}") from e

    def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> Recognizer:
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        await asyncio.to_thread(self.close)
