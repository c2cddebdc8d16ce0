"""A caller on the phone (a SIP participant, bridged by livekit-sip): what
the job does differently for one.

- **It knows.** The caller's number (the participant's ``sip.phoneNumber``
  attribute) goes into the agent's instructions, so the model can say it is
  on the phone and look the caller up by number.
- **Keypad digits.** livekit-sip turns the phone's DTMF (RFC 4733) into
  ``sip_dtmf_received`` room events. Digits are collected until ``#``, or
  until the caller pauses for ``AGENT_DTMF_PAUSE_S``, and given to the model
  as one user message it can read (``[keypad] 1 2 3 4``), as room chat is.
- **Transfer.** ``escalate_to_human`` on a phone call, with
  ``AGENT_TRANSFER_TO`` set (a number or a SIP URI), transfers the call once
  the agent has said so: livekit-sip sends the phone a SIP REFER
  (livekit-api's TransferSIPParticipant). The phone then calls the target.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from livekit import api, rtc

log = logging.getLogger("agent.phone")

__all__ = ["KeypadBuffer", "is_phone_caller", "phone_instructions", "sip_transfer_target"]

PHONE_NUMBER_ATTRIBUTE = "sip.phoneNumber"
DIGITS = frozenset("0123456789*#ABCD")


def is_phone_caller(participant: rtc.Participant | None) -> bool:
    return participant is not None and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def phone_instructions(base: str, participant: rtc.Participant) -> str:
    number = participant.attributes.get(PHONE_NUMBER_ATTRIBUTE, "")
    told = f" from the number {number}" if number else ""
    return (
        f"{base}\n\nThis caller is on the phone{told}. Keep answers short and spoken; keypad digits the caller "
        "presses reach you as a message that starts with [keypad]."
        + (f" If a tool needs the caller's phone number, it is {number}." if number else "")
    )


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
        task = asyncio.ensure_future(self._deliver(f"[keypad] {' '.join(digits)}"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
