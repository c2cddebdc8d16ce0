"""The test caller without a room: its acoustics (agent/testing/acoustics.py)
and its waits (agent/testing/caller.py), which wake on what arrives.

Frames go in where the caller's recorders put them (``Caller._receive``), so
no livekit-server is needed; the room tests (tests/test_harness_rooms.py)
cover the rest of the way.
"""

from __future__ import annotations

import asyncio
import math
import re
import time

import numpy as np
import pytest

from agent.sound.stream_clock import StreamClock
from agent.testing.acoustics import BackgroundNoise, MicAcoustics, Speakerphone
from agent.testing.caller import Caller, Transcript
from agent.testing.recording import FRAME_SAMPLES, SAMPLE_RATE, Recording, dbfs, sum_squares, voiced_span

SILENCE = np.zeros(FRAME_SAMPLES, np.int16)


def _tone(dbfs_level: float, n: int = FRAME_SAMPLES) -> np.ndarray:
    t = np.arange(n) / 48000
    return (np.sin(2 * np.pi * 500 * t) * 32768 * math.sqrt(2) * 10 ** (dbfs_level / 20)).astype(np.int16)


def test_a_speakerphone_echoes_the_agent_delay_later_at_its_gain_after_a_jitter_cushion() -> None:
    mic = MicAcoustics(Speakerphone(delay_s=0.15, gain_db=-6.0))
    loud = _tone(-10)
    picked = []
    for i in range(40):  # one frame received for each one sent, as in a steady call
        mic.heard("agent-1", loud if i == 0 else SILENCE)
        mic.heard("someone-else", loud)  # only the agent is echoed
        picked.append(mic.pick_up(SILENCE))
    loud_at = [i for i, frame in enumerate(picked) if np.any(frame)]
    # 6 frames of cushion before the speaker plays (it plays the first one at
    # frame 5, the sixth call), then 15 frames (150 ms) of delay line.
    assert loud_at == [5 + 15]
    assert dbfs(sum_squares(picked[20]), FRAME_SAMPLES) == pytest.approx(-16.0, abs=0.2)
    assert mic.speaker_underruns == 0


def test_a_speaker_that_runs_dry_mid_stream_counts_an_underrun() -> None:
    mic = MicAcoustics(Speakerphone())
    for _ in range(6):
        mic.heard("agent-1", _tone(-20))
    for _ in range(8):  # plays 6, then runs dry
        mic.pick_up(SILENCE)
    assert mic.speaker_underruns == 1


def _echo_of_a_marker(stall: str | None) -> tuple[int, int]:
    """Where a loud frame the caller received at slot 50 comes back in its
    microphone (the slot), after a 10-slot stall of the caller at slots 30-39:
    "late" (frames pile up and arrive together, the microphone ran on), or
    "dropped" (the microphone skipped those slots), or none; and the underruns."""
    mic = MicAcoustics(Speakerphone(delay_s=0.15, gain_db=-6.0))
    pending: list[np.ndarray] = []
    echoed = []
    for slot in range(100):
        pending.append(_tone(-10) if slot == 50 else _tone(-60))
        if stall is not None and 30 <= slot < 40:
            if stall == "late":
                echoed.append(mic.pick_up(SILENCE))  # the microphone's clock runs on; nothing arrives
            continue
        if stall == "dropped" and slot == 40:
            mic.skip(10)
        for frame in pending:
            mic.heard("agent-1", frame)
        pending.clear()
        echoed.append(mic.pick_up(SILENCE))
    levels = [dbfs(sum_squares(f), FRAME_SAMPLES) for f in echoed]
    at = [i for i, level in enumerate(levels) if level > -30]
    assert len(at) == 1, levels
    return at[0] + (10 if stall == "dropped" else 0), mic.speaker_underruns


