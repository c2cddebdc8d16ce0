"""Workers across a two-node LiveKit cluster (two livekit-server nodes sharing
one Redis, agent.testing.Cluster): a caller of one node served by a worker of
the other, jobs spread by load over three workers, and a node killed mid-call.

The workers: ``w0`` registered with node 0, ``w1`` and ``w2`` with node 1, each
with AGENT_MAX_JOBS=2, so a worker's reported load (jobs over the maximum) is
0.5 with one room and 1.0 with two; from 0.7 on (livekit-agents' threshold)
it answers new job offers with "unavailable" and livekit-server offers the
room to another worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from livekit import api, rtc

from agent.dispatch import AGENT_NAME_ATTRIBUTE
from agent.testing.caller import Caller
from agent.testing.cluster import Cluster
from agent.testing.harness import SLOTS, NotInNamespace, greeted, room_name

pytestmark = [pytest.mark.room]

MAX_JOBS = 2
WORKERS = {"w0": 0, "w1": 1, "w2": 1}  # worker name -> the node it registers with
ONLY_B = "only-b"  # an agent name served by one worker of node 1 alone


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        c = Cluster(tmp_path_factory.mktemp("cluster"), nodes=2, slot=SLOTS["cluster"], worker_env={"AGENT_MAX_JOBS": str(MAX_JOBS)})
    except NotInNamespace as e:
        pytest.fail(str(e), pytrace=False)
    with c:
        for name, node in WORKERS.items():
            c.start_worker(node=node, name=name)
        c.start_worker(node=1, name="w-only-b", AGENT_NAME=ONLY_B)
        for proc in c.workers.values():
            # A job starts only in a ready job process (the first takes seconds under load).
            proc.wait_for_log("process initialized", timeout=90)
        yield c


def _worker_of(cluster: Cluster, room: str) -> list[str]:
    """The workers whose log says they joined ``room``."""
    return [name for name, proc in cluster.workers.items() if f"joining room {room}" in proc.log_text()]


async def _our_agents(cluster: Cluster, room: str, *, node: int, agent_name: str = "") -> list[str]:
    async with cluster.server_api(node) as lk:
        people = (await lk.room.list_participants(api.ListParticipantsRequest(room=room))).participants
    return [
        p.identity for p in people
        if p.kind == api.ParticipantInfo.Kind.AGENT and p.attributes.get(AGENT_NAME_ATTRIBUTE) == agent_name
    ]  # fmt: skip


async def test_a_caller_of_node_a_is_served_by_a_worker_of_node_b(cluster: Cluster) -> None:
    room = room_name("cross")
    caller = cluster.caller(room, node=0, agent_name=ONLY_B)
    try:
        await caller.join()
        await greeted(caller, timeout=20)
    finally:
        await caller.leave()
    # The one worker with that agent name is registered with node 1 only.
    assert _worker_of(cluster, room) == ["w-only-b"]


GREETING = r"I'm an AI assistant"  # the default greeting's disclosure


async def _greeting_delay(caller: Caller, joined: float) -> float:
    """Seconds from the join to the agent's greeting reaching the caller.

    As the greeting's transcript, which the agent sends into the room with
    its speech: six calls starting at once on two cores can subscribe a
    caller to the agent's audio after the first words were played."""
    said = await caller.wait_for_transcript(GREETING, timeout=60)
    return said.time - joined


async def test_six_rooms_at_once_spread_over_three_workers_by_load(cluster: Cluster) -> None:
    callers = [cluster.caller(room_name(f"spread{i}"), node=i % 2) for i in range(6)]
    try:
        joined = time.time()
        await asyncio.gather(*(c.join() for c in callers))
        delays = await asyncio.gather(*(_greeting_delay(c, joined) for c in callers))
        print(f"\n[figure] 6 rooms at once: join -> greeting {min(delays):.1f}-{max(delays):.1f} s")
        rooms = [c.room.name for c in callers]
        served = {room: _worker_of(cluster, room) for room in rooms}
        per_worker = {name: sum(name in w for w in served.values()) for name in WORKERS}
        print(f"\n[figure] 6 rooms over 3 workers (max {MAX_JOBS} jobs each): {per_worker}")
        assert all(len(w) == 1 for w in served.values()), f"a room was served by more or less than one worker: {served}"
        # Full workers take no more rooms: with 6 rooms and 3 workers of 2, each has exactly 2.
        assert per_worker == {name: MAX_JOBS for name in WORKERS}, served
        for c in callers:
            assert len(await _our_agents(cluster, c.room.name, node=1)) == 1
    finally:
        await asyncio.gather(*(c.leave() for c in callers))


async def test_a_node_killed_mid_call_leaves_every_connected_caller_one_agent(cluster: Cluster) -> None:
    """Node 0 dies with calls on it. A caller connected through node 0 loses the
    call (LiveKit: its signal connection was there). A caller connected through
    node 1 stays, and so must its agent, or a new one: the agent of a room may
    have joined through node 0 (its worker's node), and then the re-dispatchers
    of the workers that are left fill the room, one dispatch, one agent."""
    for name in WORKERS:  # the rooms of the test before are gone
        await cluster.wait_active_jobs(name, 0, timeout=30)
    callers = [cluster.caller(room_name(f"kill{i}"), node=i % 2) for i in range(4)]
    try:
        joined = time.time()
        await asyncio.gather(*(c.join() for c in callers))
        await asyncio.gather(*(_greeting_delay(c, joined) for c in callers))
        before = {c.room.name: _worker_of(cluster, c.room.name) for c in callers}
        killed_at = time.time()
        cluster.kill_node(0)
        through_b = [c for i, c in enumerate(callers) if i % 2 == 1]
        through_a = [c for i, c in enumerate(callers) if i % 2 == 0]
        # Every caller of node 1 hears an agent again (a new one greets, or the one it had speaks on).
        deadline = time.monotonic() + 40
        for c in through_b:
            rest = deadline - time.monotonic()
            await c.wait_for_speech(after=killed_at + 1.0, timeout=max(rest, 0.1))
        # Settled: exactly one agent of ours in each of their rooms, and one dispatch acted on per room.
        await asyncio.sleep(5)
        agents = {c.room.name: await _our_agents(cluster, c.room.name, node=1) for c in through_b}
        async with cluster.server_api(1) as lk:
            dispatches = {c.room.name: await lk.agent_dispatch.list_dispatch(room_name=c.room.name) for c in through_b}
        redispatched = {
            room: sum(1 for d in ds if json.loads(d.metadata or "{}").get("redispatched")) for room, ds in dispatches.items()
        }
        states = {c.room.name: c.room.connection_state for c in callers}
        print(f"\n[figure] node killed: served before {before}; agents after {agents}; re-dispatches kept {redispatched}; "
              f"caller connections {states}")  # fmt: skip
        assert all(len(a) == 1 for a in agents.values()), agents
        assert all(n <= 1 for n in redispatched.values()), redispatched
        for c in through_b:
            assert c.room.connection_state == rtc.ConnectionState.CONN_CONNECTED
        for c in through_a:
            assert c.room.connection_state != rtc.ConnectionState.CONN_CONNECTED, "a caller of the dead node is still connected"
    finally:
        await asyncio.gather(*(c.leave() for c in callers), return_exceptions=True)
