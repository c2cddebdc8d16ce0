"""Explicit agent dispatches: create, list and delete them through LiveKit's
AgentDispatch API (``livekit-api``), for ``python -m agent dispatch``.

A worker started with ``AGENT_NAME`` set joins only the rooms it is
dispatched to; this is how an operator sends it to one. Every argument is
checked before the first request, so a refused command changes nothing on
the server.

Room names: livekit-server v1.13.5 refuses to let anyone join a room whose
name is empty (``ErrNoRoomName``) or longer than ``limit.max_room_name_length``
bytes (256 by default; ``ErrRoomNameExceedsLimits``, ``pkg/service/utils.go``),
but its ``CreateDispatch`` checks neither and, with ``room.auto_create`` on,
creates the room. A dispatch to such a name would make a room no caller can
ever join, so we refuse it here. The server accepts any other string.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from livekit import api
from livekit.api.agent_dispatch_service import AgentDispatchService

from .errors import BackendError, LiveKitAuthError, LiveKitUnavailable, RequestError

# livekit-server's default ``limit.max_room_name_length`` (pkg/config/config.go),
# counted in bytes: the server compares Go's ``len(name)`` of the UTF-8 string.
MAX_ROOM_NAME_BYTES = 256


def check_room_name(room: str) -> str:
    """``room`` if livekit-server would let callers join it, else :class:`RequestError`."""
    if room == "":
        raise RequestError("the room name is empty", hint="livekit-server lets no one join a room without a name")
    size = len(room.encode("utf-8"))
    if size > MAX_ROOM_NAME_BYTES:
        raise RequestError(
            f"the room name is {size} bytes long, more than livekit-server's {MAX_ROOM_NAME_BYTES}",
            hint="no one could join it (limit.max_room_name_length)",
        )
    return room


def check_metadata(raw: str) -> str:
    """``raw`` if it is JSON (the job receives it as ``ctx.job.metadata``), else :class:`RequestError`."""
    try:
        json.loads(raw)
    except ValueError as e:
        raise RequestError(f"--metadata is not JSON: {e}", hint='for example --metadata \'{"topic": "billing"}\'') from None
    return raw


class DispatchClient:
    """The three AgentDispatch calls, each failing with one error of our tree."""

    def __init__(self, url: str, api_key: str, api_secret: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout = timeout

    async def create(self, room: str, agent_name: str, metadata: str = "") -> api.AgentDispatch:
        request = api.CreateAgentDispatchRequest(room=check_room_name(room), agent_name=agent_name, metadata=check_metadata(metadata) if metadata else "")
        async with self._service() as service:
            return await service.create_dispatch(request)

    async def list(self, room: str) -> list[api.AgentDispatch]:
        check_room_name(room)
        async with self._service(missing=f"livekit-server has no room {room!r}") as service:
            return await service.list_dispatch(room)

    async def delete(self, room: str, dispatch_id: str) -> api.AgentDispatch:
        check_room_name(room)
        if not dispatch_id:
            raise RequestError("the dispatch id is empty", hint="`python -m agent dispatch list --room R` shows the ids")
        async with self._service(missing=f"livekit-server has no room {room!r} with dispatch {dispatch_id!r}") as service:
            return await service.delete_dispatch(dispatch_id, room)

    @asynccontextmanager
    async def _service(self, missing: str | None = None) -> AsyncIterator[AgentDispatchService]:
        """The AgentDispatch service; ``missing`` says what "no response from
        servers" means for this call (see :func:`server_api`)."""
        async with server_api(self.url, self._api_key, self._api_secret, timeout=self._timeout, missing=missing) as lk:
            yield lk.agent_dispatch


@asynccontextmanager
async def server_api(url: str, api_key: str, api_secret: str, *, timeout: float = 5.0, missing: str | None = None) -> AsyncIterator[api.LiveKitAPI]:
    """livekit-api's server client, its failures turned into one error of our tree each."""
    # failover=False: region failover is for LiveKit Cloud; against our own
    # server a transport error must surface at once, not after retries.
    lk = api.LiveKitAPI(url, api_key, api_secret, timeout=aiohttp.ClientTimeout(total=timeout), failover=False)
    try:
        yield lk
    except api.TwirpError as e:
        if e.status in (401, 403):
            raise LiveKitAuthError.refused(url, api_key, e.message) from None
        if missing and e.code == "unavailable" and "no response from servers" in e.message:
            # A room's dispatches live with the room: when no node hosts the
            # room, or the room's node has no such dispatch, livekit-server
            # v1.13.5 finds no one to answer and says so after its 3 s RPC
            # timeout (psrpc ErrNoResponse), for list and delete alike.
            raise BackendError(missing, hint=f"livekit-server answered: {e.message}") from None
        raise BackendError(f"livekit-server at {url} refused the request: {e.code}: {e.message}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise LiveKitUnavailable(
            f"cannot reach livekit-server at {url}: {type(e).__name__}: {e}".rstrip(": "),
            hint="is it running? check LIVEKIT_URL",
        ) from None
    finally:
        await lk.aclose()


def describe(dispatch: api.AgentDispatch) -> str:
    """One line per dispatch, for the command line."""
    jobs = len(dispatch.state.jobs) if dispatch.HasField("state") else 0
    agent = dispatch.agent_name or "(unnamed)"  # for workers with no AGENT_NAME
    return f"{dispatch.id}  room={dispatch.room}  agent={agent}  jobs={jobs}  metadata={dispatch.metadata or '-'}"
