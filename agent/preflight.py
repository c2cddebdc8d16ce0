"""The worker's preflight: the common mistakes (wrong secret, server down,
backend down) end in one clear line instead of the framework's retry loop
of tracebacks.

Kept apart from :mod:`agent.worker` on purpose: it needs livekit-api and
aiohttp only, not livekit-agents, so ``python -m agent start`` says what is
wrong after about 0.6 s of CPU instead of 4 s of imports.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from urllib.parse import urlparse

import aiohttp
from livekit import api

from .config import Settings
from .errors import AgentError, LiveKitAuthError, LiveKitUnavailable, RealtimeUnavailable

log = logging.getLogger("agent.preflight")


def _http_url(ws_url: str) -> str:
    parsed = urlparse(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parsed.scheme, parsed.scheme)
    return parsed._replace(scheme=scheme).geturl()


async def check_livekit(settings: Settings) -> None:
    """Reach livekit-server and prove our key/secret with one API call."""
    key, secret = settings.require_livekit_credentials()
    lk = api.LiveKitAPI(_http_url(settings.livekit_url), key, secret, timeout=aiohttp.ClientTimeout(total=5))
    try:
        await lk.room.list_rooms(api.ListRoomsRequest())
    except api.TwirpError as e:
        if e.status in (401, 403):
            raise LiveKitAuthError.refused(settings.livekit_url, key, e.message) from None
        raise LiveKitUnavailable(f"livekit-server at {settings.livekit_url} answered {e.status}: {e.message}") from None
    except Exception as e:  # aiohttp raises several unrelated types for "cannot connect"
        raise LiveKitUnavailable(
            f"cannot reach livekit-server at {settings.livekit_url}: {type(e).__name__}: {e}",
            hint="is it running? start everything with scripts/run.sh",
        ) from None
    finally:
        await lk.aclose()


def check_backend(settings: Settings) -> None:
    """A TCP connect to the realtime backend: enough to tell 'down' from 'up'."""
    parsed = urlparse(settings.backend_base_url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (443 if parsed.scheme in ("https", "wss") else 80)
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as e:
        which = "OpenAI" if settings.uses_openai else "the local realtime server"
        raise RealtimeUnavailable(
            f"cannot reach {which} at {settings.backend_base_url}: {e.strerror or e}",
            hint="start it with `python -m agent realtime-server`, or set AGENT_REALTIME_BASE_URL"
            if not settings.uses_openai
            else "check the network and OPENAI_API_KEY",
        ) from None


async def preflight(settings: Settings) -> None:
    """Retry what can be retried (an error whose ``retryable`` is set) until
    ``preflight_timeout``, then raise the last error; raise the others at once."""
    deadline = time.monotonic() + settings.preflight_timeout
    for check in (check_livekit, check_backend):
        delay = 0.25
        while True:
            try:
                if asyncio.iscoroutinefunction(check):
                    await check(settings)
                else:
                    await asyncio.to_thread(check, settings)
                break
            except AgentError as e:
                if not e.retryable or time.monotonic() + delay > deadline:
                    raise
                log.debug("preflight: %s; retrying in %.2fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
