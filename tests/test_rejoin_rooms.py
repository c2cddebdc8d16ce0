"""livekit-server crashes during a call, and the caller calls back.

Whatever the order of crash, restart and rejoin, a room with a caller gets
an agent that serves that caller. The surviving job's agent reconnects to
the restarted server on its own; the caller it was serving may be gone by
then without a word (the restarted server never saw them), and the caller
who joins anew has another identity (a web page makes a new one per join).
A testbed of its own (slot 5), since these tests kill livekit-server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit import api

from agent.testing.harness import NotInNamespace, Testbed

pytestmark = [pytest.mark.room]


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    try:
        testbed = Testbed(
            tmp_path_factory.mktemp("rejoin"), slot=5,
            realtime_env={"AGENT_BRAIN_SCRIPT": str(Path(__file__).parent / "data" / "brain.yaml")},
        )  # fmt: skip
    except NotInNamespace as e:
        pytest.fail(str(e), pytrace=False)
    with testbed:
        yield testbed


async def _agents_in(bed: Testbed, room: str) -> int:
    async with bed.server_api() as lk:
        try:
            people = (await lk.room.list_participants(api.ListParticipantsRequest(room=room))).participants
        except api.TwirpError:
            return 0  # the room does not exist (yet) on the restarted server
    return sum(p.kind == api.ParticipantInfo.Kind.AGENT for p in people)


async def _wait_agent_back(bed: Testbed, room: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if await _agents_in(bed, room):
                return time.monotonic() - t0
        except Exception:  # the server is still starting
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no agent back in {room} after {timeout}s\n{bed.logs(30)}")


async def _in_call(bed: Testbed, room: str, identity: str):  # type: ignore[no-untyped-def]
    caller = bed.caller(room, identity)
    await caller.join()
    await caller.wait_for_speech(timeout=20)
    await caller.wait_for_quiet(1.0, timeout=20)
    return caller


async def _served(bed: Testbed, room: str, identity: str, since: float, timeout: float = 30.0) -> float:
    """A new caller joins ``room``; returns how long after ``since`` the agent answered them."""
    async with bed.caller(room, identity) as caller:
        # The agent may greet the new caller or stay quiet until asked: either
        # way, a question must get its answer.
        deadline = time.monotonic() + timeout
        answered = None
        while answered is None and time.monotonic() < deadline:
            asked = time.time()
            await caller.send_chat("When are you open on Sunday?")
            try:
                answered = await caller.wait_for_transcript(r"open 9 am to 3 pm", timeout=5, after=asked)
            except TimeoutError:
                continue  # no agent yet to read the chat: ask again once one may be there
        assert answered is not None, f"the caller who called back was never answered\n{bed.logs(40)}"
        return answered.time - since


async def test_caller_calls_back_after_the_agent_is_back(bed: Testbed) -> None:
    room = f"back-{uuid.uuid4().hex[:6]}"
    caller = await _in_call(bed, room, "caller-1")
    bed.restart_livekit(kill=True)
    crashed = time.time()
    await caller.leave()  # hangs up while the server is gone
    back = await _wait_agent_back(bed, room, timeout=60)
    took = await _served(bed, room, "caller-2", crashed)
    print(f"\n[figure] livekit-server crash mid-call, agent back after {back:.1f}s, caller calls back: answered {took:.1f}s after the crash")
    assert await _agents_in(bed, room) == 1


async def test_caller_calls_back_at_once(bed: Testbed) -> None:
    await bed.wait_active_jobs(0, timeout=30)
    room = f"again-{uuid.uuid4().hex[:6]}"
    caller = await _in_call(bed, room, "caller-1")
    bed.restart_livekit(kill=True)
    crashed = time.time()
    await caller.leave()
    took = await _served(bed, room, "caller-2", crashed)
    print(f"\n[figure] livekit-server crash mid-call, caller calls back at once: answered {took:.1f}s after the crash")
    assert await _agents_in(bed, room) == 1


async def test_caller_who_stays_is_answered_after_the_restart(bed: Testbed) -> None:
    await bed.wait_active_jobs(0, timeout=30)
    room = f"stay-{uuid.uuid4().hex[:6]}"
    caller = await _in_call(bed, room, "caller-1")
    try:
        bed.restart_livekit(kill=True)
        crashed = time.time()
        answered = None
        deadline = time.monotonic() + 40
        while answered is None and time.monotonic() < deadline:
            asked = time.time()
            await caller.send_chat("When are you open on Sunday?")
            try:
                answered = await caller.wait_for_transcript(r"open 9 am to 3 pm", timeout=5, after=asked)
            except TimeoutError:
                continue
        assert answered is not None, f"the caller who stayed was never answered\n{bed.logs(40)}"
        print(f"\n[figure] livekit-server crash mid-call, the caller stays: answered {answered.time - crashed:.1f}s after the crash")
    finally:
        await caller.leave()
    assert await _agents_in(bed, room) == 1
