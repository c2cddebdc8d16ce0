"""The room-test harness itself: a real livekit-server and two real WebRTC callers, no agent.

If these fail, every room test fails for the same reason; they say whether
the harness (namespace, server, Caller, Recording) can be trusted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.testing.caller import Recording, load_wav, speech_wav
from agent.testing.harness import SLOTS, Testbed, room_name, running_testbed

pytestmark = [pytest.mark.room]


@pytest.fixture(scope="module")
def server_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with running_testbed(tmp_path_factory.mktemp("harness"), worker=False, realtime=False, slot=SLOTS["harness"]) as bed:
        yield bed


@pytest.fixture(scope="module")
def sentence(speech_dir: Path) -> Path:
    return Path(speech_wav("The quick brown fox jumps over the lazy dog, twice on Sundays.", str(speech_dir / "fox.wav")))


async def test_a_caller_hears_another_callers_sentence_in_real_time(server_only: Testbed, sentence: Path) -> None:
    room = room_name("harness")
    bob = server_only.caller(room, "bob")
    alice = server_only.caller(room, "alice")
    try:
        await bob.join()
        await alice.join()
        await bob.wait_for_audio(timeout=15, identity="alice")
        await alice.wait_for_audio(timeout=15, identity="bob")

        pcm, rate = load_wav(sentence)
        expected = sum(e - s for s, e in Recording.from_pcm(pcm, rate).speech_segments())
        before = time.time()
        await alice.say(pcm, rate)
        said_start, said_end = alice.spoken[-1]
        await bob.wait_for_speech(after=before, timeout=10)
        await asyncio.sleep(1.0)  # let the tail arrive, plus trailing silence

        segments = bob.heard("alice").filter(after=before).speech_segments()
        total = sum(e - s for s, e in segments)
        assert segments, f"bob heard no speech from alice: {bob.heard('alice')}"
        assert abs(total - expected) <= 0.3 * expected, (segments, expected)
        assert said_start - 0.1 <= segments[0][0] <= said_start + 1.0, (segments[0], said_start)
        assert segments[-1][1] <= said_end + 1.0, (segments[-1], said_end)

        from_bob = alice.heard("bob")
        assert from_bob.duration > 1.0, "alice should be receiving bob's (silent) mic"
        assert from_bob.speech_segments() == [], "bob never spoke, yet alice heard speech from him"
        assert bob.heard("bob").frames == [] and alice.heard("alice").frames == []
    finally:
        await alice.leave()
        await bob.leave()
        await alice.leave()  # idempotent


async def test_wait_for_speech_times_out_in_silence(server_only: Testbed) -> None:
    room = room_name("harness")
    async with server_only.caller(room, "carol") as carol, server_only.caller(room, "dave") as dave:
        await carol.wait_for_audio(timeout=15, identity="dave")
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="no speech"):
            await carol.wait_for_speech(timeout=1.5)
        assert 1.4 <= time.monotonic() - t0 < 3.0
        assert dave.heard().speech_segments() == []
