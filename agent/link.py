"""The worker's link to the realtime backend, made to notice a hang and to say so.

livekit-agents reconnects the realtime WebSocket when it *closes*. A backend
that hangs (a stopped process, a stuck proxy, a half-open TCP connection)
closes nothing: the socket stays open and the caller hears silence forever.
Two pieces fix that:

* :class:`HeartbeatSession` -- the HTTP session the plugin opens its
  WebSocket with pings the backend every ``heartbeat_s`` seconds; a pong that
  does not come within half that turns the hang into a closed connection,
  which the plugin then reconnects (with backoff, replaying the context).
* :class:`ReconnectNotice` -- while the link is down for longer than a moment,
  the caller hears a short spoken notice (made locally with espeak-ng, since
  the backend is what is missing) instead of silence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
from livekit import rtc
from livekit.agents import AgentSession, APIConnectionError, APIStatusError

from .errors import SpeechError
from .sound import REALTIME_RATE as SAMPLE_RATE
from .sound.espeak import Synthesizer

log = logging.getLogger("agent.link")

_FRAME = SAMPLE_RATE // 50  # 20 ms


class HeartbeatSession:
    """The HTTP session handed to the realtime plugin: an aiohttp ``ClientSession``
    whose WebSockets ping every ``heartbeat_s`` seconds (0: never).

    The plugin only calls ``ws_connect(url=..., headers=...)``; a heartbeat must
    be asked for there (aiohttp wires pong tracking in ``ws_connect``), so this
    wrapper adds it to each call rather than subclassing ``ClientSession``,
    which aiohttp discourages.
    """

    def __init__(self, heartbeat_s: float) -> None:
        self._http = aiohttp.ClientSession()
        self._heartbeat = heartbeat_s if heartbeat_s > 0 else None

    def ws_connect(self, url: str, **kwargs: Any) -> Any:
        if kwargs.get("heartbeat") is None:
            kwargs["heartbeat"] = self._heartbeat
        return self._http.ws_connect(url, **kwargs)

    @property
    def closed(self) -> bool:
        return self._http.closed

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> HeartbeatSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ReconnectNotice:
    """Speaks ``text`` once per outage of the realtime link that lasts ``after_s``.

    Fed by the realtime session's events: a recoverable connection ``error``
    (the plugin lost the connection, or failed to open one, and is retrying)
    starts an outage, ``session_reconnected`` ends it. An error *event* from a
    backend that is up (a rejected item, say) is no outage: taking it for one
    would interrupt a reply that is playing and announce a reconnect that never
    comes. The notice is synthesized while the outage's first ``after_s`` run
    (most calls never have one, so no call pays for it at start); it interrupts
    a reply stalled by the outage and is not added to the conversation.
    """

    def __init__(self, session: AgentSession[Any], text: str, after_s: float) -> None:
        self._session = session
        self._text = text
        self._after_s = after_s
        self._pcm: np.ndarray | None = None  # kept for later outages of the call
        self._down_since: float | None = None
        self._announce_atask: asyncio.Task[None] | None = None
        self.outages: list[float] = []  # seconds each finished outage lasted
        self.notices = 0

    async def aclose(self) -> None:
        if self._announce_atask is not None:
            self._announce_atask.cancel()
            await asyncio.gather(self._announce_atask, return_exceptions=True)

    # ---- realtime session events -------------------------------------------
    def on_error(self, ev: Any) -> None:
        if not is_link_failure(ev) or self._down_since is not None:
            return
        self._down_since = time.monotonic()
        log.warning("realtime link down (%s); reconnecting", getattr(ev, "error", ev))
        if self._text and self._announce_atask is None:
            self._announce_atask = asyncio.create_task(self._announce(), name="reconnect_notice")

    def on_server_event(self, event: dict[str, Any]) -> None:
        """Any event from the backend. ``session.created`` says a connection is up:
        the plugin emits ``session_reconnected`` only when it *re*connects, so an
        outage that began before the session's first connection ends here (left
        open, it would silence the notice for every later outage of the call)."""
        if event.get("type") == "session.created":
            self.on_reconnected()

    def on_reconnected(self, _ev: object = None) -> None:
        if self._down_since is None:
            return
        outage = time.monotonic() - self._down_since
        self.outages.append(outage)
        log.info("realtime link back after %.2f s", outage)
        self._down_since = None
        if self._announce_atask is not None:
            self._announce_atask.cancel()
            self._announce_atask = None

    async def _announce(self) -> None:
        try:
            pcm, _ = await asyncio.gather(self._notice_pcm(), asyncio.sleep(self._after_s))
        finally:
            self._announce_atask = None
        if self._down_since is None:
            return
        if pcm is None:
            log.warning("realtime link down for %.1f s; no notice to play", time.monotonic() - self._down_since)
            return
        self.notices += 1
        log.info("realtime link down for %.1f s: telling the caller", time.monotonic() - self._down_since)
        self._session.interrupt()  # a reply stalled by the outage stops here
        self._session.say(self._text, audio=_frames(pcm), add_to_chat_ctx=False)

    async def _notice_pcm(self) -> np.ndarray | None:
        if self._pcm is None:
            synth = Synthesizer()
            try:
                self._pcm = await synth.synthesize(self._text)
            except SpeechError as e:
                log.warning("no spoken reconnect notice: %s", e)
            finally:
                await synth.aclose()
        return self._pcm


def is_link_failure(ev: Any) -> bool:
    """A realtime ``error`` event saying the connection is lost and being retried."""
    return bool(getattr(ev, "recoverable", False)) and isinstance(getattr(ev, "error", None), (APIConnectionError, APIStatusError))


async def _frames(pcm: np.ndarray) -> AsyncIterator[rtc.AudioFrame]:
    for start in range(0, len(pcm), _FRAME):
        chunk = pcm[start : start + _FRAME]
        if len(chunk) < _FRAME:
            chunk = np.concatenate([chunk, np.zeros(_FRAME - len(chunk), dtype=np.int16)])
        yield rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, _FRAME)
