"""The worker in real rooms: dispatch, greeting, a spoken turn, isolation, job end.

Everything is real: livekit-server in the test namespace, WebRTC, the worker
(`python -m agent start`) with livekit-plugins-openai's RealtimeModel talking
to the local realtime server.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from livekit import api

from agent.testing.caller import Caller, load_wav, signal_only, speech_wav
from agent.testing.harness import Testbed, greeted, introduce, room_name

pytestmark = [pytest.mark.room]

GREETING_TIMEOUT = 15.0  # join -> first agent audio, generous for a loaded CI machine
SPEECH_DBFS = -40.0  # "well above silence": espeak speech sits around -20 dBFS


def _agent_identities(caller: Caller) -> list[str]:
    return [p.identity for p in caller.room.remote_participants.values() if p.identity.startswith("agent-")]


@pytest.fixture(scope="module")
def question(speech_dir: Path) -> Path:
    return Path(speech_wav("What time does the coffee shop open on Sunday morning?", str(speech_dir / "question.wav")))


async def _greeted(caller: Caller) -> float:
    """Join, wait for the greeting to start and end; returns join -> first audio (s)."""
    await caller.join()
    assert caller.joined_at is not None
    first = await greeted(caller, timeout=GREETING_TIMEOUT, threshold_dbfs=SPEECH_DBFS, min_duration=0.3)
    return first - caller.joined_at


async def test_caller_is_greeted_by_an_ai_agent(testbed: Testbed) -> None:
    caller = testbed.caller(room_name("room"))
    try:
        latency = await _greeted(caller)
        print(f"\n[figure] caller join -> first agent audio: {latency:.2f}s")
        agents = _agent_identities(caller)
        assert len(agents) == 1, f"expected one agent in the room, found {agents}"
        greeting = caller.heard(agents[0])
        segments = greeting.speech_segments(SPEECH_DBFS)
        spoken = sum(e - s for s, e in segments)
        # "Hello! I'm an AI assistant. How can I help you today?" is ~3 s of espeak speech.
        assert 1.5 < spoken < 8.0, f"greeting of {spoken:.2f}s in {segments}"
        assert greeting.max_dbfs() > -25.0
    finally:
        await caller.leave()


async def test_agent_answers_after_the_end_of_the_sentence(testbed: Testbed, question: Path) -> None:
    caller = testbed.caller(room_name("room"))
    try:
        await _greeted(caller)
        pcm, rate = load_wav(question)
        await caller.say(pcm, rate)
        said_start, said_end = caller.spoken[-1]
        answer_at = await caller.wait_for_speech(after=said_start, timeout=15, threshold_dbfs=SPEECH_DBFS)
        delay = answer_at - said_end
        print(f"\n[figure] end of caller's sentence -> first answer audio: {delay:.2f}s")
        # Server VAD waits for silence_duration_ms (500 ms) of silence, so an
        # answer can only start after the sentence ended -- and soon after
        # (transcription and a tool call included).
        assert answer_at > said_end, f"agent spoke {said_end - answer_at:.2f}s before the caller finished"
        assert delay < 5.0
        await caller.wait_for_quiet(1.0, timeout=20)
        answer = caller.heard().filter(after=said_end).speech_segments(SPEECH_DBFS)
        assert sum(e - s for s, e in answer) > 1.0, answer
        # The words were understood: transcribed offline, matched by the brain's
        # rule (tests/data/brain.yaml), answered from the worker's opening-hours tool.
        await caller.wait_for_transcript(r"on sunday we are open 9 am to 3 pm", after=said_start, timeout=5)
    finally:
        await caller.leave()


async def test_two_rooms_get_two_agents_that_do_not_hear_each_other(testbed: Testbed, question: Path) -> None:
    # An earlier test's job may still be ending (its process exits a few hundred ms
    # after its caller left): it would count among the jobs below (seen: 3 for 2 rooms).
    await testbed.wait_active_jobs(0, timeout=30)
    a = testbed.caller(room_name("room"), "caller-a")
    b = testbed.caller(room_name("room"), "caller-b")
    try:
        await asyncio.gather(_greeted(a), _greeted(b))
        agents_a, agents_b = _agent_identities(a), _agent_identities(b)
        assert len(agents_a) == 1 and len(agents_b) == 1
        assert agents_a != agents_b, "one agent in both rooms"
        assert testbed.worker_status()["active_jobs"] == 2

        pcm, rate = load_wav(question)
        await a.say(pcm, rate)
        said_start, said_end = a.spoken[-1]
        await a.wait_for_speech(after=said_end, timeout=15, threshold_dbfs=SPEECH_DBFS)
        await a.wait_for_quiet(1.0, timeout=20)
        # Room B heard nothing of A's question nor of A's agent's answer:
        # no participant of room A reaches it, and B's agent did not answer.
        assert set(p.identity for p in b.room.remote_participants.values()) == set(agents_b)
        assert b.heard().filter(after=said_start).speech_segments(SPEECH_DBFS) == []
    finally:
        await asyncio.gather(a.leave(), b.leave())


async def test_a_caller_whose_media_never_connects_does_not_hold_the_agent(testbed: Testbed) -> None:
    """The room's first participant joins the signalling and never connects its
    media (no WebRTC gets through its network; or a caller who hung up while
    their SDK rejoined a restarted server: livekit-server lists them as joined
    for 15 s and more). The agent is dispatched and links to it; a caller who
    joins next and speaks is served all the same (agent/caller_link.py).
    Before, the agent stayed linked to the participant who never came and the
    caller met silence."""
    room = room_name("stuck")
    async with signal_only(testbed.url, testbed.token(room, "stuck")):
        await testbed.wait_agent_in(room, timeout=10)  # RoomIO links it to "stuck", the only one there
        caller = testbed.caller(room, "caller-2")
        try:
            await caller.join()
            await greeted(caller, timeout=GREETING_TIMEOUT)  # a caller speaks once greeted
            await introduce(caller, timeout=15)
        finally:
            await caller.leave()
    assert testbed.worker is not None
    assert "linked caller stuck never connected its media; serving caller-2" in testbed.worker.log_text()


@pytest.mark.background  # waits for the job to end, generous bounds: in a background lane (scripts/lanes.sh)
async def test_job_ends_and_worker_is_free_when_the_caller_leaves(testbed: Testbed) -> None:
    await testbed.wait_active_jobs(0, timeout=30)  # earlier tests' jobs are over
    caller = testbed.caller(room_name("room"))
    left = False
    try:
        await _greeted(caller)
        assert testbed.worker_status()["active_jobs"] == 1
        await caller.leave()
        left = True
        took = await testbed.wait_active_jobs(0, timeout=20)
        print(f"\n[figure] caller left -> worker free: {took:.2f}s")
    finally:
        if not left:
            await caller.leave()
    # Free means it takes the next room too.
    again = testbed.caller(room_name("room"), "caller-2")
    try:
        await _greeted(again)
    finally:
        await again.leave()


async def test_a_double_dispatch_leaves_exactly_one_agent_in_the_room(testbed: Testbed) -> None:
    """Three jobs race for one room (the server's own dispatch and two more, as two
    workers' re-dispatchers could send): the first agent in keeps it, the others leave."""
    assert testbed.worker is not None
    room = room_name("room")
    async with testbed.server_api() as lk:
        await lk.room.create_room(api.CreateRoomRequest(name=room))  # the automatic dispatch
        await asyncio.gather(*(
            lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(room=room, agent_name=""))
            for _ in range(2)
        ))  # fmt: skip
        caller = testbed.caller(room)
        try:
            await _greeted(caller)
            log = testbed.worker.log_text()
            jobs = log.count(f"joining room {room}")
            left = re.findall(rf"room {room} already has agent (\S+): job (\S+) leaves", log)
            assert jobs >= 2, f"the dispatches did not race: {jobs} job(s)\n{testbed.logs()}"
            assert len(left) == jobs - 1, log
            await asyncio.sleep(2.0)  # any straggler would be in the room by now
            agents = await testbed.agents_in(room)
            # The one that stays is one a leaver found in the room, and not a leaver
            # itself. (Not always the first named: a leaver may have seen an agent
            # that then found the keeper and left too; seen in a fresh-clone run.)
            seen, leavers = {a for a, _ in left}, {f"agent-{j}" for _, j in left}
            assert len(agents) == 1 and agents[0] in seen - leavers, (agents, left)
            # one voice greeted the caller: an agent that leaves mutes itself at once (its
            # silent track may have reached the caller before it left)
            heard = caller.heard()
            voices = [i for i in heard.identities() if i.startswith("agent-") and heard.filter(i).speech_segments()]
            assert voices == agents, {i: heard.filter(i).speech_segments() for i in heard.identities()}
            print(f"\n[double dispatch] {jobs} jobs raced; {agents[0]} kept the room, {len(left)} left")
        finally:
            await caller.leave()
