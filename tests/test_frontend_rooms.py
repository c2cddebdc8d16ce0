"""The audio front-end in real rooms: a speakerphone caller and a noisy line.

Two workers share one livekit-server: ``frontend`` (the default front-end:
echo cancellation, noise suppression, high-pass) and ``bare`` (echo
cancellation and noise suppression off), each reached by explicit dispatch.
Turns are counted where they start: the local realtime server logs every
``speech_started`` of its server VAD. The frontend worker also writes its
front-end traces (``AGENT_FRONTEND_TRACE_DIR``), from which the speakerphone
test reports how close the residual echo came to starting a turn.

Every test checks which worker served its room: the two differ only in the
front-end, so a room served by the other one measures the wrong thing. That
is how the echo control once failed ("3 turns for 3 sentences, 0 replies
cut"): the bare worker was late (under CPU load livekit-server offered it no
job), and the frontend worker's re-dispatcher, which then filled any room with
a caller, sent a frontend agent in. Re-dispatchers now fill only rooms
dispatched to their own agent name (agent/dispatch.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc

from agent.audio.trace_report import TraceReport, report_file
from agent.dispatch import AGENT_NAME_ATTRIBUTE
from agent.testing.caller import Caller, Speakerphone, load_wav, speech_wav
from agent.testing.harness import SLOTS, NotInNamespace, Testbed, TurnCounter, free_port, greeted, wait_workers_ready

pytestmark = [pytest.mark.room]

SENTENCES = [
    "Good morning, I would like a coffee.",
    "What kind of milk do you have?",
    "Do you sell croissants in the morning?",
    "How much is a large cappuccino?",
    "Can I pay with a card?",
    "Thank you, that is all for now.",
]


@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("traces")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, trace_dir: Path) -> Iterator[Testbed]:
    try:
        testbed = Testbed(tmp_path_factory.mktemp("frontend"), worker=False, slot=SLOTS["frontend"])
    except NotInNamespace as e:
        pytest.fail(str(e), pytrace=False)
    with testbed:
        wait_workers_ready([
            testbed.start_worker(name="worker-frontend", wait_registered=False, AGENT_NAME="frontend", AGENT_FRONTEND_TRACE_DIR=str(trace_dir)),
            testbed.start_worker(
                name="worker-bare", wait_registered=False, AGENT_NAME="bare", AGENT_HTTP_PORT=str(free_port()),
                AGENT_ECHO_CANCELLATION="false", AGENT_NOISE_SUPPRESSION="false",
            ),
        ])  # fmt: skip
        yield testbed


@pytest.fixture(scope="module")
def sentences(speech_dir: Path) -> list[tuple[np.ndarray, int]]:
    return [load_wav(speech_wav(text, str(speech_dir / f"s{i}.wav"))) for i, text in enumerate(SENTENCES)]


class _Agents:
    """The agents that joined a caller's room, by identity: the agent name each serves.

    Made right after the caller joins: the agents already in are listed, later
    ones are added as they connect (their name is in their join token)."""

    def __init__(self, caller: Caller) -> None:
        self.names: dict[str, str] = {}
        for p in caller.room.remote_participants.values():
            self._add(p)
        caller.room.on("participant_connected", self._add)

    def _add(self, p: rtc.RemoteParticipant) -> None:
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            self.names[p.identity] = p.attributes.get(AGENT_NAME_ATTRIBUTE, "?")

    def served_by(self) -> list[str]:
        # Names, not agents: a second agent of the same name (a re-dispatch racing a
        # slow join) leaves before it says a word (agent.dispatch.senior_agent).
        return sorted(set(self.names.values()))


async def _greeted(caller: Caller) -> None:
    await caller.join()
    await greeted(caller, quiet=1.5, quiet_timeout=30)


async def _converse(caller: Caller, turns: list[tuple[np.ndarray, int]]) -> list[float]:
    """Say each sentence, wait for the agent's whole reply; returns reply delays."""
    delays = []
    for pcm, rate in turns:
        await caller.say(pcm, rate)
        _, said_end = caller.spoken[-1]
        reply = await caller.wait_for_speech(after=said_end, timeout=20)
        delays.append(reply - said_end)
        await caller.wait_for_quiet(1.5, timeout=40)
    return delays


async def _trace(trace_dir: Path, room: str, timeout: float = 15.0) -> TraceReport:
    """The front-end's trace of ``room``, written when the session closes."""
    path = trace_dir / f"{room}.wav"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no front-end trace for {room} after {timeout:.0f} s"
        await asyncio.sleep(0.2)
    return report_file(path)


