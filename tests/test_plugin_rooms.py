"""Client 1: livekit-plugins-openai's RealtimeModel against the local server, in rooms.

A spoken turn is in test_worker_rooms.py; here are interruption and a
function call round trip (the brain's rules are tests/data/brain.yaml).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.testing.caller import load_wav, speech_wav
from agent.testing.harness import Testbed, greeted, room_name

pytestmark = [pytest.mark.room]

SPEECH_DBFS = -40.0


@pytest.fixture(scope="module")
def interruption(speech_dir: Path) -> Path:
    return Path(speech_wav("Sorry to interrupt, but I am in a hurry.", str(speech_dir / "interrupt.wav")))


@pytest.mark.background  # typed turns and generous bounds: in a background lane (scripts/lanes.sh)
async def test_function_call_round_trip_from_room_chat(testbed: Testbed) -> None:
    async with testbed.caller(room_name("plugin")) as caller:
        await greeted(caller, timeout=15, threshold_dbfs=SPEECH_DBFS)
        asked = time.time()
        await caller.send_chat("When are you open on Sunday?")
        # brain -> function_call get_opening_hours(day=Sunday) -> the worker runs the tool ->
        # function_call_output -> a new response that speaks the tool's result
        said = await caller.wait_for_transcript(r"open 9 am to 3 pm", timeout=20, after=asked)
        assert "Sunday" in said.text
        heard = await caller.wait_for_speech(after=asked, timeout=10, threshold_dbfs=SPEECH_DBFS)
        print(f"\n[figure] chat question -> first audio of the tool-based answer: {heard - asked:.2f}s")


async def test_caller_interrupts_a_long_answer(testbed: Testbed, interruption: Path) -> None:
    async with testbed.caller(room_name("plugin")) as caller:
        await greeted(caller, timeout=15, threshold_dbfs=SPEECH_DBFS)
        asked = time.time()
        await caller.send_chat("Please tell me a story")
        story_start = await caller.wait_for_speech(after=asked, timeout=15, threshold_dbfs=SPEECH_DBFS)
        # The story is ~15 s long; speak over it after 4 s (past the framework's
        # 3 s echo warm-up, during which it ignores the caller's microphone).
        await asyncio.sleep(max(0.0, story_start + 4.0 - time.time()))
        pcm, rate = load_wav(interruption)
        await caller.say(pcm, rate)
        said_start, said_end = caller.spoken[-1]
        answer_at = await caller.wait_for_speech(after=said_end, timeout=15, threshold_dbfs=SPEECH_DBFS)
        await caller.wait_for_quiet(1.0, timeout=30)

        # Agent speech from the story's start up to the answer: the story's last
        # segment must end soon after the caller started, and nothing may start
        # while the caller is still talking.
        segments = [
            seg for seg in caller.heard().filter(after=story_start - 0.1).speech_segments(SPEECH_DBFS)
            if seg[0] < said_end  # the answer may start right after: the WAV ends in silence
        ]  # fmt: skip
        stopped = max(end for _, end in segments)
        print(f"\n[figure] caller starts speaking -> agent audio stops: {stopped - said_start:.2f}s")
        assert stopped - said_start < 1.5, f"agent kept talking over the caller: {segments}, caller {said_start}-{said_end}"
        assert stopped - story_start < 10.0, "the story was not cut short"
        assert answer_at - said_end < 5.0, "the answer to the interruption came late"
