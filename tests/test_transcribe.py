"""The local server's transcriber (agent/realtime/transcribe.py), with the real
PocketSphinx decoder in its process: a turn decoded while it arrives gives the
words a whole-turn decode gives, and what cannot be streamed falls back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from agent.realtime import transcribe
from agent.realtime.audio import SAMPLE_RATE, resample
from agent.realtime.transcribe import Transcriber
from agent.sound.espeak import speak
from agent.sound.recognizer import word_edit_distance

STEP = SAMPLE_RATE // 10  # the plugin appends 100 ms at a time


def _words_apart(a: str, b: str) -> int:
    """Word-level edit distance."""
    return word_edit_distance(a.split(), b.split())


def _turn(text: str) -> np.ndarray:
    pcm, rate = speak(text, voice="en-us")
    pcm = resample(pcm, rate, SAMPLE_RATE)
    return np.concatenate([np.zeros(SAMPLE_RATE // 3, np.int16), pcm, np.zeros(SAMPLE_RATE // 2, np.int16)])


@pytest.fixture
async def transcriber() -> AsyncIterator[Transcriber]:
    t = Transcriber()
    t.warm_up()
    try:
        yield t
    finally:
        t.close()


async def _stream(t: Transcriber, key: str, pcm: np.ndarray) -> None:
    for i in range(0, pcm.size, STEP):
        t.feed(key, pcm[i : i + STEP])
        await asyncio.sleep(0)


async def test_a_streamed_turn_reads_right(transcriber: Transcriber) -> None:
    # The first streamed turn of the process too: warm-up gives streams a cepstral
    # mean (from the model's default the first one read "what is that episode are
    # dead or"). A running mean is not the turn's own, so a word may differ.
    for i, text in enumerate(["What is the status of my order?", "I would like to place an order for two pizzas"]):
        pcm = _turn(text)
        await _stream(transcriber, f"s/{i}", pcm)
        streamed = await transcriber.finish(f"s/{i}")
        assert streamed is not None and _words_apart(streamed, text.lower().rstrip("?")) <= 1, streamed
    assert transcriber.stream_dropped == 0


async def test_two_turns_at_once_keep_their_own_words(transcriber: Transcriber) -> None:
    a, b = _turn("What is the status of my order?"), _turn("I would like to place an order for two pizzas")
    for i in range(0, max(a.size, b.size), STEP):  # interleaved, as two sessions' appends are
        if i < a.size:
            transcriber.feed("a", a[i : i + STEP])
        if i < b.size:
            transcriber.feed("b", b[i : i + STEP])
    got_a, got_b = await asyncio.gather(transcriber.finish("a"), transcriber.finish("b"))
    assert got_a is not None and got_b is not None
    assert _words_apart(got_a, "what is the status of my order") <= 1, got_a
    assert _words_apart(got_b, "i would like to place an order for two pizzas") <= 1, got_b


async def test_a_stream_too_far_behind_is_decoded_whole(transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcribe, "MAX_STREAM_BACKLOG_S", 0.25)
    pcm = _turn("What is the status of my order?")
    for i in range(0, pcm.size, STEP):  # all at once: more than 0.25 s waits in the decoder process
        transcriber.feed("k", pcm[i : i + STEP])
    assert await transcriber.finish("k") is None  # the caller decodes the turn whole instead
    assert transcriber.stream_dropped == 1
    whole = await transcriber.transcribe(pcm)
    assert _words_apart(whole, "what is the status of my order") <= 1, whole


async def test_finish_of_an_unknown_or_cancelled_stream_says_none(transcriber: Transcriber) -> None:
    assert await transcriber.finish("never-fed") is None
    pcm = _turn("What is the status of my order?")
    await _stream(transcriber, "c", pcm[: SAMPLE_RATE // 2])
    transcriber.cancel("c")
    assert await transcriber.finish("c") is None
    # the cancelled stream's decoder went back to the pool: a new turn under the same key starts clean
    await _stream(transcriber, "c", pcm)
    text = await transcriber.finish("c")
    assert text is not None and _words_apart(text, "what is the status of my order") <= 1, text