def test_the_echo_path_holds_through_a_stall_of_the_caller() -> None:
    # A real speakerphone's path is fixed; the worker's echo canceller must not
    # be handed a path that jumps because the test process stalled.
    assert _echo_of_a_marker(None) == (70, 0)
    assert _echo_of_a_marker("late") == (70, 1)  # 5 buffered slots, then 5 of silence; the late frames dropped
    assert _echo_of_a_marker("dropped") == (70, 1)  # the same, with the slots never sent


def test_background_noise_sits_at_its_level() -> None:
    noise = BackgroundNoise(-50.0)
    frames = np.concatenate([noise.next_frame() for _ in range(500)])
    assert dbfs(sum_squares(frames), len(frames)) == pytest.approx(-50.0, abs=0.5)
    assert np.array_equal(BackgroundNoise(-50.0).next_frame(), BackgroundNoise(-50.0).next_frame())  # a fixed seed


def test_voice_echo_and_noise_are_mixed_and_clipped() -> None:
    mic = MicAcoustics(None, background_noise_dbfs=-20.0)
    out = mic.pick_up(np.full(FRAME_SAMPLES, 32767, np.int16))
    assert out.dtype == np.int16 and out.max() == 32767 and out.min() > 0
    assert np.array_equal(MicAcoustics().pick_up(_tone(-10)), _tone(-10))


async def _feed(caller: Caller, frames: list[np.ndarray], identity: str = "agent-1") -> None:
    for frame in frames:
        await caller._receive(identity, "TR_1", frame)
        await asyncio.sleep(0.01)  # 10 ms frames, in real time


async def test_speech_received_in_a_burst_after_a_stall_still_lasts_as_long_as_it_played() -> None:
    """The test process stalls (a background lane at idle priority) while the
    agent speaks; the frames that queued up meanwhile are handled at once. Their
    times come from the track's sample count (as ``Caller._record`` stamps them),
    so 0.3 s of speech handled in a burst still reads as 0.3 s of speech."""
    caller = Caller("ws://unused", "unused")
    clock = StreamClock(SAMPLE_RATE)
    for _ in range(10):  # silence, in real time
        await caller._receive("agent-1", "TR_1", SILENCE, at=clock.stamp(FRAME_SAMPLES, time.time()))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the stall: 30 frames of speech arrive meanwhile...
    for _ in range(30):  # ...and are handled in a burst
        await caller._receive("agent-1", "TR_1", _tone(-20), at=clock.stamp(FRAME_SAMPLES, time.time()))
    started = await caller.wait_for_speech(timeout=1.0, min_duration=0.2)
    assert started == pytest.approx(caller.heard().frames[10].time - 0.01, abs=0.02)


async def test_wait_for_speech_returns_when_speech_has_lasted_long_enough() -> None:
    caller = Caller("ws://unused", "unused")
    waiting = asyncio.create_task(caller.wait_for_speech(timeout=5, min_duration=0.2))
    await _feed(caller, [SILENCE] * 10)
    assert not waiting.done()
    began = time.time()
    await _feed(caller, [_tone(-20)] * 30)
    started = await asyncio.wait_for(waiting, 1)
    assert began - 0.02 <= started <= began + 0.05  # the start of the speech, not when it was noticed


async def test_wait_for_speech_times_out_saying_what_was_heard() -> None:
    caller = Caller("ws://unused", "unused")
    feeding = asyncio.create_task(_feed(caller, [_tone(-50)] * 20))
    await caller._transcribed(Transcript(time.time(), "agent-1", "Hello, I'm an AI assistant.", {}))
    with pytest.raises(TimeoutError) as failed:
        await caller.wait_for_speech(timeout=0.3)
    await feeding
    # How much arrived and when, how loud, and what the agent's transcripts say it said meanwhile.
    assert re.search(r"received 20 frames \(arrived \+0\.0 s to \+0\.\d s of the wait\) from \['agent-1'\], loudest -50\.\d dBFS", str(failed.value)), failed.value
    assert re.search(r"transcripts meanwhile: \['[-+]0\.0 s .Hello, I.*m an AI assistant", str(failed.value)), failed.value


