"""Metrics, cost and the session record after a scripted conversation in a real room.

A worker of its own (its own testbed, so no other call touches its counts or
the backend's log) serves one caller who: is greeted; types when the shop
opens on Sunday (a tool call, then the spoken answer); says a sentence (an
answer: a turn latency); types "tell me a story" and, while the story plays,
says "Sorry to interrupt, but I am in a hurry." (a barge-in, and an answer);
then hangs up. The tool call comes from typed text so that it does not hang
on the offline recognizer, which a loaded machine slows past the backend's
wait for a transcript (the spoken turns are answered either way).

The figures the test expects are worked out here, independently of the
worker's code: tokens from the usage of every ``response.done`` the local
backend logged (agent/realtime/server.py writes each one's usage), cost from
them at the seed's per-minute prices, latencies from what the caller itself
heard.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.records import SqliteRecords
from agent.testing import recording
from agent.testing.caller import load_wav, speech_wav
from agent.testing.harness import SLOTS, NotInNamespace, Testbed, greeted, room_name

pytestmark = [pytest.mark.room]

BRAIN_SCRIPT = Path(__file__).parent / "data" / "brain.yaml"
AGENT = "metrics"
SPEECH_DBFS = -40.0
ANSWER = r"on sunday we are open 9 am to 3 pm"
USAGE_LINE = re.compile(r"session (\S+): response (\w+).* usage (\{.*\})$")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    try:
        testbed = Testbed(tmp_path_factory.mktemp("metrics"), worker=False, slot=SLOTS["metrics"], realtime_env={"AGENT_BRAIN_SCRIPT": str(BRAIN_SCRIPT)})
    except NotInNamespace as e:
        pytest.fail(str(e), pytrace=False)
    with testbed:
        testbed.start_worker(AGENT_NAME=AGENT)
        yield testbed


@pytest.fixture(scope="module")
def question(speech_dir: Path) -> Path:
    return Path(speech_wav("Good morning, I have a question about your coffee.", str(speech_dir / "metrics-question.wav")))


@pytest.fixture(scope="module")
def interruption(speech_dir: Path) -> Path:
    return Path(speech_wav("Sorry to interrupt, but I am in a hurry.", str(speech_dir / "metrics-interrupt.wav")))


def voiced_span(path: Path) -> tuple[float, float]:
    """Seconds from the start of the WAV to its first and past its last 10 ms window above SPEECH_DBFS."""
    pcm, rate = load_wav(path)
    span = recording.voiced_span(pcm, rate, SPEECH_DBFS)
    assert span is not None, f"{path} has no speech"
    return span[0] / rate, span[1] / rate


def backend_usage(bed: Testbed) -> list[dict[str, Any]]:
    """The usage of every response.done the backend sent, from its log."""
    assert bed.realtime is not None
    return [json.loads(m.group(3)) for line in bed.realtime.log_text().splitlines() if (m := USAGE_LINE.search(line))]


async def test_a_scripted_conversation_shows_in_the_metrics_and_the_session_record(bed: Testbed, question: Path, interruption: Path) -> None:
    _, end_in_wav = voiced_span(question)
    onset2_in_wav, end2_in_wav = voiced_span(interruption)
    pcm, rate = load_wav(question)
    room = room_name("metrics")
    async with bed.caller(room, agent_name=AGENT) as caller:
        await greeted(caller, timeout=20)
        during = bed.metrics()
        assert during["agent_sessions_active"] == 1

        # 1. a typed question: a tool call, then the answer
        asked = time.time()
        await caller.send_chat("When are you open on Sunday?")
        await caller.wait_for_transcript(ANSWER, after=asked, timeout=30)
        await caller.wait_for_quiet(1.0, timeout=20)

        # 2. a spoken sentence, answered
        await caller.say(pcm, rate)
        said_start, said_end = caller.spoken[-1]
        spoke_until = said_start + end_in_wav
        # generous: the backend waits up to 6 s for the recognizer before it answers
        answer_at = await caller.wait_for_speech(after=spoke_until, timeout=30, threshold_dbfs=SPEECH_DBFS)
        heard_latency_1 = answer_at - spoke_until
        await caller.wait_for_quiet(1.0, timeout=20)

        # 3. a typed request for a long story, and the caller speaking over it
        asked = time.time()
        await caller.send_chat("Please tell me a story")
        story_at = await caller.wait_for_speech(after=asked, timeout=20, threshold_dbfs=SPEECH_DBFS)
        await asyncio.sleep(max(0.0, story_at + 4.0 - time.time()))  # well into the story (about 15 s long)
        await caller.say(*load_wav(interruption))
        barge_start, barge_end = caller.spoken[-1]
        onset = barge_start + onset2_in_wav
        # the story as the caller heard it: its speech that began before the caller stopped
        # speaking over it (the answer cannot start earlier). Not only what began before the
        # onset: an onset in a pause between the story's words would then measure the
        # segment before the pause, and a barge-in that ended before it began (-0.13 s, seen).
        spoke2_until = barge_start + end2_in_wav
        segments = caller.heard().filter(after=story_at - 0.1).speech_segments(SPEECH_DBFS)
        story = [(s, e) for s, e in segments if s < spoke2_until]
        assert story and story[0][0] < onset, f"no story heard before the caller's onset at {onset:.2f}: story at {story_at:.2f}, segments {segments}"
        heard_barge_in = story[-1][1] - onset
        answer2_at = await caller.wait_for_speech(after=spoke2_until, timeout=30, threshold_dbfs=SPEECH_DBFS)
        heard_latency_2 = answer2_at - spoke2_until
        await caller.wait_for_quiet(1.0, timeout=20)
    await bed.wait_active_jobs(0, timeout=30)
    after = bed.metrics()
    print(f"\n[figure] turn latency heard by the caller: {heard_latency_1:.2f}s, {heard_latency_2:.2f}s; barge-in {heard_barge_in:.2f}s")

    # --- counts
    assert after["agent_jobs_accepted_total"] == 1
    assert after["agent_jobs_failed_total"] == 0
    assert after["agent_jobs_redispatched_total"] == 0
    assert after.get("agent_sessions_active", 0) == 0  # the job process's live gauge went with it
    assert after['agent_tool_calls_total{outcome="ok",tool="get_opening_hours"}'] == 1
    assert after.get("agent_realtime_reconnects_total", 0) == 0

    # --- latencies: two spoken turns answered (the backend saw two), one barge-in. The worker sees the
    # caller's audio later and its own sooner than the caller does (one network
    # leg each way), so its figures are at most the caller's. How much less
    # depends on the machine: on a loaded one the caller's audio reached the
    # worker seconds late, so there is no lower bound but zero.
    assert bed.realtime is not None
    assert bed.realtime.log_text().count("speech stopped at") == 2
    assert after["agent_turn_latency_seconds_count"] == 2
    assert after["agent_barge_in_seconds_count"] == 1
    heard_latency = heard_latency_1 + heard_latency_2
    assert 0 < after["agent_turn_latency_seconds_sum"] <= heard_latency + 2 * 0.1
    assert 0 < after["agent_barge_in_seconds_sum"] <= heard_barge_in + 0.1

    # --- tokens and cost, from the backend's own usage events
    usages = backend_usage(bed)
    assert len(usages) >= 6, usages  # greeting, call, answer, answer, story (cut), answer
    audio_in = sum(u["input_token_details"]["audio_tokens"] for u in usages)
    audio_out = sum(u["output_token_details"]["audio_tokens"] for u in usages)
    text_in = sum(u["input_token_details"]["text_tokens"] for u in usages)
    assert audio_in > 0 and audio_out > 0
    assert after["agent_audio_input_tokens_total"] == audio_in
    assert after["agent_audio_output_tokens_total"] == audio_out
    assert after["agent_text_input_tokens_total"] == text_in
    assert after["agent_audio_minutes_in_total"] == pytest.approx(audio_in / 600)
    assert after["agent_audio_minutes_out_total"] == pytest.approx(audio_out / 1200)
    cost = audio_in / 600 * 0.06 + audio_out / 1200 * 0.24  # the default table: the seed's per-minute prices
    assert after['agent_cost_usd_total{model="gpt-realtime"}'] == pytest.approx(cost)

    # --- the session record
    (record,) = SqliteRecords(bed.db_path).select(room=room)
    assert record.close_reason == "participant_disconnected"
    # caller turns: the user messages of the conversation, the two typed ones and each
    # spoken one the recognizer transcribed (on a loaded machine one may come too late)
    users = [e for e in record.transcript if e["kind"] == "message" and e["role"] == "user"]
    assert record.turns == len(users) and 2 <= record.turns <= 4, users
    assert [(c["name"], c["outcome"]) for c in record.tool_calls] == [("get_opening_hours", "ok")]
    assert record.usage["audio_in"] == audio_in and record.usage["audio_out"] == audio_out
    assert record.usage["responses"] == len(usages)
    assert record.cost_usd == pytest.approx(cost)
    assert record.reconnects == 0 and 10 < record.duration_s < 120
    said = [e["text"] for e in record.transcript if e["kind"] == "message" and e["role"] == "assistant"]
    assert any(re.search(ANSWER, text, re.IGNORECASE) for text in said), said
