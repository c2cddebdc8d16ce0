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

Several workers run it at once (a fleet: every worker of every node sees
every room through the API), and one of them must act per room, not all:

- each waits ``grace`` plus a stagger of its own for the room (a hash of its
  worker id and the room name, up to ``spread`` seconds), so the workers come
  to an orphaned room one after the other rather than together;
- before dispatching, each checks that no dispatch of the room is younger
  than ``cooldown`` seconds (the first worker's dispatch stops the others);
- after dispatching, each lists the room's re-dispatches of the last
  ``cooldown`` seconds, and all but the first created withdraw theirs
  (livekit-server's DeleteDispatch also ends a job it already launched).
  The room's node orders the dispatches, so the workers agree on the first.

:func:`senior_agent` settles what is left: an agent that joins a room where
an agent of the same name joined first leaves before it says a word, so a
room keeps exactly one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
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
    usually finds the earlier. Not always: two agents that joined 7 ms apart
    were each listed to neither (a fresh-clone run, 2026-12-02), so the job
    also asks :func:`outranks` of every agent that joins after it.
    Ties on the join time go to the identity.
    """
    me = _seniority(room.local_participant)
    return next((p for p in agents_of(room, agent_name) if _seniority(p) < me), None)


def outranks(room: rtc.Room, newcomer: rtc.RemoteParticipant, agent_name: str) -> bool:
    """True if ``newcomer``, who just joined ``room``, is an agent of ours that
    joined before us (same agent name, earlier join time or the tie): then we
    are the one to leave."""
    return newcomer in agents_of(room, agent_name) and _seniority(newcomer) < _seniority(room.local_participant)


@dataclass
class Redispatcher:
    url: str
    api_key: str
    api_secret: str
    agent_name: str = ""
    interval: float = 2.0
    grace: float = 3.0
    spread: float = 4.0
    cooldown: float = 10.0
    worker_id: str = field(default_factory=lambda: secrets.token_hex(4))  # names our dispatches in their metadata
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
        if await self._dispatch(lk, room):
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
            if now - since >= self.grace + self.stagger(room.name):
                orphaned.append(room.name)
        for name in list(self._orphaned_since):
            if name not in {r.name for r in rooms}:
                del self._orphaned_since[name]
        done = []
        for name in orphaned:
            if not await self._wants_us(lk, name):
                continue
            if await self._dispatch(lk, name):
                log.warning("room %s had a caller and no agent for %.0fs: dispatched an agent again", name, self.grace)
                done.append(name)
        return done

    def stagger(self, room: str) -> float:
        """This worker's extra wait for ``room``: in [0, spread), fixed per (worker, room)."""
        digest = hashlib.sha256(f"{self.worker_id}/{room}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 * self.spread

    async def _dispatch(self, lk: api.LiveKitAPI, room: str) -> bool:
        """Dispatch an agent to ``room``; withdraw it if another worker's
        re-dispatch was created first (see the module docstring). True if ours stays."""
        self._orphaned_since[room] = time.monotonic()  # give the new agent its grace period
        metadata = json.dumps({"redispatched": True, "by": self.worker_id})
        mine = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room=room, agent_name=self.agent_name, metadata=metadata)
        )
        rivals = [d for d in await lk.agent_dispatch.list_dispatch(room_name=room) if self._recent_redispatch(d)]
        first = min(rivals, key=lambda d: (created_s(d) or float("inf"), d.id), default=mine)
        if first.id != mine.id:
            log.info("room %s: worker %s re-dispatched first; withdrawing ours", room, _dispatcher(first))
            await lk.agent_dispatch.delete_dispatch(mine.id, room)
            return False
        self.dispatched.append((time.time(), room))
        JOBS_REDISPATCHED.inc()
        return True

    def _recent_redispatch(self, d: Any) -> bool:
        created = created_s(d)
        recent = created is None or time.time() - created < self.cooldown
        return d.agent_name == self.agent_name and recent and _dispatcher(d) is not None

    async def _wants_us(self, lk: api.LiveKitAPI, room: str) -> bool:
        """Whether ``room`` was dispatched to our agent name, and not within ``cooldown``.

        A room meant for another agent name (a second agent on the same server)
        is not ours to fill; livekit-server lists the automatic dispatch of a new
        room too, under the empty agent name.
        """
        ours = [d for d in await lk.agent_dispatch.list_dispatch(room_name=room) if d.agent_name == self.agent_name]
        if not ours:
            return False
        created = [t for d in ours if (t := created_s(d)) is not None]
        return not created or time.time() - max(created) >= self.cooldown


def created_s(d: Any) -> float | None:
    """A dispatch's creation time in seconds, None when the server gave none."""
    raw = d.state.created_at
    if raw <= 0:
        return None
    return raw / 1e9 if raw > 1e14 else float(raw)  # nanoseconds, or seconds


def _dispatcher(d: Any) -> str | None:
    """The worker id in a re-dispatch's metadata; None for any other dispatch."""
    try:
        meta = json.loads(d.metadata or "{}")
    except ValueError:
        return None
    by = meta.get("by") if isinstance(meta, dict) and meta.get("redispatched") else None
    return str(by) if by is not None else None
