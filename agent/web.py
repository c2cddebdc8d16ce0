"""The callers' web page, served with a token endpoint: ``python -m agent web``.

Serves ``web/page`` (the page and its script), livekit-client's browser
bundle from ``web/node_modules`` (``scripts/setup.sh`` installs it with npm)
and ``GET /token?room=NAME``, which mints a join token for a new caller
identity. Anyone who can reach the page can join any room, so it binds to
loopback unless AGENT_WEB_HOST says otherwise: it is the local stack's page,
not a production front door (that mints tokens behind its own login).
"""

from __future__ import annotations

import datetime
import logging
import re
import uuid
from pathlib import Path

from aiohttp import web
from livekit import api

from .config import Settings
from .errors import SetupError

log = logging.getLogger("agent.web")

ROOT = Path(__file__).resolve().parents[1] / "web"
PAGE_DIR = ROOT / "page"
CLIENT_BUNDLE = ROOT / "node_modules" / "livekit-client" / "dist" / "livekit-client.umd.js"
ROOM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN_TTL_S = 2 * 3600


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


def make_app(livekit_url: str, api_key: str, api_secret: str) -> web.Application:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def script(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PAGE_DIR / "app.js", headers={"Cache-Control": "no-store"})

    async def client_bundle(request: web.Request) -> web.StreamResponse:
        if not CLIENT_BUNDLE.is_file():
            raise web.HTTPServiceUnavailable(text=f"{CLIENT_BUNDLE} is missing: run scripts/setup.sh (it runs npm ci in web/)")
        return web.FileResponse(CLIENT_BUNDLE)

    async def token(request: web.Request) -> web.Response:
        room = request.query.get("room", "demo")
        if not ROOM_NAME.match(room):
            raise web.HTTPBadRequest(text="room: 1 to 64 letters, digits, '-' or '_'")
        identity = f"web-{uuid.uuid4().hex[:8]}"
        jwt = join_token(api_key, api_secret, room, identity, ttl_s=TOKEN_TTL_S, name="web caller")
        log.info("token for %s in room %s", identity, room)
        return web.json_response({"url": livekit_url, "token": jwt, "room": room, "identity": identity})

    app = web.Application()
    app.add_routes([
        web.get("/", page),
        web.get("/app.js", script),
        web.get("/livekit-client.js", client_bundle),
        web.get("/token", token),
    ])  # fmt: skip
    return app


def run(settings: Settings) -> None:
    key, secret = settings.require_livekit_credentials()
    if not CLIENT_BUNDLE.is_file():
        raise SetupError(f"{CLIENT_BUNDLE} is missing", hint="run scripts/setup.sh (it runs npm ci in web/)")
    app = make_app(settings.livekit_url, key, secret)
    print(f"[web] the callers' page: http://{settings.web_host}:{settings.web_port}/?room=demo", flush=True)
    web.run_app(app, host=settings.web_host, port=settings.web_port, print=None, access_log=None)
