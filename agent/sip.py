"""Phone callers through LiveKit SIP: the inbound trunk and dispatch rule
(``python -m agent sip setup``).

A phone call reaches LiveKit's SIP service (``livekit-sip``), which asks
livekit-server, over their shared Redis, which inbound trunk the call
belongs to (by the number dialled and the caller's address, and digest
credentials when the trunk has them) and which dispatch rule puts it in a
room. The rule we make gives each call a room of its own (``room_prefix``
plus a random part) and dispatches our agent into it (``room_config``'s
agent dispatch), so a worker started with ``AGENT_NAME`` joins phone rooms
only. The caller is then a SIP participant like any other; its attributes
(``sip.phoneNumber``, ``sip.callStatus``, ...) say it is on the phone.

Setup is idempotent: the trunk and the rule are found by name, created when
missing, updated when a field differs, and left alone when they match, so a
rerun changes nothing. Every argument is checked before the first request.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from livekit import api
from livekit.protocol import agent_dispatch as agent_dispatch_proto
from livekit.protocol import room as room_proto
from livekit.protocol import sip as sip_proto

from .agent_dispatch import MAX_ROOM_NAME_BYTES
from .errors import RequestError

__all__ = ["InboundPlan", "SetupResult", "ensure_inbound"]

TRUNK_NAME = "agent-inbound"
RULE_NAME = "agent-inbound"
# What we let a room prefix hold: the characters every LiveKit client and URL
# carries unescaped. livekit-server itself accepts any string up to 256 bytes.
_PREFIX = re.compile(r"[A-Za-z0-9_.\-]+")
_RANDOM_PART = 12  # livekit-sip appends "_<caller>_<random>" to the prefix: leave room for it
_NUMBER = re.compile(r"\+?[0-9*#]{1,32}")


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
            if not _NUMBER.fullmatch(number):
                raise RequestError(f"{number!r} is not a phone number", hint="digits with an optional leading +, e.g. +15550100")
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


@dataclass
class SetupResult:
    trunk_id: str
    rule_id: str
    changes: list[str] = field(default_factory=list)  # what this run created or updated; empty = nothing


def _trunk_differs(have: sip_proto.SIPInboundTrunkInfo, want: sip_proto.SIPInboundTrunkInfo) -> list[str]:
    return [f for f in ("numbers", "allowed_addresses", "auth_username", "auth_password") if _value(have, f) != _value(want, f)]


def _value(message: object, name: str) -> object:
    value = getattr(message, name)
    return list(value) if not isinstance(value, str) else value


def _rule_differs(have: sip_proto.SIPDispatchRuleInfo, want: sip_proto.SIPDispatchRuleInfo) -> list[str]:
    differs = [f for f in ("trunk_ids",) if _value(have, f) != _value(want, f)]
    if have.rule.SerializeToString(deterministic=True) != want.rule.SerializeToString(deterministic=True):
        differs.append("rule")
    have_agents = [a.agent_name for a in have.room_config.agents]
    if have_agents != [a.agent_name for a in want.room_config.agents]:
        differs.append("agent dispatch")
    return differs


async def ensure_inbound(lk: api.LiveKitAPI, plan: InboundPlan) -> SetupResult:
    """Make the server's inbound trunk and dispatch rule match ``plan``."""
    plan = plan.checked()
    changes: list[str] = []
    want_trunk = plan.trunk()
    trunks = [t for t in (await lk.sip.list_inbound_trunk(sip_proto.ListSIPInboundTrunkRequest())).items if t.name == plan.trunk_name]
    if not trunks:
        trunk = await lk.sip.create_inbound_trunk(sip_proto.CreateSIPInboundTrunkRequest(trunk=want_trunk))
        changes.append(f"created inbound trunk {trunk.sip_trunk_id}")
    else:
        trunk = trunks[0]
        differs = _trunk_differs(trunk, want_trunk)
        if differs:
            want_trunk.sip_trunk_id = trunk.sip_trunk_id
            trunk = await lk.sip.update_inbound_trunk(trunk.sip_trunk_id, want_trunk)
            changes.append(f"updated inbound trunk {trunk.sip_trunk_id} ({', '.join(differs)})")
    want_rule = plan.rule(trunk.sip_trunk_id)
    rules = [r for r in (await lk.sip.list_dispatch_rule(sip_proto.ListSIPDispatchRuleRequest())).items if r.name == plan.rule_name]
    if not rules:
        rule = await lk.sip.create_dispatch_rule(sip_proto.CreateSIPDispatchRuleRequest(dispatch_rule=want_rule))
        changes.append(f"created dispatch rule {rule.sip_dispatch_rule_id}")
    else:
        rule = rules[0]
        differs = _rule_differs(rule, want_rule)
        if differs:
            want_rule.sip_dispatch_rule_id = rule.sip_dispatch_rule_id
            rule = await lk.sip.update_dispatch_rule(rule.sip_dispatch_rule_id, want_rule)
            changes.append(f"updated dispatch rule {rule.sip_dispatch_rule_id} ({', '.join(differs)})")
    return SetupResult(trunk.sip_trunk_id, rule.sip_dispatch_rule_id, changes)
