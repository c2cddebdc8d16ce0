"""Phone callers through LiveKit SIP: the inbound trunk and dispatch rule
and the outbound trunk (``python -m agent sip setup``), and calls the agent
places (``python -m agent call``).

A phone call reaches LiveKit's SIP service (``livekit-sip``), which asks
livekit-server, over their shared Redis, which inbound trunk the call
belongs to (by the number dialled and the caller's address, and digest
credentials when the trunk has them) and which dispatch rule puts it in a
room. The rule we make gives each call a room of its own (``room_prefix``
plus a random part) and dispatches our agent into it (``room_config``'s
agent dispatch), so a worker started with ``AGENT_NAME`` joins phone rooms
only. The caller is then a SIP participant like any other; its attributes
(``sip.phoneNumber``, ``sip.callStatus``, ...) say it is on the phone.

Setup is idempotent: the trunks and the rule are found by name, created when
missing, updated when a field differs, and left alone when they match, so a
rerun changes nothing. Every argument is checked before the first request.

An outbound call (:func:`place_call`) is LiveKit's own sequence: our agent
is dispatched into a room of the call's own, with the number in the job's
metadata (the job then waits for the callee to answer before it speaks,
:mod:`agent.phone`), and livekit-server's CreateSIPParticipant has
livekit-sip dial through the outbound trunk and wait for the answer. A call
that is not answered (busy, declined, no answer, no SIP service) ends with
its room deleted, which ends the job: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.duration_pb2 import Duration
from livekit import api
from livekit.protocol import agent_dispatch as agent_dispatch_proto
from livekit.protocol import room as room_proto
from livekit.protocol import sip as sip_proto

from .agent_dispatch import MAX_ROOM_NAME_BYTES, check_room_name
from .errors import BackendError, RequestError

__all__ = [
    "OUTBOUND_METADATA_KEY", "CallRequest", "CallResult", "InboundPlan", "OutboundPlan", "SetupResult",
    "ensure_inbound", "ensure_outbound", "place_call",
]  # fmt: skip

TRUNK_NAME = "agent-inbound"
RULE_NAME = "agent-inbound"
# What we let a room prefix hold: the characters every LiveKit client and URL
# carries unescaped. livekit-server itself accepts any string up to 256 bytes.
_PREFIX = re.compile(r"[A-Za-z0-9_.\-]+")
_RANDOM_PART = 12  # livekit-sip appends "_<caller>_<random>" to the prefix: leave room for it
_NUMBER = re.compile(r"\+?[0-9*#]{1,32}")
OUTBOUND_TRUNK_NAME = "agent-outbound"
# The job's metadata for a call the agent places: {"outbound_call": {"to": ..., "ring_timeout_s": ...}}
OUTBOUND_METADATA_KEY = "outbound_call"
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?")
_TRANSPORTS = {
    "auto": sip_proto.SIPTransport.SIP_TRANSPORT_AUTO,
    "udp": sip_proto.SIPTransport.SIP_TRANSPORT_UDP,
    "tcp": sip_proto.SIPTransport.SIP_TRANSPORT_TCP,
    "tls": sip_proto.SIPTransport.SIP_TRANSPORT_TLS,
}


def check_number(number: str) -> str:
    if not _NUMBER.fullmatch(number):
        raise RequestError(f"{number!r} is not a phone number", hint="digits with an optional leading +, e.g. +15550100")
    return number


@dataclass(frozen=True)
class InboundPlan:
    """What the operator asked for; :meth:`checked` refuses what LiveKit would not serve."""

    numbers: tuple[str, ...] = ()  # numbers the trunk answers (empty: any)
    allowed_addresses: tuple[str, ...] = ()  # addresses or CIDRs calls may come from (empty: any)
    auth_username: str = ""
    auth_password: str = ""
    agent_name: str = ""  # the agent dispatched into each call's room ("" = the unnamed agent)
    room_prefix: str = "call-"
    trunk_name: str = TRUNK_NAME
    rule_name: str = RULE_NAME

    def checked(self) -> InboundPlan:
        for number in self.numbers:
            check_number(number)
        for address in self.allowed_addresses:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise RequestError(f"{address!r} is not an IP address or CIDR range", hint="e.g. 203.0.113.7 or 203.0.113.0/24") from None
        if bool(self.auth_username) != bool(self.auth_password):
            raise RequestError("digest auth needs both a username and a password", hint="give --username and --password, or neither")
        if not _PREFIX.fullmatch(self.room_prefix):
            raise RequestError(
                f"room prefix {self.room_prefix!r} is not a valid room name start",
                hint="letters, digits, '-', '_' and '.' only (each call's room is the prefix plus a random part)",
            )
        if len(self.room_prefix.encode()) > MAX_ROOM_NAME_BYTES - _RANDOM_PART:
            raise RequestError(
                f"room prefix is {len(self.room_prefix.encode())} bytes long",
                hint=f"at most {MAX_ROOM_NAME_BYTES - _RANDOM_PART}: the rooms' names must stay within livekit-server's {MAX_ROOM_NAME_BYTES}",
            )
        return self

    def trunk(self) -> sip_proto.SIPInboundTrunkInfo:
        return sip_proto.SIPInboundTrunkInfo(
            name=self.trunk_name,
            numbers=list(self.numbers),
            allowed_addresses=list(self.allowed_addresses),
            auth_username=self.auth_username,
            auth_password=self.auth_password,
        )

    def rule(self, trunk_id: str) -> sip_proto.SIPDispatchRuleInfo:
        return sip_proto.SIPDispatchRuleInfo(
            name=self.rule_name,
            trunk_ids=[trunk_id],
            rule=sip_proto.SIPDispatchRule(dispatch_rule_individual=sip_proto.SIPDispatchRuleIndividual(room_prefix=self.room_prefix)),
            room_config=room_proto.RoomConfiguration(agents=[agent_dispatch_proto.RoomAgentDispatch(agent_name=self.agent_name)]),
        )


@dataclass(frozen=True)
class OutboundPlan:
    """The trunk calls go out through: the SIP provider's address (``host`` or
    ``host:port``), the numbers calls come from, and the provider's credentials."""

    address: str
    numbers: tuple[str, ...] = ()  # caller ID: the number(s) the callee sees
    auth_username: str = ""
    auth_password: str = ""
    transport: str = "auto"
    trunk_name: str = OUTBOUND_TRUNK_NAME

    def checked(self) -> OutboundPlan:
        host, _, port = self.address.rpartition(":") if self.address.count(":") == 1 else (self.address, "", "")
        if not _HOST.fullmatch(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise RequestError(
                f"{self.address!r} is not a SIP host", hint="the provider's SIP address: a host name or IP address, with an optional :port"
            )
        for number in self.numbers:
            check_number(number)
        if bool(self.auth_username) != bool(self.auth_password):
            raise RequestError(
                "the outbound trunk's credentials need both a username and a password",
                hint="give --outbound-username and --outbound-password, or neither",
            )
        if self.transport not in _TRANSPORTS:
            raise RequestError(f"transport {self.transport!r} is not one of {', '.join(_TRANSPORTS)}")
        return self

    def trunk(self) -> sip_proto.SIPOutboundTrunkInfo:
        return sip_proto.SIPOutboundTrunkInfo(
            name=self.trunk_name,
            address=self.address,
            numbers=list(self.numbers),
            auth_username=self.auth_username,
            auth_password=self.auth_password,
            transport=_TRANSPORTS[self.transport],
        )


@dataclass
class SetupResult:
    trunk_id: str
    rule_id: str
    changes: list[str] = field(default_factory=list)  # what this run created or updated; empty = nothing


def _value(message: object, name: str) -> object:
    value = getattr(message, name)
    return list(value) if not isinstance(value, (str, int)) else value


def _fields_differ(have: Any, want: Any, names: tuple[str, ...]) -> list[str]:
    return [f for f in names if _value(have, f) != _value(want, f)]


def _rule_differs(have: sip_proto.SIPDispatchRuleInfo, want: sip_proto.SIPDispatchRuleInfo) -> list[str]:
    differs = _fields_differ(have, want, ("trunk_ids",))
    if have.rule.SerializeToString(deterministic=True) != want.rule.SerializeToString(deterministic=True):
        differs.append("rule")
    have_agents = [a.agent_name for a in have.room_config.agents]
    if have_agents != [a.agent_name for a in want.room_config.agents]:
        differs.append("agent dispatch")
    return differs


_Info = TypeVar("_Info")


async def _ensure_named(
    what: str, named: list[_Info], want: _Info, *, id_field: str, differs: Callable[[_Info, _Info], list[str]],
    create: Callable[[_Info], Awaitable[_Info]], update: Callable[[str, _Info], Awaitable[_Info]], changes: list[str],
) -> _Info:  # fmt: skip
    """The one of ``named`` (the server's objects of our name) made to match
    ``want``: created when there is none, updated in place when a field
    differs, left alone otherwise; ``changes`` gets a line for what was done."""
    if not named:
        made = await create(want)
        changes.append(f"created {what} {getattr(made, id_field)}")
        return made
    have = named[0]
    differ = differs(have, want)
    if not differ:
        return have
    object_id = getattr(have, id_field)
    setattr(want, id_field, object_id)
    made = await update(object_id, want)
    changes.append(f"updated {what} {object_id} ({', '.join(differ)})")
    return made


async def ensure_inbound(lk: api.LiveKitAPI, plan: InboundPlan) -> SetupResult:
    """Make the server's inbound trunk and dispatch rule match ``plan``."""
    plan = plan.checked()
    changes: list[str] = []
    trunks = [t for t in (await lk.sip.list_inbound_trunk(sip_proto.ListSIPInboundTrunkRequest())).items if t.name == plan.trunk_name]
    trunk = await _ensure_named(
        "inbound trunk", trunks, plan.trunk(), id_field="sip_trunk_id", changes=changes,
        differs=lambda have, want: _fields_differ(have, want, ("numbers", "allowed_addresses", "auth_username", "auth_password")),
        create=lambda want: lk.sip.create_inbound_trunk(sip_proto.CreateSIPInboundTrunkRequest(trunk=want)),
        update=lk.sip.update_inbound_trunk,
    )  # fmt: skip
    rules = [r for r in (await lk.sip.list_dispatch_rule(sip_proto.ListSIPDispatchRuleRequest())).items if r.name == plan.rule_name]
    rule = await _ensure_named(
        "dispatch rule", rules, plan.rule(trunk.sip_trunk_id), id_field="sip_dispatch_rule_id", changes=changes,
        differs=_rule_differs, create=lambda want: lk.sip.create_dispatch_rule(sip_proto.CreateSIPDispatchRuleRequest(dispatch_rule=want)),
        update=lk.sip.update_dispatch_rule,
    )  # fmt: skip
    return SetupResult(trunk.sip_trunk_id, rule.sip_dispatch_rule_id, changes)


async def _outbound_trunks(lk: api.LiveKitAPI, name: str) -> list[sip_proto.SIPOutboundTrunkInfo]:
    return [t for t in (await lk.sip.list_outbound_trunk(sip_proto.ListSIPOutboundTrunkRequest())).items if t.name == name]


async def ensure_outbound(lk: api.LiveKitAPI, plan: OutboundPlan) -> tuple[str, list[str]]:
    """Make the server's outbound trunk match ``plan``: its id, and what changed."""
    plan = plan.checked()
    changes: list[str] = []
    trunk = await _ensure_named(
        "outbound trunk", await _outbound_trunks(lk, plan.trunk_name), plan.trunk(), id_field="sip_trunk_id", changes=changes,
        differs=lambda have, want: _fields_differ(have, want, ("address", "numbers", "auth_username", "auth_password", "transport")),
        create=lambda want: lk.sip.create_outbound_trunk(sip_proto.CreateSIPOutboundTrunkRequest(trunk=want)),
        update=lk.sip.update_outbound_trunk,
    )  # fmt: skip
    return trunk.sip_trunk_id, changes


# ---------------------------------------------------------------------- calls the agent places

# SIP final responses (RFC 3261 21.4-21.6) as a person would say them
_BUSY = {486, 600}
_DECLINED = {603}
_NOT_ANSWERED = {408, 480, 487}


@dataclass(frozen=True)
class CallRequest:
    """An outbound call: the number, the room it gets (empty: ``call-out-`` plus
    a random part), the agent dispatched into it, how long the phone may ring."""

    to: str
    room: str = ""
    agent_name: str = ""
    ring_timeout_s: float = 30.0
    trunk_id: str = ""  # empty: the outbound trunk `sip setup` made

    def checked(self) -> CallRequest:
        check_number(self.to)
        if self.room:
            check_room_name(self.room)
        if not 1 <= self.ring_timeout_s <= 600:
            raise RequestError(f"a ring timeout of {self.ring_timeout_s:g} s", hint="between 1 and 600 seconds")
        return self

    def job_metadata(self) -> str:
        return json.dumps({OUTBOUND_METADATA_KEY: {"to": self.to, "ring_timeout_s": self.ring_timeout_s}})


@dataclass(frozen=True)
class CallResult:
    """How a call ended up: ``outcome`` is answered, busy, declined, no answer or failed."""

    to: str
    room: str
    outcome: str
    detail: str = ""  # the SIP status, or what failed
    participant: str = ""  # the callee's identity in the room, once answered

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"

    def line(self) -> str:
        if self.answered:
            return f"answered: {self.to} is in room {self.room} as {self.participant}, with the agent"
        return f"not answered: {self.to} {self.outcome} ({self.detail}); room {self.room} deleted, no job left"


def call_outcome(status_code: int | None) -> str:
    if status_code in _BUSY:
        return "busy"
    if status_code in _DECLINED:
        return "declined"
    if status_code in _NOT_ANSWERED:
        return "no answer"
    return "failed"


async def find_outbound_trunk(lk: api.LiveKitAPI, name: str = OUTBOUND_TRUNK_NAME) -> str:
    trunks = await _outbound_trunks(lk, name)
    if not trunks:
        raise RequestError(
            f"livekit-server has no outbound trunk named {name!r}",
            hint="make it with: python -m agent sip setup --outbound-address <your SIP provider's host>",
        )
    return trunks[0].sip_trunk_id


async def place_call(lk: api.LiveKitAPI, request: CallRequest) -> CallResult:
    """Dispatch our agent into a new room and have livekit-sip call ``request.to``
    from it; returns once the call is answered or has failed (its room then deleted)."""
    request = request.checked()
    trunk_id = request.trunk_id or await find_outbound_trunk(lk)
    room = request.room or f"call-out-{secrets.token_hex(4)}"
    if (await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))).rooms:
        raise RequestError(f"room {room!r} already exists", hint="a call gets a room of its own: name another with --room, or leave it out")
    # the room and its agent in one request (the agent's job reads the number from its metadata)
    agent = agent_dispatch_proto.RoomAgentDispatch(agent_name=request.agent_name, metadata=request.job_metadata())
    await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=int(request.ring_timeout_s) + 30, agents=[agent]))
    identity = "sip_" + request.to.lstrip("+")
    try:
        info = await lk.sip.create_sip_participant(
            sip_proto.CreateSIPParticipantRequest(
                sip_trunk_id=trunk_id, sip_call_to=request.to, room_name=room, participant_identity=identity,
                participant_name=request.to, wait_until_answered=True,
                ringing_timeout=Duration(seconds=int(request.ring_timeout_s)),
            )
        )  # fmt: skip
    except api.SipCallError as e:
        await _delete_room(lk, room)
        code = e.sip_status_code
        return CallResult(request.to, room, call_outcome(code), f"SIP {code} {e.sip_status or ''}".strip())
    except api.TwirpError as e:
        await _delete_room(lk, room)
        if "sip request timed out" in e.message:
            # livekit-sip v1.8.0 ends an unanswered call at the ringing timeout with no SIP status
            return CallResult(request.to, room, "no answer", f"rang {request.ring_timeout_s:g} s, not picked up")
        if "cpu exhausted" in e.message:
            raise BackendError(
                f"livekit-sip refused the call: its host's CPU is busier than its max_cpu_utilization ({e.message}); room {room} deleted, no job left",
                hint="try again when the host is less busy, or give livekit-sip a host of its own",
                retryable=True,
            ) from None
        if e.code in ("unavailable", "deadline_exceeded") or "no response" in e.message:
            raise BackendError(
                f"livekit-server found no SIP service to place the call ({e.code}: {e.message}); room {room} deleted, no job left",
                hint="is livekit-sip running, with the same Redis as livekit-server?",
            ) from None
        raise BackendError(f"the call to {request.to} failed: {e.code}: {e.message}; room {room} deleted, no job left") from None
    return CallResult(request.to, room, "answered", participant=info.participant_identity)