async def test_wait_for_audio_and_transcripts_wake_on_arrival() -> None:
    caller = Caller("ws://unused", "unused")
    audio = asyncio.create_task(caller.wait_for_audio(timeout=5, identity="agent-1"))
    said = asyncio.create_task(caller.wait_for_transcript(r"hello", timeout=5, after=0.0))
    await _feed(caller, [SILENCE], identity="someone-else")
    await caller._transcribed(Transcript(time.time(), "agent-1", "not yet", {}))
    await asyncio.sleep(0.05)
    assert not audio.done() and not said.done()
    await _feed(caller, [SILENCE])
    await caller._transcribed(Transcript(time.time(), "agent-1", "Hello there", {}))
    assert (await asyncio.wait_for(said, 1)).text == "Hello there"
    assert await asyncio.wait_for(audio, 1) == caller.heard("agent-1").frames[0].time


async def test_wait_for_quiet_waits_out_speech_that_goes_on() -> None:
    caller = Caller("ws://unused", "unused")
    talking = asyncio.create_task(_feed(caller, [_tone(-20)] * 40))  # 0.4 s of speech
    began = time.time()
    last_end = await caller.wait_for_quiet(0.3, timeout=5)
    await talking
    ended = Recording(caller.heard().frames).speech_segments()[-1][1]
    assert last_end == pytest.approx(ended, abs=0.03)
    assert time.time() - began >= 0.4 + 0.3 - 0.05


async def test_wait_for_quiet_gives_up_at_its_timeout() -> None:
    caller = Caller("ws://unused", "unused")
    talking = asyncio.create_task(_feed(caller, [_tone(-20)] * 60))
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="still hearing speech after 0.3s"):
        await caller.wait_for_quiet(0.5, timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 1.0
    await talking


def test_voiced_span_finds_the_speech_between_the_padding() -> None:
    rate = 24000
    tone = (3000 * np.sin(np.arange(rate // 2) * 2 * np.pi * 220 / rate)).astype(np.int16)  # about -23 dBFS
    pcm = np.concatenate([np.zeros(rate // 4, np.int16), tone, np.zeros(rate // 10, np.int16)])
    assert voiced_span(pcm, rate, -40.0) == (rate // 4, rate // 4 + rate // 2)
    assert voiced_span(pcm, rate, -10.0) is None  # nothing that loud
    assert voiced_span(np.zeros(rate, np.int16), rate, -40.0) is None


async def test_a_live_stream_plays_its_chunks_back_to_back_without_padding() -> None:
    """Chunks of any length (here 100 ms at 22.05 kHz, resampled to 48 kHz as they
    come) are played as one stream: whole 10 ms frames, no silence padded in at a
    chunk's end (it was, and the backend's recognizer misheard the words)."""
    import asyncio

    import numpy as np

    from agent.testing.caller import FRAME_SAMPLES, Caller

    caller = Caller("ws://unused", "token")
    caller._mic_task = asyncio.get_running_loop().create_future()  # a mic that is running
    rate, chunk = 22050, 2205
    pcm = (np.sin(np.arange(rate * 2) / 7.0) * 8000).astype(np.int16)  # 2 s

    async def live():  # type: ignore[no-untyped-def]
        for i in range(0, len(pcm), chunk):
            yield pcm[i : i + chunk]
            await asyncio.sleep(0)

    speaking = asyncio.create_task(caller.say_stream(live(), rate))
    frames = []
    while not speaking.done():
        frame = caller._next_frame(0.0)
        if frame is not None:
            frames.append(frame)
        await asyncio.sleep(0)
    await speaking
    played = np.concatenate(frames)
    expected = len(pcm) * 48000 // rate
    assert abs(len(played) - expected) <= FRAME_SAMPLES, (len(played), expected)  # one frame of rounding at the end
    assert np.count_nonzero(played[: expected - FRAME_SAMPLES] == 0) < 20, "silence padded in between chunks"
    caller._mic_task.cancel()
