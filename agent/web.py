"""The callers' web page, served with LiveKit's standard token endpoint: ``python -m agent web``.

Serves ``web/page`` (the page and its style), the page's script bundled by
esbuild into ``web/dist`` at set-up (``scripts/setup.sh`` runs ``npm ci`` and
``npm run build`` in ``web/``; nothing comes from a CDN at run time) and
``POST /token`` (agent/token_endpoint.py; what callers may choose is set by
``AGENT_TOKEN_*``). It binds to loopback unless AGENT_WEB_HOST says otherwise:
put a deployment's own login in front of it, or set AGENT_TOKEN_SECRET.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from livekit import api

from .config import Settings
from .errors import SetupError
from .token_endpoint import TokenPolicy, add_routes

log = logging.getLogger("agent.web")

ROOT = Path(__file__).resolve().parents[1] / "web"
PAGE_DIR = ROOT / "page"
BUNDLE = ROOT / "dist" / "app.js"
MISSING_BUNDLE = "run scripts/setup.sh (it runs npm ci and npm run build in web/)"


def join_token(
    api_key: str, api_secret: str, room: str, identity: str, *,
    ttl_s: int = 6 * 3600, name: str = "", agent_name: str | None = None,
) -> str:  # fmt: skip
    """A token that lets ``identity`` join ``room`` (publish, subscribe, data) for
    ``ttl_s``; with ``agent_name`` the server also dispatches that agent to the room."""
    token = api.AccessToken(api_key, api_secret).with_identity(identity)
    if name:
        token = token.with_name(name)
    if agent_name is not None:
        token = token.with_room_config(api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=agent_name)]))
    return token.with_ttl(datetime.timedelta(seconds=ttl_s)).with_grants(api.VideoGrants(room_join=True, room=room)).to_jwt()


def make_app(policy: TokenPolicy) -> web.Application:
    def static(path: Path, content_type: str | None = None) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            if not await asyncio.to_thread(path.is_file):
                raise web.HTTPServiceUnavailable(text=f"{path} is missing: {MISSING_BUNDLE}")
            headers = {"Cache-Control": "no-store"}
            if content_type:
                headers["Content-Type"] = content_type
            return web.FileResponse(path, headers=headers)

        return handler

    app = web.Application()
    app.add_routes([
        web.get("/", static(PAGE_DIR / "index.html")),
        web.get("/style.css", static(PAGE_DIR / "style.css", "text/css")),
        web.get("/app.js", static(BUNDLE, "text/javascript")),
        web.get("/app.js.map", static(BUNDLE.with_suffix(".js.map"), "application/json")),
    ])  # fmt: skip
    add_routes(app, policy)
    return app


def run(settings: Settings) -> None:
    key, secret = settings.require_livekit_credentials()
    policy = settings.token_policy(key, secret)
    if not BUNDLE.is_file():
        raise SetupError(f"{BUNDLE} is missing", hint=MISSING_BUNDLE)
    app = make_app(policy)
    print(f"[web] the callers' page: http://{settings.web_host}:{settings.web_port}/?room=demo", flush=True)
    print(f"[web] LiveKit's token endpoint: POST http://{settings.web_host}:{settings.web_port}/token", flush=True)
    web.run_app(app, host=settings.web_host, port=settings.web_port, print=None, access_log=None)
