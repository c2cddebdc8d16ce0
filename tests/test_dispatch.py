"""Which agent keeps a room when two were dispatched to it (agent.dispatch.senior_agent)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from livekit import rtc

from agent.dispatch import AGENT_NAME_ATTRIBUTE, senior_agent

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
        return datetime.datetime.fromtimestamp(self.joined_ms / 1000, tz=datetime.timezone.utc)


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


def test_an_agent_whose_join_time_is_unknown_is_not_senior() -> None:
    assert _senior(FakeParticipant("agent-b", 2000), FakeParticipant("agent-a", None)) is None
