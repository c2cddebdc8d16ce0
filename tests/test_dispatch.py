"""Which agent keeps a room when two were dispatched to it (agent.dispatch.senior_agent)."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

from livekit import rtc

from agent.dispatch import AGENT_NAME_ATTRIBUTE, outranks, senior_agent

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD


@dataclass
class FakeParticipant:
    identity: str
    joined_ms: int | None
    kind: int = AGENT
    attributes: dict[str, str] = field(default_factory=lambda: {AGENT_NAME_ATTRIBUTE: ""})

    @property
    def joined_at(self) -> datetime.datetime | None:
        if self.joined_ms is None:
            return None
        return datetime.datetime.fromtimestamp(self.joined_ms / 1000, tz=datetime.UTC)


@dataclass
class FakeRoom:
    local_participant: FakeParticipant
    others: list[FakeParticipant]

    @property
    def remote_participants(self) -> dict[str, FakeParticipant]:
        return {p.identity: p for p in self.others}


def _senior(me: FakeParticipant, *others: FakeParticipant, name: str = "") -> str | None:
    found = senior_agent(FakeRoom(me, list(others)), name)  # type: ignore[arg-type]
    return found.identity if found is not None else None


def test_the_later_agent_defers_to_the_earlier_one() -> None:
    assert _senior(FakeParticipant("agent-b", 2000), FakeParticipant("agent-a", 1000)) == "agent-a"
    assert _senior(FakeParticipant("agent-a", 1000), FakeParticipant("agent-b", 2000)) is None


def test_a_tie_on_the_join_time_goes_to_the_identity_so_exactly_one_stays() -> None:
    a, b = FakeParticipant("agent-a", 1000), FakeParticipant("agent-b", 1000)
    assert _senior(b, a) == "agent-a"
    assert _senior(a, b) is None


def test_callers_and_other_agents_do_not_count() -> None:
    me = FakeParticipant("agent-b", 2000)
    caller = FakeParticipant("caller", 1000, kind=STANDARD)
    avatar = FakeParticipant("avatar", 1000, attributes={})
    other_name = FakeParticipant("agent-x", 1000, attributes={AGENT_NAME_ATTRIBUTE: "billing"})
    assert _senior(me, caller, avatar, other_name) is None
    assert _senior(me, other_name, name="billing") == "agent-x"


def test_an_agent_listed_only_after_we_joined_still_outranks_us_if_it_joined_first() -> None:
    # Two agents that joined 7 ms apart, each listed to neither at its join.
    me, first = FakeParticipant("agent-b", 1007), FakeParticipant("agent-a", 1000)
    room = FakeRoom(me, [first])  # `first` has just been announced to us
    assert outranks(room, first, "")  # type: ignore[arg-type]
    assert not outranks(FakeRoom(first, [me]), me, "")  # type: ignore[arg-type]  # and it stays
    caller = FakeParticipant("caller", 900, kind=STANDARD)
    assert not outranks(FakeRoom(me, [first, caller]), caller, "")  # type: ignore[arg-type]


def test_an_agent_whose_join_time_is_unknown_is_not_senior() -> None:
    assert _senior(FakeParticipant("agent-b", 2000), FakeParticipant("agent-a", None)) is None


# --- the re-dispatcher against a scripted server API -----------------------------

from types import SimpleNamespace  # noqa: E402

from livekit import api  # noqa: E402

from agent.dispatch import Redispatcher  # noqa: E402

KIND = api.ParticipantInfo.Kind


class FakeServer:
    """The three services the re-dispatcher calls, over a dict of rooms.

    ``dispatches`` are (agent name, created at) of dispatches made before the
    test; those the re-dispatchers create are kept with their metadata and an
    increasing creation time, as the room's node orders them."""

    def __init__(self, rooms: dict[str, list[SimpleNamespace]], dispatches: dict[str, list[tuple[str, float]]]) -> None:
        self.rooms, self.created, self.deleted = rooms, [], []
        self.dispatches: dict[str, list[SimpleNamespace]] = {
            room: [_dispatch(f"old-{i}", name, t) for i, (name, t) in enumerate(ds)] for room, ds in dispatches.items()
        }
        self.room = SimpleNamespace(list_rooms=self._list_rooms, list_participants=self._list_participants)
        self.agent_dispatch = SimpleNamespace(list_dispatch=self._list_dispatch, create_dispatch=self._create, delete_dispatch=self._delete)

    async def _list_rooms(self, _req: object) -> SimpleNamespace:
        return SimpleNamespace(rooms=[SimpleNamespace(name=n, num_participants=len(p)) for n, p in self.rooms.items()])

    async def _list_participants(self, req: api.ListParticipantsRequest) -> SimpleNamespace:
        return SimpleNamespace(participants=self.rooms[req.room])

    async def _list_dispatch(self, room_name: str) -> list[SimpleNamespace]:
        return list(self.dispatches.get(room_name, []))

    async def _create(self, req: api.CreateAgentDispatchRequest) -> SimpleNamespace:
        self.created.append((req.room, req.agent_name))
        d = _dispatch(f"AD_{len(self.created)}", req.agent_name, time.time() + len(self.created) * 1e-3, req.metadata)
        self.dispatches.setdefault(req.room, []).append(d)
        return d

    async def _delete(self, dispatch_id: str, room_name: str) -> SimpleNamespace:
        self.deleted.append(dispatch_id)
        [d] = [d for d in self.dispatches[room_name] if d.id == dispatch_id]
        self.dispatches[room_name].remove(d)
        return d