async def test_speakerphone_caller_does_not_make_the_agent_answer_itself(
    bed: Testbed, sentences: list[tuple[np.ndarray, int]], trace_dir: Path
) -> None:
    counter = TurnCounter(bed)
    room = f"echo-{uuid.uuid4().hex[:6]}"
    caller = bed.caller(room, agent_name="frontend", speakerphone=Speakerphone(delay_s=0.15, gain_db=-6))
    try:
        await _greeted(caller)
        agents = _Agents(caller)
        delays = await _converse(caller, sentences)
    finally:
        await caller.leave()
    assert agents.served_by() == ["frontend"], f"the room was served by {agents.names}"
    replies = len(delays) + 1  # and the greeting
    print(f"\n[speakerphone] speaker underruns (dry spells played as silence; the path holds): {caller.speaker_underruns}")
    print(f"\n[figure] speakerphone caller, front-end on: {counter.turns()} turns for {len(sentences)} sentences "
          f"over {replies} agent replies; {counter.cancelled()} replies cut by a turn; reply delay p50 {np.median(delays):.2f}s")  # fmt: skip
    # Every real sentence was heard (one turn each), and no echo started a turn.
    assert counter.turns() == len(sentences), "\n".join(counter.lines()[-40:])
    assert counter.cancelled() == 0
    trace = await _trace(trace_dir, room)
    print(f"\n[figure] speakerphone caller, front-end output outside the caller's turns: {trace.over_40} frames over -40 dBFS "
          f"(longest run {trace.longest_40}; six start a turn), {trace.over_50} over -50 dBFS")  # fmt: skip
    assert trace.turns == len(sentences), "the trace is not what the server heard"


async def test_without_echo_cancellation_the_agent_interrupts_itself(bed: Testbed, sentences: list[tuple[np.ndarray, int]]) -> None:
    """The same caller and conversation against the bare worker: proof that the test above can fail."""
    counter = TurnCounter(bed)
    caller = bed.caller(f"echo-bare-{uuid.uuid4().hex[:6]}", agent_name="bare", speakerphone=Speakerphone(delay_s=0.15, gain_db=-6))
    spoken = sentences[:3]
    try:
        await caller.join()
        agents = _Agents(caller)
        await caller.wait_for_speech(timeout=20)
        # Fixed pauses, not "wait until quiet": without echo cancellation the agent
        # may answer its own echo over and over and never fall quiet.
        await asyncio.sleep(6.0)
        for pcm, rate in spoken:
            await caller.say(pcm, rate)
            await asyncio.sleep(6.0)
    finally:
        await caller.leave()
    extra = counter.turns() - len(spoken)
    print(f"\n[figure] speakerphone caller, echo cancellation off: {counter.turns()} turns for {len(spoken)} sentences; "
          f"{counter.cancelled()} replies cut by a turn; served by {agents.served_by()}")  # fmt: skip
    assert agents.served_by() == ["bare"], f"the room was served by {agents.names}, not by the bare worker"
    # Either failure of the test above: a reply cut short by its own echo, or a turn nobody spoke.
    assert counter.cancelled() >= 1 or extra >= 1, "without echo cancellation the echo should have made turns"


NOISE_DBFS = -32.0  # steady room noise, 8 dB over the server VAD's -40 dBFS threshold


@pytest.mark.parametrize(("agent", "expect_turns"), [("frontend", False), ("bare", True)])
async def test_a_noisy_line_starts_no_turns_with_noise_suppression(bed: Testbed, agent: str, expect_turns: bool) -> None:
    caller = bed.caller(f"noise-{agent}-{uuid.uuid4().hex[:6]}", agent_name=agent, background_noise_dbfs=NOISE_DBFS)
    # Counted from the join: steady noise the server hears as speech may start one
    # turn at once and never stop it, so a count from later on could miss it.
    counter = TurnCounter(bed, new_sessions_only=True)
    try:
        await caller.join()
        agents = _Agents(caller)
        if expect_turns:
            await caller.wait_for_audio(timeout=20)  # the agent is there (the noise may cut its greeting before a word)
        else:
            await caller.wait_for_speech(timeout=20)  # the greeting, not cut by the noise
        await asyncio.sleep(14.0)  # nobody speaks, only the noise
    finally:
        await caller.leave()
    print(f"\n[figure] steady noise at {NOISE_DBFS:.0f} dBFS for the whole call, {agent} worker: {counter.turns()} turns")
    assert agents.served_by() == [agent], f"the room was served by {agents.names}"
    if expect_turns:
        assert counter.turns() >= 1, "the bare worker should hear noise as speech (else this test proves nothing)"
    else:
        assert counter.turns() == 0, "\n".join(counter.lines()[-20:])
