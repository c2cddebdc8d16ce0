"""The tools the voice agent can use (function calling).

- :mod:`.registry`: one registry, validation, timeouts, exactly-once for side effects;
- :mod:`.builtin`: the coffee shop's tools on the SQLite demo store (:mod:`.store`);
- :mod:`.declarative`: HTTP tools and MCP servers from a YAML/TOML file;
- :mod:`.mcp_tools`: MCP tools through livekit-agents' MCP client;
- :mod:`.ledger`: the SQLite record of side-effecting calls.

Which tools a room gets: ``AGENT_TOOLS`` (``all`` or a comma list), narrowed
per room by ``{"tools": [...]}`` in the job's or the room's metadata.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from ..config import Settings
from .builtin import Services, register_builtins
from .declarative import McpServerConfig, load_tools_file
from .ledger import Ledger
from .mcp_tools import McpConnections
from .registry import CallContext, Outcome, ToolDef, ToolRegistry, current_call
from .store import Store

__all__ = [
    "CallContext",
    "Ledger",
    "McpConnections",
    "Outcome",
    "Services",
    "Store",
    "ToolDef",
    "ToolRegistry",
    "build_registry",
    "current_call",
    "open_registry",
    "tool_names_for_room",
]

log = logging.getLogger("agent.tools")


def build_registry(settings: Settings) -> tuple[ToolRegistry, list[McpServerConfig]]:
    """The tools that need no connection: built-ins and the tools file's HTTP
    tools; and the MCP servers the file names, to be opened by :func:`open_registry`.
    A job process builds this while it waits for a job (agent.prewarm)."""
    registry = ToolRegistry(ledger=Ledger(settings.db_path))
    register_builtins(registry)
    if not settings.tools_file:
        return registry, []
    loaded = load_tools_file(settings.tools_file)
    for tool in loaded.tools:
        registry.add(tool)
    return registry, loaded.mcp_servers


async def open_registry(
    settings: Settings, built: tuple[ToolRegistry, list[McpServerConfig]] | None = None
) -> tuple[ToolRegistry, McpConnections]:
    """Every configured tool: built-ins, the tools file's HTTP tools, its MCP
    servers' tools. ``built`` is :func:`build_registry`'s result when made
    ahead (it is used up: the MCP tools are added to it).

    The caller owns the returned MCP connections (``await mcp.aclose()``).
    """
    registry, servers = built if built is not None else build_registry(settings)
    mcp = McpConnections(servers)
    for tool in await mcp.open():
        if registry.get(tool.name) is not None:
            log.error("MCP tool %r (%s) clashes with a tool of that name; left out", tool.name, tool.source)
            continue
        registry.add(tool)
    return registry, mcp


def tool_names_for_room(settings: Settings, metadata: Iterable[str | None]) -> list[str] | None:
    """The tool names a room gets (None: all registered).

    ``AGENT_TOOLS`` sets the pool; the first job/room metadata that is a JSON
    object with a ``tools`` list narrows it (it cannot add tools outside the pool).
    """
    pool = None if settings.tools.strip().lower() == "all" else [n.strip() for n in settings.tools.split(",") if n.strip()]
    for raw in metadata:
        if not raw:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("room/job metadata is not JSON; ignoring it for tool selection: %.80r", raw)
            continue
        if isinstance(data, dict) and isinstance(data.get("tools"), list):
            wanted = [str(n) for n in data["tools"]]
            return [n for n in wanted if pool is None or n in pool]
    return pool
