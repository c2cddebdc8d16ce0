"""The realtime link: a heartbeat that turns a hung backend into a closed
connection, and the spoken notice while the link is down."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from livekit.agents import APIConnectionError, APIError

from agent.link import HeartbeatSession, ReconnectNotice


async def _silent_ws_server(serve_app: Any, *, answers_pings: bool = False) -> str:
    """A WebSocket endpoint that accepts and then never sends anything (pongs only if asked)."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=answers_pings)
        await ws.prepare(request)
        async for _ in ws:  # pings are read, never answered; ends when the client goes
            pass
        return ws

    app = web.Application()
    app.router.add_get("/v1/realtime", handler)
    return (await serve_app(app)).replace("http://", "ws://") + "/v1/realtime"


async def test_heartbeat_closes_a_connection_to_a_hung_peer(serve_app: Any) -> None:
    url = await _silent_ws_server(serve_app)
    async with HeartbeatSession(0.2) as http:
        ws = await http.ws_connect(url)  # no heartbeat asked for, as the plugin does
        async with asyncio.timeout(2.0):
            kinds = []
            while not kinds or kinds[-1] not in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE):
                kinds.append((await ws.receive()).type)
        assert ws.closed


async def test_heartbeat_keeps_a_quiet_but_healthy_connection(serve_app: Any) -> None:
    url = await _silent_ws_server(serve_app, answers_pings=True)
    async with HeartbeatSession(0.2) as http:
        ws = await http.ws_connect(url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):  # seven pings answered, nothing else comes
                await ws.receive()
        assert not ws.closed
        await ws.close()


async def test_without_heartbeat_a_hung_peer_is_never_noticed(serve_app: Any) -> None:
    url = await _silent_ws_server(serve_app)
    async with HeartbeatSession(0) as http:
        ws = await http.ws_connect(url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await ws.receive()
        await ws.close()


class _Session:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def interrupt(self) -> None:
        self.calls.append("interrupt")

    def say(self, text: str, **kwargs: Any) -> None:
        self.calls.append(f"say:{text}")


def _notice(after_s: float) -> tuple[ReconnectNotice, _Session]:
    session = _Session()
    return ReconnectNotice(session, "One moment, please.", after_s), session  # type: ignore[arg-type]


async def test_one_notice_per_outage_that_lasts() -> None:
    notice, session = _notice(0.1)
    down = SimpleNamespace(recoverable=True, error=APIConnectionError("connection closed"))
    notice.on_error(down)
    announce = notice._announce_atask
    notice.on_error(down)  # the retries of one outage
    assert announce is not None and notice._announce_atask is announce
    await announce  # the notice is made (espeak-ng) while the outage lasts
    notice.on_reconnected()
    assert session.calls == ["interrupt", "say:One moment, please."]
    assert len(notice.outages) == 1 and notice.outages[0] >= 0.1
    await notice.aclose()


async def test_a_short_outage_or_a_fatal_error_says_nothing() -> None:
    notice, session = _notice(0.2)
    notice.on_error(SimpleNamespace(recoverable=True, error=APIConnectionError("blip")))
    await asyncio.sleep(0.05)
    notice.on_reconnected()
    notice.on_error(SimpleNamespace(recoverable=False, error=APIConnectionError("retries exhausted")))
    await asyncio.sleep(0.3)
    assert session.calls == []
    assert notice.notices == 0
    await notice.aclose()


async def test_an_error_event_from_a_backend_that_is_up_is_no_outage() -> None:
    """A rejected item (a replayed id that already exists, say) arrives as a
    recoverable error event; taking it for an outage interrupted the reply."""
    notice, session = _notice(0.05)
    notice.on_error(SimpleNamespace(recoverable=True, error=APIError("OpenAI Realtime API returned an error", body={}, retryable=True)))
    assert notice._announce_atask is None
    await asyncio.sleep(0.15)
    assert session.calls == [] and notice.outages == []
    # ...and a real outage after it is still announced.
    notice.on_error(SimpleNamespace(recoverable=True, error=APIConnectionError("connection closed")))
    assert notice._announce_atask is not None
    await notice._announce_atask
    assert session.calls == ["interrupt", "say:One moment, please."]
    await notice.aclose()


async def test_an_outage_before_the_first_connection_ends_when_the_session_is_created() -> None:
    """The backend was down as the call started: the plugin never emits
    session_reconnected for its first connection, so session.created ends that
    outage, and the next outage of the call is announced again."""
    notice, session = _notice(0.05)
    down = SimpleNamespace(recoverable=True, error=APIConnectionError("connection timed out"))
    notice.on_error(down)
    assert notice._announce_atask is not None
    await notice._announce_atask
    notice.on_server_event({"type": "rate_limits.updated"})  # not a new connection
    assert notice.outages == []
    notice.on_server_event({"type": "session.created", "session": {}})
    assert len(notice.outages) == 1
    notice.on_error(down)
    assert notice._announce_atask is not None
    await notice._announce_atask
    assert session.calls == ["interrupt", "say:One moment, please."] * 2
    await notice.aclose()
