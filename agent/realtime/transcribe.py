"""Input audio transcription for the local server: CMU PocketSphinx, offline.

PocketSphinx ships its US-English acoustic and language models inside the
PyPI wheel, so nothing is downloaded at run time. It is a small, old-school
recognizer: transcripts are a rough guide (as OpenAI's docs say of theirs
too), fine for logs and captions, not for exact rule matching.

Decoding costs CPU (about 0.3 s per 2 s of speech here), so it runs in one
worker thread; the decoder is not thread-safe and is loaded once, lazily.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, resample

DECODER_RATE = 16_000


class TranscriptionError(RuntimeError):
    pass


class Transcriber:
    def __init__(self) -> None:
        self._decoder: Any = None
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcribe")

    def _load(self) -> Any:
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError as e:
                raise TranscriptionError("pocketsphinx is not installed (pip install pocketsphinx)") from e
            self._decoder = Decoder(samprate=DECODER_RATE, loglevel="FATAL")
        return self._decoder

    def transcribe_sync(self, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> str:
        audio = resample(np.asarray(pcm, dtype=np.int16), rate, DECODER_RATE)
        with self._lock:
            decoder = self._load()
            decoder.start_utt()
            decoder.process_raw(audio.astype("<i2").tobytes(), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    async def transcribe(self, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> str:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self.transcribe_sync, pcm, rate)
        except TranscriptionError:
            raise
        except Exception as e:  # a decoder failure must not take the session down
            raise TranscriptionError(f"{type(e).__name__}: {e}") from e

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
