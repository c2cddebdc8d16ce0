"""Telephony logic without a call: the inbound plan's checks (agent.sip) and
the keypad, transfer target and instructions of a phone caller (agent.phone)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from agent.errors import RequestError
from agent.phone import KeypadBuffer, phone_instructions, sip_transfer_target
from agent.sip import InboundPlan


@pytest.mark.parametrize(
    "plan,said",
    [
        (InboundPlan(numbers=("555-0100",)), "not a phone number"),
        (InboundPlan(allowed_addresses=("10.0.0.300",)), "not an IP address or CIDR"),
        (InboundPlan(auth_username="u"), "both a username and a password"),
        (InboundPlan(auth_password="p"), "both a username and a password"),
        (InboundPlan(room_prefix="my room"), "not a valid room name start"),
        (InboundPlan(room_prefix=""), "not a valid room name start"),
        (InboundPlan(room_prefix="x" * 250), "bytes long"),
    ],
)
def test_a_bad_inbound_plan_is_refused_before_any_request(plan: InboundPlan, said: str) -> None:
    with pytest.raises(RequestError, match=said):
        plan.checked()


def test_the_plan_makes_one_room_per_call_with_our_agent() -> None:
    plan = InboundPlan(numbers=("+15550100",), allowed_addresses=("203.0.113.0/24",), agent_name="phone", room_prefix="call-").checked()
    trunk = plan.trunk()
    assert list(trunk.numbers) == ["+15550100"] and list(trunk.allowed_addresses) == ["203.0.113.0/24"]
    rule = plan.rule("ST_x")
    assert list(rule.trunk_ids) == ["ST_x"]
    assert rule.rule.dispatch_rule_individual.room_prefix == "call-"
    assert [a.agent_name for a in rule.room_config.agents] == ["phone"]


def test_transfer_targets() -> None:
    assert sip_transfer_target("+15550199") == "tel:+15550199"
    assert sip_transfer_target(" sip:desk@pbx.example.com ") == "sip:desk@pbx.example.com"
    assert sip_transfer_target("tel:+441234") == "tel:+441234"


def test_the_instructions_say_the_caller_is_on_the_phone() -> None:
    caller = SimpleNamespace(attributes={"sip.phoneNumber": "+15550142"})
    text = phone_instructions("You are helpful.", caller)  # type: ignore[arg-type]
    assert text.startswith("You are helpful.") and "on the phone from the number +15550142" in text and "[keypad]" in text
    assert "from the number" not in phone_instructions("Base.", SimpleNamespace(attributes={}))  # type: ignore[arg-type]


@dataclass
class _Dtmf:
    digit: str
    identity: str = "sip_caller"
    code: int = 0

    @property
    def participant(self) -> SimpleNamespace:
        return SimpleNamespace(identity=self.identity)


async def test_keypad_digits_reach_the_model_at_hash_or_after_a_pause() -> None:
    got: list[str] = []

    async def deliver(text: str) -> None:
        got.append(text)

    pad = KeypadBuffer(deliver, pause_s=0.2, caller=lambda: "sip_caller")
    for d in "12":
        pad.on_dtmf(_Dtmf(d))  # type: ignore[arg-type]
    pad.on_dtmf(_Dtmf("3", identity="someone-else"))  # type: ignore[arg-type]  # not the linked caller
    pad.on_dtmf(_Dtmf("x"))  # type: ignore[arg-type]  # not a keypad key
    pad.on_dtmf(_Dtmf("#"))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert got == ["[keypad] 1 2"]
    pad.on_dtmf(_Dtmf("*"))  # type: ignore[arg-type]
    pad.on_dtmf(_Dtmf("9"))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert got == ["[keypad] 1 2"]  # still typing
    await asyncio.sleep(0.25)
    assert got == ["[keypad] 1 2", "[keypad] * 9"]
    pad.on_dtmf(_Dtmf("#"))  # type: ignore[arg-type]  # a lone '#' sends nothing
    await asyncio.sleep(0.05)
    assert got == ["[keypad] 1 2", "[keypad] * 9"]
    await pad.aclose()
