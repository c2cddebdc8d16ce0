"""A small real MCP server (stdio) for the tests: a loyalty-points service."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("loyalty")
POINTS = {"C-1001": 120, "C-1002": 15}


@server.tool()
def loyalty_points(customer_id: str) -> str:
    """How many loyalty points a customer has."""
    if customer_id not in POINTS:
        raise ToolError(f"unknown customer {customer_id}")  # shown to the client, unlike a crash
    return f"Customer {customer_id} has {POINTS[customer_id]} points."


if __name__ == "__main__":
    server.run()  # stdio transport
