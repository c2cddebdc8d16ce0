"""A caller on the phone (a SIP participant, bridged by livekit-sip): what
the job does differently for one.

- **It knows.** The caller's number (the participant's ``sip.phoneNumber``
  attribute) goes into the agent's instructions, so the model can say it is
  on the phone and look the caller up by number.
- **Keypad digits.** livekit-sip turns the phone's DTMF (RFC 4733) into
  ``sip_dtmf_received`` room events. Digits are collected until ``#``, or
  until the caller pauses for ``AGENT_DTMF_PAUSE_S``, and given to the model
  as one user message it can read (``[keypad] 1 2 3 4``), as room chat is.
- **Keypad entries a tool asks for.** ``read_keypad`` waits for the next
  entry and returns it as its output (it is not given to the model as a
  message then): for numbers easier typed than said.
- **Transfer.** ``escalate_to_human`` on a phone call, with
  ``AGENT_TRANSFER_TO`` set (a number or a SIP URI), transfers the call once
  the agent has said so: livekit-sip sends the phone a SIP REFER
  (livekit-api's TransferSIPParticipant). The phone then calls the target.
- **Calls it places** (``python -m agent call``, :func:`agent.sip.place_call`).
  The job's metadata names the number (:func:`outbound_call`); the callee
  joins the room while the phone rings (``sip.callStatus`` ``dialing``, then
  ``ringing``), so the agent speaks first only once the callee has answered
  (``active``, :func:`wait_answered`), and leaves if no one does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit import api, rtc

from .sip import OUTBOUND_METADATA_KEY, CallRequest

log = logging.getLogger("agent.phone")

__all__ = ["KeypadBuffer", "OutboundCall", "is_phone_caller", "outbound_call", "phone_instructions", "sip_transfer_target", "wait_answered"]

PHONE_NUMBER_ATTRIBUTE = "sip.phoneNumber"
CALL_STATUS_ATTRIBUTE = "sip.callStatus"
DIGITS = frozenset("0123456789*#ABCD")


def is_phone_caller(participant: rtc.Participant | None) -> bool:
    return participant is not None and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def phone_instructions(base: str, participant: rtc.Participant, *, placed: bool = False) -> str:
    number = participant.attributes.get(PHONE_NUMBER_ATTRIBUTE, "")
    if placed:
        told = f": you called them, at {number}" if number else ": you called them"
    else:
        told = f" from the number {number}" if number else ""
    return (
        f"{base}\n\nThis caller is on the phone{told}. Keep answers short and spoken; keypad digits the caller "
        "presses reach you as a message that starts with [keypad]."
        + (f" If a tool needs the caller's phone number, it is {number}." if number else "")
    )


@dataclass(frozen=True)
class OutboundCall:
    """A call the agent places: the number, and how long its phone may ring."""

    to: str
    ring_timeout_s: float

    @property
    def wait_s(self) -> float:
        """How long the job waits for the callee (to reach the room, then to answer):
        the ringing, and livekit-sip's dialling and hang-up around it."""
        return self.ring_timeout_s + 10


def outbound_call(metadata: str | None) -> OutboundCall | None:
    """The call in a job's metadata (:meth:`agent.sip.CallRequest.job_metadata`), if any."""
    try:
        data = json.loads(metadata or "")
    except ValueError:
        return None
    call = data.get(OUTBOUND_METADATA_KEY) if isinstance(data, dict) else None
    if not isinstance(call, dict) or not isinstance(call.get("to"), str):
        return None
    ring = call.get("ring_timeout_s")
    return OutboundCall(call["to"], float(ring) if isinstance(ring, (int, float)) else CallRequest.ring_timeout_s)


async def wait_answered(room: rtc.Room, identity: str, timeout: float) -> bool:
    """True once ``identity``'s ``sip.callStatus`` is ``active`` (livekit-sip
    sets it when the callee answers); False if it is not within ``timeout`` s
    or the callee is gone (the call failed)."""
    answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def check(*_: object) -> None:
        callee = room.remote_participants.get(identity)
        if answered.done():
            return
        if callee is None:
            answered.set_result(False)
        elif callee.attributes.get(CALL_STATUS_ATTRIBUTE) == "active":
            answered.set_result(True)

    room.on("participant_attributes_changed", check)
    room.on("participant_disconnected", check)
    try:
        check()
        return await asyncio.wait_for(answered, timeout)
    except TimeoutError:
        return False
    finally:
        room.off("participant_attributes_changed", check)
        room.off("participant_disconnected", check)


def sip_transfer_target(target: str) -> str:
    """``AGENT_TRANSFER_TO`` as livekit-sip wants it: a SIP URI or ``tel:`` URI."""
    target = target.strip()
    if target.startswith(("sip:", "sips:", "tel:")):
        return target
    return f"tel:{target}"


class KeypadBuffer:
    """Collects one caller's DTMF digits and hands them over as one message:
    at ``#`` (not included), or after ``pause_s`` without a new digit."""

    def __init__(self, deliver: Callable[[str], Awaitable[None]], *, pause_s: float, caller: Callable[[], str | None]) -> None:
        self._deliver = deliver
        self._pause_s = pause_s
        self._caller = caller  # the linked caller's identity: digits from anyone else are ignored
        self._digits: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Future[str] | None = None  # a tool waiting for the next entry (read_keypad)

    def on_dtmf(self, dtmf: rtc.SipDTMF) -> None:
        who = dtmf.participant.identity if dtmf.participant is not None else None
        if who is None or who != self._caller():
            return
        digit = (dtmf.digit or "").upper()
        if digit not in DIGITS:
            log.warning("keypad: ignored DTMF %r (code %s) from %s", dtmf.digit, dtmf.code, who)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if digit == "#":
            self._flush()
            return
        self._digits.append(digit)
        self._timer = asyncio.get_running_loop().call_later(self._pause_s, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self._digits:
            return
        digits, self._digits = "".join(self._digits), []
        log.info("keypad: the caller pressed %s", digits)
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(digits)  # the tool that asked for it gets it, not the model as a message
            return
        task = asyncio.ensure_future(self._deliver(f"[keypad] {' '.join(digits)}"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def next_entry(self, timeout: float) -> str | None:
        """The caller's next entry (digits up to ``#`` or a pause), or None after ``timeout`` s."""
        if self._reader is not None and not self._reader.done():
            raise RuntimeError("a keypad read is already waiting")
        self._reader = asyncio.get_running_loop().create_future()
        log.info("keypad: a tool waits for the caller's entry (up to %g s)", timeout)
        try:
            return await asyncio.wait_for(self._reader, timeout)
        except TimeoutError:
            return None
        finally:
            self._reader = None

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def transfer_call(lk: api.LiveKitAPI, room: str, identity: str, target: str) -> None:
    """Ask livekit-sip to transfer the phone ``identity`` in ``room`` (SIP REFER)."""
    to = sip_transfer_target(target)
    log.info("transferring the call of %s in room %s to %s", identity, room, to)
    await lk.sip.transfer_sip_participant(
        api.TransferSIPParticipantRequest(room_name=room, participant_identity=identity, transfer_to=to, play_dialtone=False)
    )


def attach_keypad(room: rtc.Room, buffer: KeypadBuffer) -> Callable[[], None]:
    """Route ``room``'s DTMF events to ``buffer``; returns the detach."""

    def on_dtmf(dtmf: Any) -> None:
        buffer.on_dtmf(dtmf)

    room.on("sip_dtmf_received", on_dtmf)
    return lambda: room.off("sip_dtmf_received", on_dtmf)
