"""Tools from MCP servers, through livekit-agents' MCP client.

livekit-agents connects to the server (stdio or HTTP) and turns each MCP
tool into a raw function tool; we wrap those as :class:`ToolDef` so that
MCP tools get the same validation, timeouts and ledger as every other tool.
A server that fails to start costs its tools, not the session: the error is
logged and the agent goes on without them.
"""

from __future__ import annotations

import logging
from typing import Any

from .declarative import McpServerConfig
from .registry import CallContext, ToolDef

log = logging.getLogger("agent.tools")


class McpConnections:
    """The MCP server connections of one job (or one CLI call); close with ``aclose``."""

    def __init__(self, configs: list[McpServerConfig]) -> None:
        self.configs = configs
        self._servers: list[Any] = []

    async def open(self) -> list[ToolDef]:
        tools: list[ToolDef] = []
        for config in self.configs:
            try:
                tools += await self._open_one(config)
            except Exception as e:  # a broken server must not take the session down
                log.error("MCP server %r unavailable, its tools are left out: %s: %s", config.name, type(e).__name__, e)
        return tools

    async def _open_one(self, config: McpServerConfig) -> list[ToolDef]:
        from livekit.agents.llm.mcp import MCPServerHTTP, MCPServerStdio

        if config.command:
            server: Any = MCPServerStdio(
                config.command, config.args, env=config.env or None, cwd=config.cwd,
                client_session_timeout_seconds=config.timeout,
            )  # fmt: skip
        else:
            server = MCPServerHTTP(config.url or "", headers=config.headers or None, client_session_timeout_seconds=config.timeout)
        self._servers.append(server)
        await server.initialize()
        tools = []
        for raw_tool in await server.list_tools():
            schema = raw_tool.info.raw_schema
            tools.append(
                ToolDef(
                    name=schema["name"],
                    description=schema.get("description") or "",
                    parameters=schema.get("parameters") or {"type": "object", "properties": {}},
                    run=_runner(raw_tool),
                    side_effects=config.side_effects,
                    timeout=config.timeout,
                    source=f"mcp:{config.name}",
                )
            )
        log.info("MCP server %r: %d tools (%s)", config.name, len(tools), ", ".join(t.name for t in tools))
        return tools

    async def aclose(self) -> None:
        for server in self._servers:
            try:
                await server.aclose()
            except Exception as e:
                log.warning("closing an MCP server failed: %s", e)
        self._servers.clear()


def _runner(raw_tool: Any):  # type: ignore[no-untyped-def]
    async def run(arguments: dict[str, Any], call: CallContext) -> Any:
        return await raw_tool(raw_arguments=arguments)

    return run
