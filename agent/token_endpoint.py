"""LiveKit's standard token endpoint: ``POST /token``.

The schema is LiveKit's "endpoint token generation" (the one every client
SDK's ``TokenSource.endpoint`` speaks): a JSON body of optional
``room_name``, ``participant_identity``, ``participant_name``,
``participant_metadata``, ``participant_attributes`` and ``room_config``,
answered ``201`` with ``{"server_url", "participant_token"}`` (and, for
clients that show them, the room name and identity the token carries).

What a caller may choose is the deployment's policy (:class:`TokenPolicy`,
from ``AGENT_TOKEN_*``): a field not on the list is refused with ``403`` and
the reason, a malformed one with ``400``. By default a caller may pick the
room, a display name and the agent dispatch (only of this deployment's
agent); the server picks the identity (a caller who could choose one could
take over another caller's seat, since LiveKit disconnects the older of two
participants with one identity). The API secret never leaves the server.
"""

from __future__ import annotations

import datetime
import hmac
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from livekit import api

log = logging.getLogger("agent.token")

FIELDS = (
    "room_name",
    "participant_identity",
    "participant_name",
    "participant_metadata",
    "participant_attributes",
    "room_config",
)
DEFAULT_FIELDS = frozenset({"room_name", "participant_name", "room_config"})
ROOM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BODY = 64 * 1024
MAX_TEXT = {"participant_identity": 128, "participant_name": 128, "participant_metadata": 4096}
MAX_ATTRIBUTES = 32
# Attribute prefixes LiveKit and livekit-agents give meaning to: a caller who
# set them could pose as an agent (lk.agent.state) or a phone line (sip.*).
RESERVED_ATTRIBUTE_PREFIXES = ("lk.", "sip.", "agent.")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Refused(Exception):
    """A request the endpoint answers with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_fields(raw: str) -> frozenset[str]:
    """``AGENT_TOKEN_FIELDS``: a comma list of the schema's fields; "" allows none."""
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; the schema has {', '.join(FIELDS)}")
    return names


def parse_origins(raw: str) -> frozenset[str]:
    """``AGENT_TOKEN_CORS_ORIGINS``: a comma list of origins (scheme://host[:port]), or ``*``."""
    origins = frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or *)")
    return origins


@dataclass(frozen=True)
class TokenPolicy:
    """What the endpoint lets callers choose, and how it signs their tokens."""

    server_url: str
    api_key: str
    api_secret: str = field(repr=False)
    fields: frozenset[str] = DEFAULT_FIELDS
    agent_name: str = ""  # this deployment's agent: the only one a caller may dispatch
    cors_origins: frozenset[str] = frozenset()
    ttl_s: int = 900
    shared_secret: str | None = field(default=None, repr=False)
    default_room: str | None = None  # unset: a new room per request

    # ------------------------------------------------------------ the request

    def grant(self, body: Mapping[str, Any]) -> dict[str, str]:
        """Validate one request body; the response body (raises :class:`Refused`)."""
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise Refused(400, f"unknown field(s) {', '.join(unknown)}; the schema has {', '.join(FIELDS)}")
        given = {k: v for k, v in body.items() if v is not None}
        refused = sorted(set(given) - self.fields)
        if refused:
            raise Refused(403, f"{', '.join(refused)} may not be set by callers here (allowed: {', '.join(sorted(self.fields)) or 'none'})")
        room = _text(given, "room_name") or self.default_room or f"call-{uuid.uuid4().hex[:10]}"
        if not ROOM_NAME.match(room):
            raise Refused(400, "room_name: 1 to 64 letters, digits, '-' or '_'")
        identity = _text(given, "participant_identity") or f"caller-{uuid.uuid4().hex[:10]}"
        name = _text(given, "participant_name")
        metadata = _text(given, "participant_metadata")
        attributes = _attributes(given.get("participant_attributes"))
        config = self._room_config(given.get("room_config"))

        token = api.AccessToken(self.api_key, self.api_secret).with_identity(identity)
        if name:
            token = token.with_name(name)
        if metadata:
            token = token.with_metadata(metadata)
        if attributes:
            token = token.with_attributes(attributes)
        if config is not None:
            token = token.with_room_config(config)
        grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True)
        jwt = token.with_ttl(datetime.timedelta(seconds=self.ttl_s)).with_grants(grants).to_jwt()
        return {
            "server_url": self.server_url,
            "participant_token": jwt,
            "room_name": room,
            "participant_identity": identity,
            "participant_name": name,
        }

    def _room_config(self, raw: Any) -> api.RoomConfiguration | None:
        """The caller's room configuration, limited to dispatching this deployment's
        agent; without one, a named agent is dispatched (an unnamed one joins every room)."""
        if raw is None:
            if not self.agent_name:
                return None
            return api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=self.agent_name)])
        if not isinstance(raw, dict):
            raise Refused(400, "room_config must be a JSON object (LiveKit's RoomConfiguration)")
        try:
            config = json_format.ParseDict(raw, api.RoomConfiguration())
        except json_format.ParseError as e:
            raise Refused(400, f"room_config is not a RoomConfiguration: {e}") from None
        others = sorted(f.name for f, _ in config.ListFields() if f.name != "agents")
        if others:
            raise Refused(403, f"room_config may only dispatch the agent; {', '.join(others)} may not be set by callers here")
        for dispatch in config.agents:
            if dispatch.agent_name != self.agent_name:
                wanted = repr(self.agent_name) if self.agent_name else "the unnamed agent (\"\")"
                raise Refused(403, f"no agent named {dispatch.agent_name!r} here; this deployment dispatches {wanted}")
            if len(dispatch.metadata) > MAX_TEXT["participant_metadata"]:
                raise Refused(400, f"room_config.agents.metadata: at most {MAX_TEXT['participant_metadata']} characters")
        if not config.agents and self.agent_name:
            config.agents.append(api.RoomAgentDispatch(agent_name=self.agent_name))
        return config

    # ------------------------------------------------------------ CORS, auth

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.cors_origins or origin.rstrip("/") in self.cors_origins

    def check_secret(self, authorization: str | None) -> None:
        if self.shared_secret is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.shared_secret.encode()):
            raise Refused(401, "this endpoint needs the deployment's secret: Authorization: Bearer <AGENT_TOKEN_SECRET>")


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(400, f"{name} must be a string, not {type(value).__name__}")
    limit = MAX_TEXT.get(name)
    if limit is not None and len(value) > limit:
        raise Refused(400, f"{name}: at most {limit} characters")
    if name != "participant_metadata" and CONTROL.search(value):
        raise Refused(400, f"{name} must not contain control characters")
    return value


