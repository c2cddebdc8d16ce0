"""Faults in real rooms: the conversation goes on, remembers, and does nothing twice.

Each test carries state (the caller tells a fact early and asks for it later).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime

import pytest

from agent.testing.harness import Testbed

pytestmark = [pytest.mark.room]


async def test_realtime_connection_cut_mid_answer_reconnects_and_answers(testbed: Testbed) -> None:
    assert testbed.realtime is not None
    async with testbed.caller(f"cut-{uuid.uuid4().hex[:6]}") as caller:
        await caller.wait_for_speech(timeout=15)
        await caller.wait_for_quiet(1.0, timeout=20)
        await caller.send_chat("Hi, my name is Alice")
        await caller.wait_for_transcript(r"nice to meet you, alice", timeout=20)
        await caller.wait_for_quiet(1.0, timeout=20)

        asked = time.time()
        await caller.send_chat("Can you tell me about the menu?")
        # The local server drops the WebSocket half-way through this answer (see
        # tests/data/brain.yaml); the worker reconnects and the answer comes in full.
        answer = await caller.wait_for_transcript(r"everything is made to order", timeout=40, after=asked)
        recovered = answer.time - asked
        await caller.wait_for_quiet(1.0, timeout=30)
        log = testbed.realtime.log_text()
        drops = re.findall(r"^(\S+ \S+) WARNING agent.realtime: fault injection: dropping", log, re.MULTILINE)
        assert drops, "the fault was not injected"
        dropped_at = datetime.strptime(drops[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        # silence the caller sat through: from the last agent audio before the
        # re-asked answer to its first audio (the old answer's tail plays out first)
        segments = caller.heard().filter(after=asked).speech_segments(min_silence_ms=150)
        before = [seg for seg in segments if seg[0] < dropped_at]
        after = [seg for seg in segments if seg[0] >= dropped_at]
        assert before and after, segments
        gap = after[0][0] - before[-1][1]

        await caller.send_chat("What is my name?")
        said = await caller.wait_for_transcript(r"your name is alice", timeout=20, after=answer.time)
        print(f"\n[figure] realtime connection cut mid-answer: silence heard {gap:.2f}s; full answer {recovered:.2f}s after asking")
        assert gap < 5.0
        assert said.text
