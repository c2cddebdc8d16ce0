"""Re-dispatch: a room with a caller and no agent gets one again.

livekit-server dispatches an agent when a room is created and never again:
if no worker was registered at that moment (the server had just restarted),
or the job's process died, the caller waits in silence for good. The worker
runs this watchdog as a task beside its job loop (``Worker.run`` owns it):
every ``interval`` seconds it lists the rooms; one that was dispatched to our
agent name and has had a caller and no agent of ours for ``grace`` seconds
gets a new dispatch through the AgentDispatch API. Rooms dispatched to other
agent names are left alone (two agents on one server must not fill each
other's rooms).

Several workers may run it at once; before dispatching each checks that no
dispatch for the room is younger than ``cooldown`` seconds. That narrows
double dispatches to a race of a few milliseconds, and :func:`senior_agent`
settles the rest: an agent that joins a room where an agent of the same name
joined first leaves before it says a word, so a room keeps exactly one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from livekit import api, rtc

from .metrics import JOBS_REDISPATCHED

log = logging.getLogger("agent.dispatch")

# Set on every agent participant of ours (at job accept, so it is in the join
# token): which agent name it serves. Other agents in the room (an avatar, a
# recorder) are not ours to count.
AGENT_NAME_ATTRIBUTE = "voice_agent.name"

# Participants an agent serves: people in apps and phone callers (not egress, ingress, agents).
CALLER_KINDS = (api.ParticipantInfo.Kind.STANDARD, api.ParticipantInfo.Kind.SIP)


def _seniority(p: Any) -> tuple[float, str]:
    joined = p.joined_at.timestamp() if p.joined_at is not None else float("inf")
    return joined, p.identity


def agents_of(room: rtc.Room, agent_name: str) -> list[rtc.RemoteParticipant]:
    """The other agents of ours (same agent name) in ``room``."""
    return [
        p
        for p in room.remote_participants.values()
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and p.attributes.get(AGENT_NAME_ATTRIBUTE) == agent_name
    ]


def senior_agent(room: rtc.Room, agent_name: str) -> rtc.RemoteParticipant | None:
    """Another agent of ours that joined ``room`` before us, if any.

    Called right after joining: livekit-server sends each joiner the
    participants already in, so of two agents dispatched at once the later one
    finds the earlier (as the double-dispatch room test shows; we have not
    proved the server can never list two simultaneous joiners to neither).
    Ties on the join time go to the identity.
    """
    me = _seniority(room.local_participant)
    return next((p for p in agents_of(room, agent_name) if _seniority(p) < me), None)


@dataclass
class Redispatcher:
    url: str
    api_key: str
    api_secret: str
    agent_name: str = ""
    interval: float = 2.0
    grace: float = 3.0
    cooldown: float = 10.0
    dispatched: list[tuple[float, str]] = field(default_factory=list)  # (time, room) of our dispatches
    _orphaned_since: dict[str, float] = field(default_factory=dict)
    _urgent: asyncio.Queue[tuple[str, str]] = field(default_factory=asyncio.Queue)

    def job_died(self, room: str, agent_identity: str) -> None:
        """A job process died with its room still live.

        Its agent participant would linger until livekit-server times it out
        (about 20 s); remove it and dispatch a new agent now.
        """
        self._urgent.put_nowait((room, agent_identity))

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled (its owner, the worker, does that)."""
        http_url = self.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        lk = api.LiveKitAPI(http_url, self.api_key, self.api_secret, timeout=aiohttp.ClientTimeout(total=5))
        try:
            while True:
                try:
                    await self.check_once(lk)
                except Exception as e:  # the server may be down: that is what we are here for
                    log.debug("re-dispatch check failed: %s", e)
                try:
                    room, identity = await asyncio.wait_for(self._urgent.get(), self.interval)
                except TimeoutError:
                    continue
                try:
                    await self._replace_dead_agent(lk, room, identity)
                except Exception as e:
                    log.error("could not replace the dead agent of room %s: %s", room, e)
        finally:
            await lk.aclose()

    async def _replace_dead_agent(self, lk: api.LiveKitAPI, room: str, identity: str) -> None:
        try:
            await lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))
        except api.TwirpError as e:
            log.debug("removing %s from %s: %s", identity, room, e.message)
        people = (await lk.room.list_participants(api.ListParticipantsRequest(room=room))).participants
        if not any(p.kind in CALLER_KINDS for p in people):
            return  # the caller is gone too: nobody to serve
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room=room, agent_name=self.agent_name, metadata='{"redispatched": true}')
        )
        self._orphaned_since[room] = time.monotonic()
        self.dispatched.append((time.time(), room))
        JOBS_REDISPATCHED.inc()
        log.warning("the agent of room %s died with its job process: dispatched a new one", room)

    async def check_once(self, lk: api.LiveKitAPI) -> list[str]:
        now = time.monotonic()
        rooms = (await lk.room.list_rooms(api.ListRoomsRequest())).rooms
        orphaned: list[str] = []
        for room in rooms:
            if room.num_participants == 0:
                continue
            people = (await lk.room.list_participants(api.ListParticipantsRequest(room=room.name))).participants
            # Ours only: an avatar or another agent name's agent does not serve the room for us.
            has_agent = any(
                p.kind == api.ParticipantInfo.Kind.AGENT and p.attributes.get(AGENT_NAME_ATTRIBUTE) == self.agent_name
                for p in people
            )
            has_caller = any(p.kind in CALLER_KINDS for p in people)
            if has_agent or not has_caller:
                self._orphaned_since.pop(room.name, None)
                continue
            since = self._orphaned_since.setdefault(room.name, now)
            if now - since >= self.grace:
                orphaned.append(room.name)
        for name in list(self._orphaned_since):
            if name not in {r.name for r in rooms}:
                del self._orphaned_since[name]
        done = []
        for name in orphaned:
            if not await self._wants_us(lk, name):
                continue
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(room=name, agent_name=self.agent_name, metadata='{"redispatched": true}')
            )
            self._orphaned_since[name] = time.monotonic()  # give the new agent its grace period
            self.dispatched.append((time.time(), name))
            JOBS_REDISPATCHED.inc()
            log.warning("room %s had a caller and no agent for %.0fs: dispatched an agent again", name, self.grace)
            done.append(name)
        return done

    async def _wants_us(self, lk: api.LiveKitAPI, room: str) -> bool:
        """Whether ``room`` was dispatched to our agent name, and not within ``cooldown``.

        A room meant for another agent name (a second agent on the same server)
        is not ours to fill; livekit-server lists the automatic dispatch of a new
        room too, under the empty agent name.
        """
        ours = [d for d in await lk.agent_dispatch.list_dispatch(room_name=room) if d.agent_name == self.agent_name]
        if not ours:
            return False
        newest = max(d.state.created_at for d in ours)
        if newest <= 0:
            return True
        created = newest / 1e9 if newest > 1e14 else float(newest)  # nanoseconds, or seconds
        return time.time() - created >= self.cooldown
