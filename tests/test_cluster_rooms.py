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

from agent.dispatch import AGENT_NAME_ATTRIBUTE, created_s
from agent.testing.caller import Caller
from agent.testing.cluster import Cluster
from agent.testing.harness import INTRODUCTION, SLOTS, NotInNamespace, greeted, room_name, wait_workers_ready

pytestmark = [pytest.mark.room]  # not background: six calls at once leave no CPU for room tests beside them

MAX_JOBS = 2
WORKERS = {"w0": 0, "w1": 1, "w2": 1}  # worker name -> the node it registers with
ONLY_B = "only-b"  # an agent name served by one worker of node 1 alone
KILL = "kill"  # an agent name served by one worker of node 0 alone, until the node-kill test adds two of node 1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        c = Cluster(
            tmp_path_factory.mktemp("cluster"), nodes=2, slot=SLOTS["cluster"],
            # Seven workers with two idle job processes each would be 21 processes importing at once on two cores.
            worker_env={"AGENT_MAX_JOBS": str(MAX_JOBS), "AGENT_NUM_IDLE_PROCESSES": "1"},
        )  # fmt: skip
    except NotInNamespace as e:
        pytest.fail(str(e), pytrace=False)
    with c:
        for name, node in WORKERS.items():
            c.start_worker(node=node, name=name, wait_registered=False)
        c.start_worker(node=1, name="w-only-b", wait_registered=False, AGENT_NAME=ONLY_B)
        c.start_worker(node=0, name="k0", wait_registered=False, AGENT_NAME=KILL, AGENT_MAX_JOBS="10")  # 4 rooms stay under 0.7
        wait_workers_ready(c.workers.values())
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


async def _greeting_delay(caller: Caller, joined: float) -> float:
    """Seconds from the join to the agent's greeting reaching the caller's ears.

    Speech of 0.1 s, not a longer run: with six calls on two cores the agents'
    audio reaches the callers in bursts (a fresh-clone run heard a greeting at
    -12 dBFS that never stayed above -40 dBFS for 0.3 s)."""
    heard = await caller.wait_for_speech(timeout=60, min_duration=0.1)
    return heard - joined


async def _spoken_to(caller: Caller, joined: float) -> tuple[float | None, float]:
    """(join -> greeting heard, or None; question -> answer heard) for one caller.

    Under six calls on two cores some callers' audio from the agent starts
    late and the greeting is missed (heard as near-silence; why is open, see
    README); the caller then types a question, and the spoken answer shows
    the agent serves it."""
    try:
        greeting: float | None = await caller.wait_for_speech(timeout=30, min_duration=0.1) - joined
    except TimeoutError:
        greeting = None
    asked = time.time()
    await caller.send_chat(INTRODUCTION)
    answer = await caller.wait_for_speech(after=asked, timeout=60, min_duration=0.1)
    return greeting, answer - asked


async def test_six_rooms_at_once_spread_over_three_workers_by_load(cluster: Cluster) -> None:
    callers = [cluster.caller(room_name(f"spread{i}"), node=i % 2) for i in range(6)]
    try:
        joined = time.time()

        async def join(i: int, c: Caller) -> None:
            # One second apart: six job processes starting in the same second on two
            # cores made greetings choppy. All six calls still run at once; offers
            # that come together are agent.worker.WorkerLoad's unit tests.
            await asyncio.sleep(i * 1.0)
            await c.join()

        await asyncio.gather(*(join(i, c) for i, c in enumerate(callers)))
        spoken = await asyncio.gather(*(_spoken_to(c, joined) for c in callers))
        greeted_in = [g for g, _ in spoken if g is not None]
        print(f"\n[figure] 6 rooms at once: {len(greeted_in)} of 6 callers heard the greeting "
              f"({min(greeted_in, default=0):.1f}-{max(greeted_in, default=0):.1f} s after the first join); "
              f"every caller heard its agent answer {min(a for _, a in spoken):.1f}-{max(a for _, a in spoken):.1f} s after asking")  # fmt: skip
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


def _agents_seen(caller: Caller, agent_name: str) -> list[str]:
    """The agents of ours in ``caller``'s view of its room."""
    return [
        p.identity for p in caller.room.remote_participants.values()
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and p.attributes.get(AGENT_NAME_ATTRIBUTE) == agent_name
    ]  # fmt: skip


