"""Declarative tools: HTTP calls against a real local HTTP server, and MCP
tools through a real MCP server process (tests/data/mcp_server.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.errors import ConfigError
from agent.tools import CallContext, McpConnections, ToolRegistry
from agent.tools.declarative import load_tools_file

DATA = Path(__file__).parent / "data"


@pytest.fixture
async def http_service(serve_app: Callable[[web.Application], Awaitable[str]]) -> tuple[str, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def weather(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": dict(request.headers), "query": dict(request.query)})
        return web.json_response({"city": request.match_info["city"], "current": {"summary": "Sunny, 21 C"}})

    async def book(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": dict(request.headers), "body": await request.json()})
        return web.json_response({"booking": {"id": 77}}, status=201)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="database unavailable")

    app = web.Application()
    app.router.add_get("/weather/{city}", weather)
    app.router.add_post("/book", book)
    app.router.add_get("/slow", slow)
    app.router.add_get("/broken", broken)
    return await serve_app(app), seen


def write_tools(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "tools.yaml"
    path.write_text(f"""
tools:
  - name: get_weather
    description: Current weather in a city
    parameters: {{type: object, required: [city], properties: {{city: {{type: string}}}}}}
    timeout: 2
    http:
      url: "{base}/weather/{{city}}"
      headers: {{Authorization: "Bearer ${{WEATHER_TOKEN}}"}}
    result: current.summary
  - name: book_table
    description: Book a table
    side_effects: true
    parameters: {{type: object, required: [people], properties: {{people: {{type: integer}}, name: {{type: string}}}}}}
    http:
      method: POST
      url: "{base}/book"
      body: {{people: "{{people}}", note: "for {{name}}"}}
    result: booking.id
  - name: slow_thing
    description: Never answers in time
    timeout: 0.3
    http: {{url: "{base}/slow"}}
  - name: broken_thing
    description: Always fails
    http: {{url: "{base}/broken"}}
""")
    return path


async def test_http_tool_fills_the_url_sends_the_secret_and_extracts_the_result(http_service: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    base, seen = http_service
    loaded = load_tools_file(write_tools(tmp_path, base), {"WEATHER_TOKEN": "s3cret"})
    registry = ToolRegistry(loaded.tools)
    outcome = await registry.execute("get_weather", {"city": "São Paulo"}, CallContext("c1"))
    assert outcome.output == "Sunny, 21 C" and not outcome.is_error
    assert seen[0]["path"] == "/weather/São Paulo"  # URL-encoded on the wire, decoded by the server
    assert seen[0]["headers"]["Authorization"] == "Bearer s3cret"
    assert seen[0]["headers"]["Idempotency-Key"] == "c1"


async def test_http_tool_body_template_keeps_types(http_service: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    base, seen = http_service
    registry = ToolRegistry(load_tools_file(write_tools(tmp_path, base), {"WEATHER_TOKEN": "x"}).tools)
    outcome = await registry.execute("book_table", {"people": 4, "name": "Ann"}, CallContext("c2"))
    assert outcome.output == "77"
    assert seen[-1]["body"] == {"people": 4, "note": "for Ann"}


async def test_http_tool_timeout_and_500_become_error_outputs(http_service: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    base, _ = http_service
    registry = ToolRegistry(load_tools_file(write_tools(tmp_path, base), {"WEATHER_TOKEN": "x"}).tools)
    slow = await registry.execute("slow_thing", {}, CallContext("c3"))
    assert slow.is_error and "did not answer within 0.3 seconds" in slow.output
    broken = await registry.execute("broken_thing", {}, CallContext("c4"))
    assert broken.is_error and "HTTP 500" in broken.output and "database unavailable" in broken.output


def test_a_missing_secret_fails_the_load_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WEATHER_TOKEN is not set"):
        load_tools_file(write_tools(tmp_path, "http://127.0.0.1:1"), {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tools: [{name: 'bad name!', http: {url: x}}]", "`name` must be"),
        ("tools: [{name: ok}]", "needs `http:` with a `url`"),
        ("tools: [{name: ok, http: {url: x, method: FETCH}}]", "method 'FETCH'"),
        ("mcp_servers: [{name: m}]", "either `command`"),
        ("tools: [unclosed", "not valid YAML"),
    ],
)
def test_config_errors_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_tools_file(path, {})


def test_toml_works_too(tmp_path: Path) -> None:
    path = tmp_path / "tools.toml"
    path.write_text('[[tools]]\nname = "ping"\ndescription = "Ping"\n[tools.http]\nurl = "http://127.0.0.1:1/ping"\n')
    (tool,) = load_tools_file(path, {}).tools
    assert tool.name == "ping" and tool.source == "http"


async def test_mcp_tool_through_a_real_mcp_server_process(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(f"mcp_servers:\n  - name: loyalty\n    command: {sys.executable}\n    args: ['{DATA / 'mcp_server.py'}']\n")
    connections = McpConnections(load_tools_file(path, {}).mcp_servers)
    try:
        tools = await connections.open()
        assert [t.name for t in tools] == ["loyalty_points"]
        assert tools[0].source == "mcp:loyalty"
        assert tools[0].parameters["required"] == ["customer_id"]
        registry = ToolRegistry(tools)
        ok = await registry.execute("loyalty_points", {"customer_id": "C-1001"}, CallContext("m1"))
        assert "has 120 points" in ok.output and not ok.is_error
        bad = await registry.execute("loyalty_points", {"customer_id": "C-9"}, CallContext("m2"))
        assert bad.is_error and "unknown customer C-9" in bad.output
        invalid = await registry.execute("loyalty_points", {}, CallContext("m3"))
        assert invalid.is_error and "'customer_id' is a required property" in invalid.output
    finally:
        await connections.aclose()


async def test_an_mcp_server_that_cannot_start_costs_only_its_tools(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text("mcp_servers:\n  - name: ghost\n    command: /nonexistent/mcp-server\n    timeout: 3\n")
    connections = McpConnections(load_tools_file(path, {}).mcp_servers)
    try:
        assert await connections.open() == []
    finally:
        await connections.aclose()