def _attributes(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise Refused(400, "participant_attributes must be a JSON object of strings")
    if len(raw) > MAX_ATTRIBUTES:
        raise Refused(400, f"participant_attributes: at most {MAX_ATTRIBUTES} attributes")
    reserved = sorted(k for k in raw if k.startswith(RESERVED_ATTRIBUTE_PREFIXES))
    if reserved:
        raise Refused(403, f"participant_attributes: {', '.join(reserved)} are reserved (prefixes {', '.join(RESERVED_ATTRIBUTE_PREFIXES)})")
    return dict(raw)


# ------------------------------------------------------------------ aiohttp

CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "600",
}


def _origin_headers(policy: TokenPolicy, request: web.Request) -> dict[str, str]:
    """CORS headers for a cross-origin request from an allowed origin; raises for another origin."""
    origin = request.headers.get("Origin")
    if origin is None or origin == f"{request.scheme}://{request.host}":
        return {}
    if not policy.allows_origin(origin):
        raise Refused(403, f"origin {origin} is not allowed (AGENT_TOKEN_CORS_ORIGINS)")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _refusal(e: Refused, headers: Mapping[str, str] | None = None) -> web.Response:
    extra = dict(headers or {})
    if e.status == 401:
        extra["WWW-Authenticate"] = 'Bearer realm="token"'
    return web.json_response({"error": e.reason}, status=e.status, headers=extra)


def add_routes(app: web.Application, policy: TokenPolicy, path: str = "/token") -> None:
    """``POST path`` (the schema), ``OPTIONS path`` (CORS preflight); other methods get 405."""

    async def token(request: web.Request) -> web.Response:
        cors: dict[str, str] = {}
        try:
            cors = _origin_headers(policy, request)
            policy.check_secret(request.headers.get("Authorization"))
            if request.content_length is not None and request.content_length > MAX_BODY:
                raise Refused(413, f"the body is larger than {MAX_BODY} bytes")
            raw = await request.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise Refused(413, f"the body is larger than {MAX_BODY} bytes")
            if raw.strip() and request.content_type != "application/json":
                raise Refused(415, f"send Content-Type: application/json, not {request.content_type or 'none'}")
            try:
                body = json.loads(raw) if raw.strip() else {}
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise Refused(400, f"the body is not JSON: {e}") from None
            if not isinstance(body, dict):
                raise Refused(400, "the body must be a JSON object")
            granted = policy.grant(body)
        except Refused as e:
            log.info("token refused (%d): %s", e.status, e.reason)
            return _refusal(e, cors)
        log.info("token for %s in room %s", granted["participant_identity"], granted["room_name"])
        return web.json_response(granted, status=201, headers={**cors, "Cache-Control": "no-store"})

    async def preflight(request: web.Request) -> web.Response:
        try:
            cors = _origin_headers(policy, request)
        except Refused as e:
            return _refusal(e)
        return web.Response(status=204, headers={**cors, **CORS_HEADERS})

    async def other(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": f"{request.method} is not supported: POST a JSON body (LiveKit's endpoint token schema)"},
            status=405,
            headers={"Allow": "POST, OPTIONS"},
        )

    app.router.add_route("POST", path, token)
    app.router.add_route("OPTIONS", path, preflight)
    app.router.add_route("*", path, other)
