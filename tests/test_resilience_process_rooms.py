"""Faults of whole processes: livekit-server crashes and comes back; the worker
is told to stop. A testbed of its own (slot 3), since these tests kill things."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.testing.harness import Testbed, ask_name, greeted, introduce, room_name, running_testbed
from agent.tools import Store

pytestmark = [pytest.mark.room]


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with running_testbed(
        tmp_path_factory.mktemp("faults"), slot=3, worker_env={"AGENT_DRAIN_TIMEOUT": "20"},
        realtime_env={"AGENT_BRAIN_SCRIPT": str(Path(__file__).parent / "data" / "brain.yaml")},
    ) as testbed:  # fmt: skip
        yield testbed


async def _order(bed: Testbed, room: str) -> str:
    async with bed.caller(room) as caller:
        await greeted(caller)
        asked = time.time()
        await caller.send_chat("I'd like two lattes")
        said = await caller.wait_for_transcript(r"order number \d+ is placed", timeout=30, after=asked)
    return said.text


async def test_livekit_server_crash_and_restart(bed: Testbed) -> None:
    room = room_name("crash")
    await _order(bed, room)
    before = Store(bed.db_path).orders(room=room)
    assert len(before) == 1
    await bed.wait_active_jobs(0, timeout=30)

    bed.restart_livekit(kill=True)
    restarted = time.monotonic()
    assert bed.worker is not None
    # A caller rejoins at once, before the worker has re-registered: the room is
    # made with no worker to dispatch to, and only our re-dispatch brings an agent.
    async with bed.caller(room, "caller-again") as caller:
        await caller.wait_for_speech(timeout=60)
        back = time.monotonic() - restarted
    print(f"\n[figure] livekit-server killed and restarted -> the rejoining caller is greeted after {back:.1f}s")
    assert bed.worker.alive(), "the worker died with the server"
    assert Store(bed.db_path).orders(room=room) == before, "the demo store changed"
    assert bed.worker.log_text().count("registered worker") >= 2


async def test_sigterm_drains_active_calls_then_exits_zero(bed: Testbed) -> None:
    assert bed.worker is not None
    await bed.wait_active_jobs(0, timeout=30)
    caller = bed.caller(room_name("drain"))
    late = bed.caller(room_name("late"), "late-caller")
    try:
        await caller.join()
        await greeted(caller)
        bed.worker.proc.send_signal(signal.SIGTERM)  # the worker process, as `kill PID` does
        stopped = time.monotonic()
        await asyncio.sleep(1.0)
        # The active call goes on...
        asked = time.time()
        await caller.send_chat("When are you open on Sunday?")
        await caller.wait_for_transcript(r"open 9 am to 3 pm", timeout=20, after=asked)
        # ...but no new call is taken.
        await late.join()
        with pytest.raises(TimeoutError):
            await late.wait_for_speech(timeout=6)
        assert bed.worker.alive(), "the worker quit with a call still active"
    finally:
        await late.leave()
        await caller.leave()
    code = await asyncio.to_thread(bed.worker.proc.wait, 30)
    took = time.monotonic() - stopped
    print(f"\n[figure] SIGTERM with one active call: exit {code} {took:.1f}s after the signal (call ended by the caller)")
    assert code == 0


async def test_killed_job_is_replaced_and_the_conversation_restored(bed: Testbed) -> None:
    import os

    if bed.worker is None or not bed.worker.alive():  # the drain test stopped it
        bed.worker = bed.start_worker(name="worker-2")
    room = room_name("kill")
    async with bed.caller(room) as caller:
        await greeted(caller)
        said = await introduce(caller)
        os.kill(bed.job_pid(room), signal.SIGKILL)
        killed = time.time()
        back = await caller.wait_for_transcript(r"i'm back", timeout=60, after=said.time)
        print(f"\n[figure] job process SIGKILLed -> a new agent speaks in the room after {back.time - killed:.1f}s")
        await caller.wait_for_quiet(1.0, timeout=30)
        await ask_name(caller, after=back.time)
