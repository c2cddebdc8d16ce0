"""Tools from a config file (YAML or TOML), for operators who do not write Python.

::

    tools:
      - name: get_weather
        description: Current weather in a city
        parameters:                      # JSON schema of the arguments
          type: object
          required: [city]
          properties: {city: {type: string}}
        side_effects: false              # true: at most once per call id (the ledger)
        timeout: 5                       # seconds
        http:
          method: GET                    # GET | POST | PUT | PATCH | DELETE
          url: "https://api.example.com/weather/{city}"   # {arg} is URL-encoded here
          headers: {Authorization: "Bearer ${WEATHER_TOKEN}"}   # ${VAR}: from the environment
          body: {city: "{city}"}         # JSON template; a string that is exactly "{arg}" keeps the type
        result: current.summary          # dotted path into the JSON answer the model sees (default: all)
    mcp_servers:
      - name: shop
        command: python                  # a local MCP server over stdio...
        args: [shop_server.py]
      - name: remote
        url: https://mcp.example.com/mcp # ...or one over HTTP
        headers: {Authorization: "Bearer ${MCP_TOKEN}"}

Secrets stay in the environment (``${VAR}``); a variable that is not set
fails the load with its name, not a call at run time.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml
from livekit.agents import ToolError

from ..errors import ConfigError
from .registry import DEFAULT_TIMEOUT_S, CallContext, ToolDef

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ARG_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
_MAX_OUTPUT_CHARS = 4000  # what the model is shown of an answer


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT_S
    side_effects: bool = False


@dataclass(frozen=True)
class ToolsFile:
    tools: list[ToolDef]
    mcp_servers: list[McpServerConfig]


def load_tools_file(path: str | Path, environ: dict[str, str] | None = None) -> ToolsFile:
    p = Path(path)
    env = dict(os.environ if environ is None else environ)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"tools file {p}: cannot read it ({e.strerror})") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"tools file {p}: not valid {'TOML' if p.suffix == '.toml' else 'YAML'}: {e}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"tools file {p}: expected `tools:` and/or `mcp_servers:` at the top level")
    tools = [_http_tool(p, i, raw, env) for i, raw in enumerate(data.get("tools") or [])]
    servers = [_mcp_server(p, i, raw, env) for i, raw in enumerate(data.get("mcp_servers") or [])]
    return ToolsFile(tools, servers)


def _expand_env(value: Any, env: dict[str, str], where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")
            return env[m.group(1)]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, env, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, env, where) for v in value]
    return value


def _http_tool(path: Path, index: int, raw: Any, env: dict[str, str]) -> ToolDef:
    where = f"tools file {path}, tool #{index + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ConfigError(f"{where}: `name` must be 1-64 letters, digits, _ or -")
    where = f"tools file {path}, tool {name!r}"
    http = raw.get("http")
    if not isinstance(http, dict) or not isinstance(http.get("url"), str):
        raise ConfigError(f"{where}: needs `http:` with a `url`")
    method = str(http.get("method", "GET")).upper()
    if method not in _METHODS:
        raise ConfigError(f"{where}: method {method!r} is not one of {sorted(_METHODS)}")
    parameters = raw.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise ConfigError(f"{where}: `parameters` must be a JSON schema object")
    request = _HttpRequest(
        method=method,
        url=http["url"],
        headers=_expand_env(http.get("headers") or {}, env, where),
        body=_expand_env(http.get("body"), env, where),
        result=raw.get("result"),
    )
    request.url = _expand_env(request.url, env, where)
    try:
        timeout = float(raw.get("timeout", DEFAULT_TIMEOUT_S))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: `timeout` must be a number of seconds") from None
    return ToolDef(
        name=name,
        description=str(raw.get("description", "")),
        parameters=parameters,
        run=request.run,
        side_effects=bool(raw.get("side_effects", False)),
        timeout=timeout,
        source="http",
    )


def _mcp_server(path: Path, index: int, raw: Any, env: dict[str, str]) -> McpServerConfig:
    where = f"tools file {path}, MCP server #{index + 1}"
    if not isinstance(raw, dict) or not raw.get("name"):
        raise ConfigError(f"{where}: needs a `name`")
    if bool(raw.get("command")) == bool(raw.get("url")):
        raise ConfigError(f"{where}: give either `command` (stdio) or `url` (HTTP)")
    return McpServerConfig(
        name=str(raw["name"]),
        command=raw.get("command"),
        args=[str(a) for a in raw.get("args") or []],
        env=_expand_env(raw.get("env") or {}, env, where),
        cwd=raw.get("cwd") or str(path.parent),
        url=_expand_env(raw.get("url"), env, where),
        headers=_expand_env(raw.get("headers") or {}, env, where),
        timeout=float(raw.get("timeout", DEFAULT_TIMEOUT_S)),
        side_effects=bool(raw.get("side_effects", False)),
    )


@dataclass
class _HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    result: str | None

    async def run(self, arguments: dict[str, Any], call: CallContext) -> str:
        url = _fill(self.url, arguments, encode=True)
        headers = {k: _fill(v, arguments) for k, v in self.headers.items()}
        headers.setdefault("Idempotency-Key", call.call_id)  # lets the far side de-duplicate too
        body = _fill_json(self.body, arguments) if self.body is not None else None
        # The per-tool timeout is enforced by the registry; this one only bounds the socket.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as http:
            async with http.request(self.method, url, headers=headers, json=body) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise ToolError(f"the service answered HTTP {resp.status}: {text[:200].strip()}")
        return _extract(text, self.result)[:_MAX_OUTPUT_CHARS]


def _fill(template: str, arguments: dict[str, Any], *, encode: bool = False) -> str:
    def sub(m: re.Match[str]) -> str:
        value = arguments.get(m.group(1), "")
        text = value if isinstance(value, str) else json.dumps(value)
        return quote(text, safe="") if encode else text

    return _ARG_REF.sub(sub, template)


def _fill_json(template: Any, arguments: dict[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _ARG_REF.fullmatch(template)
        if whole:  # "{quantity}" keeps the argument's JSON type
            return arguments.get(whole.group(1))
        return _fill(template, arguments)
    if isinstance(template, dict):
        return {k: _fill_json(v, arguments) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill_json(v, arguments) for v in template]
    return template


def _extract(text: str, path: str | None) -> str:
    if not path:
        return text
    try:
        value: Any = json.loads(text)
    except ValueError:
        raise ToolError("the service did not answer with JSON") from None
    for key in path.split("."):
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise ToolError(f"the answer has no {path!r}")
    return value if isinstance(value, str) else json.dumps(value)