async def _served_again(caller: Caller, since: float, timeout: float) -> bool:
    """True once ``caller`` hears an agent speak after ``since``; False if its
    connection is gone for good first (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if caller.heard().first_speech(after=since, min_duration=0.3) is not None:
            return True
        if caller.room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED:
            return False
        await asyncio.sleep(0.5)
    return False


async def test_a_node_killed_mid_call_leaves_every_connected_caller_one_agent(cluster: Cluster) -> None:
    """Node 0 dies with four calls on it, all served by its one worker of agent
    name KILL; two workers of that name on node 1 are started once the calls
    run. What LiveKit does with the callers: one whose signal connection was
    with node 0 loses the call; one connected through node 1 keeps it (its SDK
    reconnects through node 1, into the room again if the room lived on node
    0). Every caller still connected must end with exactly one agent of ours
    that speaks to it. Its old agent joined through node 0 and is gone; a new
    one comes from a dispatch: the re-dispatchers of the two node-1 workers
    race for the room and one dispatch stays (or, for a room made again on
    node 1, from the dispatch in the caller's token)."""
    callers = [cluster.caller(room_name(f"kill{i}"), node=i % 2, agent_name=KILL) for i in range(4)]
    try:
        joined = time.time()
        await asyncio.gather(*(c.join() for c in callers))
        await asyncio.gather(*(_greeting_delay(c, joined) for c in callers))
        wait_workers_ready([cluster.start_worker(node=1, name=name, wait_registered=False, AGENT_NAME=KILL) for name in ("k1", "k2")])
        before = {c.room.name: _worker_of(cluster, c.room.name) for c in callers}
        killed_at = time.time()
        cluster.kill_node(0)
        # Only callers connected through node 1 can be served again: one of node 0
        # has no server left to reconnect to, and its SDK takes up to a minute of
        # retries to give up (waiting for that was most of this test's time).
        survivors = callers[1::2]
        served = dict(zip(survivors, await asyncio.gather(*(_served_again(c, killed_at + 1.0, timeout=60) for c in survivors)), strict=True))
        await asyncio.sleep(5)  # a second agent, if any, would be in by now
        connected = [c for c in callers if c.room.connection_state == rtc.ConnectionState.CONN_CONNECTED]
        # The agents each caller has in its room: the old one leaves its view when
        # the caller's SDK learns it is gone; the room must then hold one, not two or none.
        settle = time.monotonic() + 60
        while True:
            agents = {c.room.name: _agents_seen(c, KILL) for c in connected}
            if all(len(a) == 1 for a in agents.values()) or time.monotonic() > settle:
                break
            await asyncio.sleep(1.0)
        settled_s = time.time() - killed_at
        # livekit-server's own list can keep the dead node's agent far longer (a room
        # that lived on that node and was made again on node 1): reported, not asserted.
        listed = {c.room.name: await _our_agents(cluster, c.room.name, node=1, agent_name=KILL) for c in connected}
        async with cluster.server_api(1) as lk:
            dispatches = {c.room.name: await lk.agent_dispatch.list_dispatch(room_name=c.room.name) for c in connected}
        # Re-dispatches made since the kill: one made before it (a first agent slow
        # to join under the load of four calls starting, as in one fresh-clone
        # run) answered another event.
        redispatched = {
            room: sum(1 for d in ds if json.loads(d.metadata or "{}").get("redispatched") and (created_s(d) or 0) >= killed_at)
            for room, ds in dispatches.items()
        }
        after = {c.room.name: _worker_of(cluster, c.room.name) for c in connected}
        print(f"\n[figure] node 0 killed: served before {before}; still connected {[c.room.name for c in connected]}; "
              f"served after by {after}; agents the callers see {agents} ({settled_s:.0f} s after the kill), the server lists {listed}; "
              f"re-dispatches kept {redispatched}; "
              f"heard again {[round(c.heard().first_speech(after=killed_at + 1.0, min_duration=0.3) - killed_at, 1) for c, ok in served.items() if ok]} s after the kill")  # fmt: skip
        assert all(workers == ["k0"] for workers in before.values()), before
        for c in callers[0::2]:
            assert c not in connected, f"{c.room.name}: a caller of the dead node is still connected"
        assert connected, "no caller kept its call: this test would prove nothing"
        for c in connected:
            assert served.get(c), f"{c.room.name}: connected, but no agent spoke after the kill"
            assert len(agents[c.room.name]) == 1, agents
            assert redispatched[c.room.name] <= 1, redispatched
    finally:
        await asyncio.gather(*(c.leave() for c in callers), return_exceptions=True)
