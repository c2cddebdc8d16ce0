"""Input audio transcription for the local server: CMU PocketSphinx, offline.

PocketSphinx ships its US-English acoustic and language models inside the
PyPI wheel, so nothing is downloaded at run time. It is a small, old-school
recognizer: transcripts are a rough guide (as OpenAI's docs say of theirs
too), fine for captions and for matching a few words, not for dictation.

Decoding holds the GIL (about 0.25 s of CPU per second of speech here), so
it runs in a separate process: in a thread it froze the server's event loop
for half a second at a time. At most ``max_pending`` decodes wait; past that
a request fails at once ("busy") rather than queueing behind minutes of audio.

That process must not outlive the server: ``close()`` stops it (and kills it
if it does not stop in time), and the process itself asks the kernel for a
SIGKILL when the server dies without closing (``agent.parent_death``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import time
from typing import Any

import numpy as np

from ..errors import TranscriptionError
from ..parent_death import die_with_parent
from .audio import SAMPLE_RATE, resample

__all__ = ["DECODER_RATE", "Transcriber", "TranscriptionError"]

DECODER_RATE = 16_000


_decoder: Any = None  # one per worker process


def _decode(pcm16: bytes) -> str:
    """Runs in the worker process: 16 kHz int16 bytes -> text."""
    global _decoder
    if _decoder is None:
        from pocketsphinx import Decoder

        _decoder = Decoder(samprate=DECODER_RATE, loglevel="FATAL")
    _decoder.start_utt()
    _decoder.process_raw(pcm16, full_utt=True)
    _decoder.end_utt()
    hyp = _decoder.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


class Transcriber:
    """Decodes utterances in one process of its own, started on first use.

    Use it from one thread (the event loop's): the decoder process is started
    by the thread that submits to it, and the kernel's parent-death signal is
    tied to that thread."""

    def __init__(self, *, max_pending: int = 16) -> None:
        self.max_pending = max_pending
        self._pending = 0
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            try:
                import pocketsphinx  # noqa: F401 - fail here, with a clear message
            except ImportError as e:
                raise TranscriptionError(
                    "pocketsphinx is not installed", hint="pip install pocketsphinx", retryable=False
                ) from e
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    def warm_up(self) -> None:
        """Start the decoder process now rather than on the first caller's turn."""
        try:
            self._executor().submit(_decode, b"\x00\x00" * 1600)
        except TranscriptionError:
            pass

    async def transcribe(self, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> str:
        if self._pending >= self.max_pending:
            raise TranscriptionError(f"the transcriber is busy ({self._pending} utterances waiting)")
        audio = resample(np.asarray(pcm, dtype=np.int16), rate, DECODER_RATE).astype("<i2").tobytes()
        self._pending += 1
        try:
            return await asyncio.wrap_future(self._executor().submit(_decode, audio))
        except TranscriptionError:
            raise
        except Exception as e:  # a crashed decoder process must not take the session down
            self._pool = None  # a broken pool is replaced on the next request
            raise TranscriptionError(f"{type(e).__name__}: {e}") from e
        finally:
            self._pending -= 1

    def close(self, timeout: float = 5.0) -> None:
        """Stop the decoder process: it finishes the utterance it is on (queued
        ones are cancelled); if it has not exited within ``timeout``, kill it."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # The pool's own map of its processes (stdlib-private): shutdown() has no
        # timeout, and drops the map, so take it first.
        processes = list(pool._processes.values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for proc in processes:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
