"""Input audio transcription for the local server: CMU PocketSphinx, offline.

PocketSphinx ships its US-English acoustic and language models inside the
PyPI wheel, so nothing is downloaded at run time. It is a small, old-school
recognizer: transcripts are a rough guide (as OpenAI's docs say of theirs
too), fine for captions and for matching a few words, not for dictation.

Decoding holds the GIL (about 0.25 s of CPU per second of speech here), so
it runs in a separate process: in a thread it froze the server's event loop
for half a second at a time. At most ``max_pending`` decodes wait; past that
a request fails at once ("busy") rather than queueing behind minutes of audio.

A turn can also be decoded while the caller speaks (:meth:`Transcriber.feed`
with its audio as it arrives, then :meth:`Transcriber.finish`): the decoder
process keeps one utterance in progress per turn, so at the end of speech
only the last chunk is left to decode. The CPU is the same as decoding the
whole turn at its end; the time after it is what goes.

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


_decoder: Any = None  # one per worker process, for whole utterances
_streams: dict[str, Any] = {}  # turns decoded as they arrive: key -> a decoder inside an utterance
_idle: list[Any] = []  # decoders of finished streams, for the next ones
IDLE_DECODERS = 4
# A stream normalises its features with a running cepstral mean; from the model's
# default one ("40,3,-1,0,..."), the first turn of a decoder came out garbled
# ("what is that episode are dead or" for "what is the status of my order"),
# where a whole-turn decode uses the turn's own mean. So a stream starts from
# the mean of the last streamed turn, and the first one from this: the mean
# after streaming espeak-ng's en-us "What is the status of my order? When are
# you open on Sunday? I would like to place an order." at 16 kHz (measured;
# computing it at warm-up cost 1.9 s of CPU in front of the first turn, which
# pushed a transcript past its wait on a loaded machine).
SPEECH_CMN = "51.42,5.61,-4.52,12.62,-7.65,-0.19,-3.49,-16.83,-0.39,-4.02,9.12,-1.78,-3.24"
_cmn = SPEECH_CMN  # where the next stream starts
# Audio a stream may have waiting in the decoder process; past it the stream is
# dropped and the turn decoded whole at its commit (the decoder is behind anyway).
MAX_STREAM_BACKLOG_S = 4.0


def _new_decoder() -> Any:
    from pocketsphinx import Decoder

    return Decoder(samprate=DECODER_RATE, loglevel="FATAL")


def _text(decoder: Any) -> str:
    hyp = decoder.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


def _decode(pcm16: bytes) -> str:
    """Runs in the worker process: 16 kHz int16 bytes -> text."""
    global _decoder
    if _decoder is None:
        _decoder = _new_decoder()
    _decoder.start_utt()
    _decoder.process_raw(pcm16, full_utt=True)
    _decoder.end_utt()
    return _text(_decoder)


def _prepare() -> None:
    """Runs in the worker process: load the decoders before the first caller needs them."""
    _decode(b"\x00\x00" * 1600)  # the whole-turn decoder
    if not _idle and not _streams:
        _idle.append(_new_decoder())  # the first stream's


def _stream_feed(key: str, pcm16: bytes) -> None:
    """Runs in the worker process: more audio of the utterance ``key``."""
    decoder = _streams.get(key)
    if decoder is None:
        decoder = _idle.pop() if _idle else _new_decoder()
        decoder.set_cmn(_cmn)
        decoder.start_utt()
        _streams[key] = decoder
    decoder.process_raw(pcm16, full_utt=False)


def _stream_end(key: str) -> str | None:
    """Runs in the worker process: the utterance ``key`` is complete -> its text
    (None: no such stream)."""
    decoder = _streams.pop(key, None)
    if decoder is None:
        return None
    global _cmn
    decoder.end_utt()
    text = _text(decoder)
    _cmn = decoder.get_cmn()
    if len(_idle) < IDLE_DECODERS:
        _idle.append(decoder)
    return text


class Transcriber:
    """Decodes utterances in one process of its own, started on first use.

    Use it from one thread (the event loop's): the decoder process is started
    by the thread that submits to it, and the kernel's parent-death signal is
    tied to that thread."""

    def __init__(self, *, max_pending: int = 16) -> None:
        self.max_pending = max_pending
        self._pending = 0
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        # streams fed and not finished: key -> its parts not yet decoded (future, seconds of audio)
        self._streams: dict[str, list[tuple[concurrent.futures.Future[None], float]]] = {}
        self._dropped: set[str] = set()  # streams given up: finish() says None, the turn is decoded whole
        self.stream_dropped = 0  # streams given up for a backlog or a failure (decoded whole instead)

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
            self._executor().submit(_prepare)
        except TranscriptionError:
            pass

    def feed(self, key: str, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> None:
        """Decode ``pcm`` as the next part of the utterance ``key`` (the first part
        starts it), in the background. Never raises: a stream that cannot go on
        (no decoder, a failed part, more than ``MAX_STREAM_BACKLOG_S`` waiting) is
        dropped, and :meth:`finish` then says None, so the turn is decoded whole."""
        if key in self._dropped:
            return
        parts: list[tuple[concurrent.futures.Future[None], float]] = []
        for future, seconds in self._streams.get(key, []):
            if not future.done():
                parts.append((future, seconds))
            elif future.cancelled() or future.exception() is not None:
                self._drop(key)
                return
        self._streams[key] = parts
        seconds = pcm.size / rate
        if sum(s for _, s in parts) + seconds > MAX_STREAM_BACKLOG_S:
            self._drop(key)
            return
        audio = resample(np.asarray(pcm, dtype=np.int16), rate, DECODER_RATE).astype("<i2").tobytes()
        try:
            parts.append((self._executor().submit(_stream_feed, key, audio), seconds))
        except Exception:  # no decoder (not installed, pool broken): decoded whole, or failed, at the commit
            self._drop(key)

    def _drop(self, key: str) -> None:
        if key not in self._dropped:
            self._dropped.add(key)
            self.stream_dropped += 1

    def cancel(self, key: str) -> None:
        """The utterance ``key`` will not be finished (its turn was dropped): free its decoder."""
        self._dropped.discard(key)
        if self._streams.pop(key, None) is not None and self._pool is not None:
            try:
                self._pool.submit(_stream_end, key)
            except Exception:
                pass  # a broken pool took the stream with it

    async def finish(self, key: str) -> str | None:
        """The text of the utterance fed as ``key``; None when the stream was
        dropped or never started: then decode the turn whole (:meth:`transcribe`)."""
        dropped = key in self._dropped
        self._dropped.discard(key)
        if self._streams.pop(key, None) is None or self._pool is None:
            return None
        try:
            text = await asyncio.wrap_future(self._pool.submit(_stream_end, key))
        except Exception:  # the whole-turn decode that follows replaces a broken pool
            return None
        return None if dropped else text

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