# A deleted room stays deleted once it has been gone this long (see _delete_room).
ROOM_GONE_S = 2.0
ROOM_GONE_TIMEOUT_S = 10.0


async def _delete_room(
    lk: api.LiveKitAPI, room: str, *, gone_s: float = ROOM_GONE_S, timeout: float = ROOM_GONE_TIMEOUT_S, poll_s: float = 0.25
) -> None:
    """Delete the call's room, so its agent leaves and the job ends, and again until
    the room has stayed gone ``gone_s`` (at most ``timeout``).

    A deleted room can come back: livekit-server 1.13.5 closed the agent's signal
    stream before its leave got through ("error writing to request sink: stream
    closed"), the agent's SDK took that for a dropped connection and tried to
    resume, and the attempt made the room again, empty, 40 ms after it was deleted
    (seen in a test run). It would then sit there until its empty timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    gone_since: float | None = None
    while True:
        try:
            if (await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))).rooms:
                gone_since = None
                await lk.room.delete_room(api.DeleteRoomRequest(room=room))
            elif gone_since is None:
                gone_since = loop.time()
        except api.TwirpError:
            pass  # gone already, or the server is busy: looked at again below
        now = loop.time()
        if (gone_since is not None and now - gone_since >= gone_s) or now >= deadline:
            return
        await asyncio.sleep(poll_s)
