"""Which caller a session follows when its linked caller is gone (agent.caller_link)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from types import SimpleNamespace

from livekit import rtc

from agent.caller_link import caller_to_link

KIND = rtc.ParticipantKind
JOINED, ACTIVE = rtc.ParticipantState.PARTICIPANT_STATE_JOINED, rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE


@dataclass
class P:
    identity: str
    joined_ms: int
    kind: int = KIND.PARTICIPANT_KIND_STANDARD
    state: int = ACTIVE

    @property
    def joined_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.joined_ms / 1000, tz=datetime.UTC)


def _room(*people: P) -> rtc.Room:
    return SimpleNamespace(remote_participants={p.identity: p for p in people})  # type: ignore[return-value]


def _pick(linked: str | None, *people: P) -> str | None:
    found = caller_to_link(_room(*people), linked)
    return found.identity if found is not None else None


def test_the_link_stays_while_the_linked_caller_is_in_the_room() -> None:
    assert _pick("caller-1", P("caller-1", 1000), P("caller-2", 500)) is None


def test_a_caller_who_called_back_with_a_new_identity_is_followed() -> None:
    assert _pick("caller-1", P("caller-2", 2000)) == "caller-2"


def test_with_several_callers_the_first_to_join_is_followed() -> None:
    assert _pick("gone", P("late", 3000), P("early", 1000), P("middle", 2000)) == "early"


def test_phone_callers_count_and_agents_egress_do_not() -> None:
    assert _pick("gone", P("agent-2", 500, KIND.PARTICIPANT_KIND_AGENT), P("rec", 600, KIND.PARTICIPANT_KIND_EGRESS)) is None
    assert _pick("gone", P("agent-2", 500, KIND.PARTICIPANT_KIND_AGENT), P("sip_+1555", 900, KIND.PARTICIPANT_KIND_SIP)) == "sip_+1555"


def test_with_nobody_in_the_room_the_link_waits() -> None:
    assert _pick("caller-1") is None


# A caller whose client joined the signalling but never connected its media (it
# hung up while reconnecting to a restarted server, or no WebRTC gets through):
# livekit-server lists it as joined, never active, for 15 s and more.


def test_a_linked_caller_who_never_connected_media_gives_way_to_one_who_did() -> None:
    assert _pick("ghost", P("ghost", 1000, state=JOINED), P("caller-2", 2000)) == "caller-2"


def test_a_linked_caller_not_yet_active_keeps_the_link_while_no_one_else_is() -> None:
    assert _pick("caller-1", P("caller-1", 1000, state=JOINED)) is None
    assert _pick("caller-1", P("caller-1", 1000, state=JOINED), P("caller-2", 2000, state=JOINED)) is None


def test_an_active_caller_comes_before_one_who_joined_earlier_without_media() -> None:
    assert _pick("gone", P("ghost", 1000, state=JOINED), P("late", 3000), P("later", 4000)) == "late"
    assert _pick("gone", P("ghost", 1000, state=JOINED), P("also", 2000, state=JOINED)) == "ghost"
