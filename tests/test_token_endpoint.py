"""LiveKit's standard token endpoint (agent/token_endpoint.py): the schema every
client SDK's ``TokenSource.endpoint`` speaks, the deployment's policy of what a
caller may choose, the shared secret and CORS. Tokens are decoded and checked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from livekit import api

from agent.config import Settings
from agent.errors import ConfigError
from agent.token_endpoint import DEFAULT_FIELDS, FIELDS, TokenPolicy, add_routes

KEY, SECRET = "devkey", "a-secret-of-thirty-two-characters!"
POLICY = TokenPolicy(server_url="wss://lk.example.com", api_key=KEY, api_secret=SECRET)
VALUES: dict[str, Any] = {
    "room_name": "support-7",
    "participant_identity": "alice",
    "participant_name": "Alice",
    "participant_metadata": '{"plan": "gold"}',
    "participant_attributes": {"language": "en"},
    "room_config": {"agents": [{"agent_name": "", "metadata": '{"topic": "billing"}'}]},
}

Client = Callable[..., Any]


@pytest.fixture
async def client() -> AsyncIterator[Callable[[TokenPolicy], Any]]:
    clients: list[TestClient[Any, Any]] = []

    async def make(policy: TokenPolicy) -> TestClient[Any, Any]:
        app = web.Application()
        add_routes(app, policy)
        c: TestClient[Any, Any] = TestClient(TestServer(app))
        await c.start_server()
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


def claims(token: str) -> api.Claims:
    return api.TokenVerifier(KEY, SECRET).verify(token)


async def test_an_empty_request_gets_a_new_room_and_identity_with_join_grants(client: Any) -> None:
    c = await client(POLICY)
    before = time.time()
    resp = await c.post("/token", json={})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["server_url"] == "wss://lk.example.com"
    got = claims(body["participant_token"])
    assert got.identity.startswith("caller-") and got.identity == body["participant_identity"]
    assert got.video is not None and got.video.room_join and got.video.room == body["room_name"]
    assert body["room_name"].startswith("call-")
    assert got.video.can_publish and got.video.can_subscribe and got.video.can_publish_data
    assert not got.video.room_admin and not got.video.room_create
    raw = jwt.decode(body["participant_token"], options={"verify_signature": False})
    assert before + POLICY.ttl_s - 5 <= raw["exp"] <= time.time() + POLICY.ttl_s + 5
    assert got.room_config is None  # an unnamed agent joins every room by itself
    assert SECRET not in await resp.text()
    # Two callers never share a room or an identity by default.
    other = await (await c.post("/token", json={})).json()
    assert other["room_name"] != body["room_name"] and other["participant_identity"] != body["participant_identity"]


async def test_an_empty_body_without_content_type_is_an_empty_request(client: Any) -> None:
    c = await client(POLICY)
    resp = await c.post("/token")
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("name", FIELDS)
async def test_each_field_is_refused_with_403_unless_allowed_and_then_in_the_token(client: Any, name: str) -> None:
    refused = await client(replace(POLICY, fields=frozenset(FIELDS) - {name}))
    resp = await refused.post("/token", json={name: VALUES[name]})
    assert resp.status == 403
    assert name in (await resp.json())["error"]

    allowed = await client(replace(POLICY, fields=frozenset({name})))
    resp = await allowed.post("/token", json={name: VALUES[name]})
    assert resp.status == 201, await resp.text()
    got = claims((await resp.json())["participant_token"])
    assert got.video is not None
    seen = {
        "room_name": got.video.room,
        "participant_identity": got.identity,
        "participant_name": got.name,
        "participant_metadata": got.metadata,
        "participant_attributes": got.attributes,
        "room_config": got.room_config and [{"agent_name": a.agent_name, "metadata": a.metadata} for a in got.room_config.agents],
    }[name]
    expected = VALUES[name]["agents"] if name == "room_config" else VALUES[name]
    assert seen == expected


def test_by_default_callers_choose_the_room_their_name_and_the_dispatch_only() -> None:
    assert DEFAULT_FIELDS == {"room_name", "participant_name", "room_config"}


async def test_a_named_agent_is_dispatched_and_no_other_agent_can_be(client: Any) -> None:
    c = await client(replace(POLICY, agent_name="support"))
    got = claims((await (await c.post("/token", json={})).json())["participant_token"])
    assert got.room_config is not None and [a.agent_name for a in got.room_config.agents] == ["support"]
    # the client SDKs put the agent's name and metadata into room_config (camelCase accepted too)
    body = {"room_config": {"agents": [{"agentName": "support", "metadata": "vip"}]}}
    got = claims((await (await c.post("/token", json=body)).json())["participant_token"])
    assert got.room_config is not None and [(a.agent_name, a.metadata) for a in got.room_config.agents] == [("support", "vip")]
    resp = await c.post("/token", json={"room_config": {"agents": [{"agent_name": "billing-bot"}]}})
    assert resp.status == 403 and "billing-bot" in (await resp.json())["error"]


@pytest.mark.parametrize(
    "room_config, status, words",
    [
        ({"empty_timeout": 86400}, 403, "empty_timeout"),
        ({"agents": [{"agent_name": ""}], "max_participants": 500}, 403, "max_participants"),
        ({"agents": "support"}, 400, "RoomConfiguration"),
        ({"no_such_field": 1}, 400, "RoomConfiguration"),
        ("support", 400, "JSON object"),
    ],
)
async def test_room_config_may_only_dispatch_the_agent(client: Any, room_config: Any, status: int, words: str) -> None:
    c = await client(POLICY)
    resp = await c.post("/token", json={"room_config": room_config})
    assert resp.status == status
    assert words in (await resp.json())["error"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"room_name": "../etc"}, "room_name"),
        ({"room_name": 7}, "room_name must be a string"),
        ({"participant_name": "x" * 129}, "at most 128"),
        ({"participant_name": "bell\x07"}, "control characters"),
        ({"participant_attributes": ["language", "en"]}, "object of strings"),
        ({"participant_attributes": {"n": 1}}, "object of strings"),
        ({"room": "lobby"}, "unknown field"),
    ],
)
async def test_malformed_fields_get_400_and_the_reason(client: Any, body: dict[str, Any], words: str) -> None:
    c = await client(replace(POLICY, fields=frozenset(FIELDS)))
    resp = await c.post("/token", json=body)
    assert resp.status == 400
    assert words in (await resp.json())["error"]


async def test_reserved_attributes_cannot_be_set(client: Any) -> None:
    c = await client(replace(POLICY, fields=frozenset(FIELDS)))
    for key in ("lk.agent.state", "sip.phoneNumber", "agent.escalated"):
        resp = await c.post("/token", json={"participant_attributes": {key: "x"}})
        assert resp.status == 403 and key in (await resp.json())["error"]


async def test_bad_json_wrong_type_and_wrong_content_type(client: Any) -> None:
    c = await client(POLICY)
    resp = await c.post("/token", data=b"{room_name: 1", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "not JSON" in (await resp.json())["error"]
    resp = await c.post("/token", json=["room_name", "x"])
    assert resp.status == 400 and "JSON object" in (await resp.json())["error"]
    resp = await c.post("/token", data=b"room_name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415
    resp = await c.post("/token", data=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/json"})
    assert resp.status == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_get_405_and_what_to_use(client: Any, method: str) -> None:
    c = await client(POLICY)
    resp = await c.request(method, "/token")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST, OPTIONS"
    assert "POST" in (await resp.json())["error"]


async def test_a_shared_secret_is_required_when_set(client: Any) -> None:
    c = await client(replace(POLICY, shared_secret="open-sesame"))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic open-sesame"}):
        resp = await c.post("/token", json={}, headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "AGENT_TOKEN_SECRET" in (await resp.json())["error"]
    resp = await c.post("/token", json={}, headers={"Authorization": "Bearer open-sesame"})
    assert resp.status == 201


async def test_cors_preflight_and_requests_from_allowed_and_other_origins(client: Any) -> None:
    c = await client(replace(POLICY, cors_origins=frozenset({"https://app.example.com"})))
    pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    resp = await c.options("/token", headers=pre)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"] and "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    resp = await c.post("/token", json={}, headers={"Origin": "https://app.example.com"})
    assert resp.status == 201 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"

    resp = await c.options("/token", headers={**pre, "Origin": "https://evil.example.net"})
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    resp = await c.post("/token", json={}, headers={"Origin": "https://evil.example.net"})
    assert resp.status == 403 and "evil.example.net" in (await resp.json())["error"]
    # the page's own origin needs no CORS
    own = f"http://{c.server.host}:{c.server.port}"
    resp = await c.post("/token", json={}, headers={"Origin": own})
    assert resp.status == 201 and "Access-Control-Allow-Origin" not in resp.headers


async def test_any_origin_when_the_list_says_star(client: Any) -> None:
    c = await client(replace(POLICY, cors_origins=frozenset({"*"})))
    resp = await c.post("/token", json={}, headers={"Origin": "https://anywhere.example"})
    assert resp.status == 201 and resp.headers["Access-Control-Allow-Origin"] == "https://anywhere.example"


def test_the_settings_make_the_policy_and_refuse_bad_values() -> None:
    base = Settings(livekit_api_key=KEY, livekit_api_secret=SECRET, agent_name="support")
    policy = replace(base, token_fields="room_name", token_cors_origins="https://a.example, http://b.example:8080",
                     token_ttl_s=600, token_secret="s", token_server_url="wss://public.example").token_policy(KEY, SECRET)  # fmt: skip
    assert policy.fields == {"room_name"} and policy.ttl_s == 600 and policy.shared_secret == "s"
    assert policy.cors_origins == {"https://a.example", "http://b.example:8080"}
    assert policy.server_url == "wss://public.example" and policy.agent_name == "support"
    assert base.token_policy(KEY, SECRET).server_url == base.livekit_url
    for bad, words in [
        (replace(base, token_fields="room_name,identity"), "AGENT_TOKEN_FIELDS"),
        (replace(base, token_cors_origins="app.example.com"), "AGENT_TOKEN_CORS_ORIGINS"),
        (replace(base, token_ttl_s=10), "AGENT_TOKEN_TTL_S"),
        (replace(base, token_server_url="lk.example.com"), "AGENT_TOKEN_SERVER_URL"),
    ]:
        with pytest.raises(ConfigError, match=words):
            bad.token_policy(KEY, SECRET)
