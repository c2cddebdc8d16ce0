"""Keep a session linked to a caller who is in the room.

livekit-agents' RoomIO links the session to one participant identity, for
good: audio, chat and transcripts follow that identity only. When that caller
leaves normally the session closes (``close_on_disconnect``), the job ends,
and the next caller gets a new agent. But when livekit-server crashes during
a call, the caller can be gone without a normal leave: the agent's room
reconnects to the restarted server, which never saw the caller, and a caller
who calls back has a new identity (a web page makes one per join). RoomIO
then waits for the old identity forever, and since the room lists an agent,
nothing dispatches another: the new caller meets silence.

:class:`CallerLink` settles it from the room's own events (reconnected,
participant connected, active and disconnected): whenever the linked caller
is not in the room and another caller is, the session is re-linked to that
caller (the one who joined first) and greets them. A caller who stays through
the crash comes back with the same identity and keeps the link (nothing to do).

A caller can also be in the room without being there: one whose client
joined the signalling but never connected its media (a caller who hung up
while their SDK was reconnecting to the restarted server, or one whose
network lets no WebRTC through). livekit-server lists such a participant as
joined, never active, until its signal connection times out (15 s and more),
and RoomIO may have linked to it. So a linked caller who is not active counts
as gone as soon as another caller is active.
And if, after a reconnect, another agent of ours joined the room first (the
re-dispatcher sent one while we were away), we leave it to that one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from livekit import rtc

# The reasons for which RoomIO closes the session itself (close_on_disconnect).
from livekit.agents.voice.room_io.types import DEFAULT_CLOSE_ON_DISCONNECT_REASONS

from .dispatch import agents_of

log = logging.getLogger("agent.session")

CALLER_KINDS = (
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
)
ACTIVE = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE  # its media is connected



def caller_to_link(room: rtc.Room, linked: str | None) -> rtc.RemoteParticipant | None:
    """The caller the session should switch to, or None to keep the link as it is.

    None while the linked caller is in the room and active (media connected),
    or in the room while no other caller is active, or while there is no
    caller at all (the linked one may still come back). Active callers come
    first, then the one who joined first."""
    callers = [p for p in room.remote_participants.values() if p.kind in CALLER_KINDS]
    if not callers:
        return None
    active = [p for p in callers if p.state == ACTIVE]
    here = next((p for p in callers if p.identity == linked), None)
    if here is not None and (here.state == ACTIVE or not active):
        return None
    return min(active or callers, key=lambda p: (p.joined_at.timestamp() if p.joined_at else float("inf"), p.identity))


class CallerLink:
    """Follows the room's events; ``relink(identity)`` switches the session,
    ``leave(reason)`` ends the job. Both are the session module's."""

    def __init__(
        self,
        room: rtc.Room,
        agent_name: str,
        *,
        first_link: Awaitable[str | None],
        relink: Callable[[str], None],
        leave: Callable[[str], None],
    ) -> None:
        self._room = room
        self._agent_name = agent_name
        self.linked: str | None = None
        self._relink = relink
        self._leave = leave
        self._left = False
        self._armed = False  # until RoomIO has made its first link, that one is RoomIO's to make
        room.on("reconnected", self._on_reconnected)
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_active", self._on_participant_connected)
        room.on("participant_disconnected", self._on_participant_disconnected)
        self._first_link_atask = asyncio.create_task(self._arm(first_link), name="caller_link_first")

    async def _arm(self, first_link: Awaitable[str | None]) -> None:
        self.linked = await first_link
        self._armed = True
        self.reconcile()  # the first caller may have come and gone meanwhile

    async def aclose(self) -> None:
        self._room.off("reconnected", self._on_reconnected)
        self._room.off("participant_connected", self._on_participant_connected)
        self._room.off("participant_active", self._on_participant_connected)
        self._room.off("participant_disconnected", self._on_participant_disconnected)
        self._first_link_atask.cancel()
        await asyncio.gather(self._first_link_atask, return_exceptions=True)

    def _on_reconnected(self) -> None:
        present = sorted(p.identity for p in self._room.remote_participants.values())
        log.info("room %s: reconnected to livekit-server; linked caller %s; in the room: %s", self._room.name, self.linked, present)
        if not self._armed:
            return
        # Any agent of ours in the room now came while we were away (the
        # re-dispatcher sent it): it serves the room. Join times cannot decide
        # this: ours is from before the crash, theirs from the restarted server.
        others = agents_of(self._room, self._agent_name)
        if others:
            self._left = True
            log.warning("room %s: agent %s joined while we were away; leaving the room to it", self._room.name, others[0].identity)
            self._leave("another agent serves this room")
            return
        self.reconcile()

    def _on_participant_connected(self, _p: rtc.RemoteParticipant) -> None:
        self.reconcile()

    def _on_participant_disconnected(self, p: rtc.RemoteParticipant) -> None:
        if p.identity == self.linked and p.disconnect_reason in DEFAULT_CLOSE_ON_DISCONNECT_REASONS:
            return  # the caller hung up: RoomIO closes the session
        self.reconcile()

    def reconcile(self) -> None:
        if self._left or not self._armed:
            return
        caller = caller_to_link(self._room, self.linked)
        if caller is None:
            return
        gone = "is gone" if self.linked not in self._room.remote_participants else "never connected its media"
        log.warning("room %s: linked caller %s %s; serving %s, who is here", self._room.name, self.linked, gone, caller.identity)
        self.linked = caller.identity
        self._relink(caller.identity)