def _dispatch(dispatch_id: str, agent_name: str, created_at: float, metadata: str = "") -> SimpleNamespace:
    return SimpleNamespace(id=dispatch_id, agent_name=agent_name, metadata=metadata, state=SimpleNamespace(created_at=int(created_at * 1e9)))


def _person(identity: str, kind: int = KIND.STANDARD, agent_name: str | None = None) -> SimpleNamespace:
    attributes = {AGENT_NAME_ATTRIBUTE: agent_name} if agent_name is not None else {}
    return SimpleNamespace(identity=identity, kind=kind, attributes=attributes)


async def _check(server: FakeServer, name: str) -> list[tuple[str, str]]:
    r = Redispatcher("ws://x", "k", "s" * 32, agent_name=name, grace=0.0, spread=0.0)  # orphaned at first sight
    await r.check_once(server)  # type: ignore[arg-type]
    return server.created


async def test_a_room_with_a_caller_and_no_agent_of_ours_gets_one() -> None:
    old = time.time() - 60
    server = FakeServer(
        {"r1": [_person("caller")], "r2": [_person("caller"), _person("avatar", KIND.AGENT)]},
        {"r1": [("support", old)], "r2": [("support", old)]},
    )
    assert sorted(await _check(server, "support")) == [("r1", "support"), ("r2", "support")]


async def test_rooms_meant_for_another_agent_name_are_left_alone() -> None:
    old = time.time() - 60
    server = FakeServer({"bare-room": [_person("caller")]}, {"bare-room": [("bare", old)]})
    assert await _check(server, "frontend") == []


async def test_a_served_room_an_empty_room_and_a_fresh_dispatch_get_nothing() -> None:
    old, fresh = time.time() - 60, time.time()
    server = FakeServer(
        {
            "served": [_person("caller"), _person("agent-1", KIND.AGENT, "support")],
            "only-egress": [_person("egress", KIND.EGRESS)],
            "fresh": [_person("caller")],
        },
        {"served": [("support", old)], "only-egress": [("support", old)], "fresh": [("support", fresh)]},
    )
    assert await _check(server, "support") == []


async def test_of_two_workers_dispatching_to_one_room_at_once_the_later_withdraws() -> None:
    """Both saw the room orphaned and passed the cooldown check before either
    dispatched (their API calls interleaved): the one created second deletes
    its own, so one dispatch stays."""
    old = time.time() - 60
    server = FakeServer({"r1": [_person("caller")]}, {"r1": [("support", old)]})
    first = Redispatcher("ws://x", "k", "s" * 32, agent_name="support", grace=0.0, spread=0.0, worker_id="w-first")
    second = Redispatcher("ws://x", "k", "s" * 32, agent_name="support", grace=0.0, spread=0.0, worker_id="w-second")
    assert await first._dispatch(server, "r1")  # type: ignore[arg-type]
    assert not await second._dispatch(server, "r1")  # type: ignore[arg-type]
    kept = [d for d in server.dispatches["r1"] if d.id.startswith("AD_")]
    assert [d.id for d in kept] == ["AD_1"] and server.deleted == ["AD_2"]
    assert first.dispatched and not second.dispatched


async def test_a_second_worker_that_comes_later_finds_the_fresh_dispatch_and_does_nothing() -> None:
    old = time.time() - 60
    server = FakeServer({"r1": [_person("caller")]}, {"r1": [("support", old)]})
    for worker in ("w-a", "w-b"):
        r = Redispatcher("ws://x", "k", "s" * 32, agent_name="support", grace=0.0, spread=0.0, worker_id=worker)
        await r.check_once(server)  # type: ignore[arg-type]
    assert server.created == [("r1", "support")] and server.deleted == []


def test_each_worker_waits_a_stagger_of_its_own_per_room() -> None:
    workers = [Redispatcher("ws://x", "k", "s" * 32, spread=4.0, worker_id=f"w{i}") for i in range(3)]
    staggers = [w.stagger("room-1") for w in workers]
    assert all(0.0 <= s < 4.0 for s in staggers)
    assert len(set(staggers)) == 3, "workers would come to the room together"
    assert staggers == [w.stagger("room-1") for w in workers], "a worker's stagger for a room must not change"
    assert workers[0].stagger("room-1") != workers[0].stagger("room-2")


async def test_a_room_is_not_orphaned_for_a_worker_before_its_stagger_passed() -> None:
    old = time.time() - 60
    server = FakeServer({"r1": [_person("caller")]}, {"r1": [("support", old)]})
    r = Redispatcher("ws://x", "k", "s" * 32, agent_name="support", grace=0.0, spread=4.0, worker_id="w")
    assert r.stagger("r1") > 0.5  # else the check below would prove nothing
    await r.check_once(server)  # type: ignore[arg-type]
    assert server.created == []
