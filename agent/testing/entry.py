"""Run any livekit-agents ``AgentServer`` as a worker: ``python -m agent.testing.entry MODULE:ATTR [COMMAND]``.

``MODULE:ATTR`` names the server object (``ATTR`` defaults to ``server``), as
``uvicorn`` names an app; ``COMMAND`` is livekit-agents' CLI command (``start``
by default). livekit-agents reads ``LIVEKIT_URL``, ``LIVEKIT_API_KEY`` and
``LIVEKIT_API_SECRET``; livekit-plugins-openai reads ``OPENAI_BASE_URL`` and
``OPENAI_API_KEY``, which agent.testing points at the local realtime backend.
``AGENT_TESTING_HTTP_PORT`` moves the worker's HTTP endpoint off its default
port 8081, so that several workers can run side by side.

The worker takes every job it is offered (load threshold infinite, as in
livekit-agents' dev mode): its default load is the host's CPU, and a test
box's CPU, shared with livekit-server, the backend, the callers and other
tests, is not the agent's load. At 0.7 the stock agent marked itself full
while a busy suite ran beside it and its caller got no agent (a fresh-clone
run, 2026-12-07).
"""

from __future__ import annotations

import importlib
import math
import os
import sys

from livekit.agents import AgentServer, cli

from ..internals import set_http_port


def load_server(target: str) -> AgentServer:
    """The AgentServer at ``MODULE:ATTR``; a clear error for anything else."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise SystemExit(f"agent.testing.entry: {target!r} is not MODULE:ATTR")
    sys.path.insert(0, os.getcwd())  # the tests' project, as `python -m` would see it
    module = importlib.import_module(module_name)
    server = getattr(module, attr or "server", None)
    if not isinstance(server, AgentServer):
        raise SystemExit(f"agent.testing.entry: {module_name}.{attr or 'server'} is not a livekit.agents.AgentServer (got {type(server).__name__})")
    return server


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m agent.testing.entry MODULE:ATTR [start|dev]")
    server = load_server(argv[0])
    port = os.environ.get("AGENT_TESTING_HTTP_PORT")
    if port:
        set_http_port(server, int(port))
    server.update_options(load_threshold=math.inf)
    sys.argv = [argv[0], *(argv[1:] or ["start"])]
    cli.run_app(server)


if __name__ == "__main__":
    main(sys.argv[1:])
