"""Command line: ``python -m agent <command>``.

    up               the main job: livekit-server + realtime backend + worker
    realtime-server  the local OpenAI-Realtime-compatible server
    web              the callers' web page (and its token endpoint)
    token            print a join token for a room
    dispatch --room R [--agent-name N] [--metadata JSON]   send an agent to a room
    dispatch list --room R | dispatch delete --room R --id D   its dispatches
    sip setup [--number N] [--allow CIDR] [--username U --password P] [--outbound-address HOST]   phone calls (LiveKit SIP)
    call NUMBER [--room R] [--ring-timeout S]   the agent phones NUMBER (through the outbound trunk)
    tools list       every tool with its schema
    tools call NAME --args JSON   run one tool, as the agent would
    sessions         the stored session records [--room R] [--since T] [--json]
    start | dev      the worker (livekit-agents CLI), after a preflight check
    connect | console | download-files   passed to the livekit-agents CLI
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from .errors import AgentError

USAGE = "usage: python -m agent <command> [options]   (<command> --help: its options)\n\n" + (__doc__ or "").split("\n\n", 1)[1]


def _fail(err: AgentError | str, code: int = 2) -> NoReturn:
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(code)


def _setup_logging(level: str) -> None:
    from .logs import log_format, setup_logging

    try:
        fmt = log_format(os.environ.get("AGENT_LOG_FORMAT"))
    except AgentError as e:
        _fail(e)
    setup_logging(level, fmt)


def cmd_realtime_server(argv: list[str]) -> None:
    from .realtime.server import options_from_env

    parser = argparse.ArgumentParser(prog="python -m agent realtime-server", description="Local OpenAI-Realtime-compatible server.")
    parser.add_argument("--host", default=None, help="address to bind (default AGENT_LOCAL_REALTIME_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default AGENT_LOCAL_REALTIME_PORT or 8765)")
    args = parser.parse_args(argv)
    _setup_logging(os.environ.get("AGENT_LOG_LEVEL", "INFO"))
    try:
        options = options_from_env(args.host, args.port)
    except AgentError as e:
        _fail(e)
    except (OSError, ValueError) as e:  # a brain script that cannot be read or parsed
        _fail(f"bad realtime server settings: {e}")
    try:
        asyncio.run(_serve_until_stopped(options))
    except OSError as e:
        _fail(f"cannot serve on {options.host}:{options.port}: {e.strerror or e}")
    except KeyboardInterrupt:
        pass


async def _serve_until_stopped(options: Any, close_within: float = 10.0) -> None:
    """Serve until SIGTERM or SIGINT, then close: the sessions, then the
    transcription process. SIGTERM's default action would end us with no
    clean-up at all, and leave that process running."""
    from .realtime.server import RealtimeServer

    server = RealtimeServer(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGINT too, explicitly: started in the background by a shell without job
    # control we inherit it ignored, and a supervisor's SIGINT would do nothing.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await stop.wait()
        logging.getLogger("agent.realtime").info("stopping (signal)")
    finally:
        try:
            await asyncio.wait_for(server.aclose(), close_within)
        except TimeoutError:
            # Exit anyway: the transcription process dies with us (agent.parent_death).
            logging.getLogger("agent.realtime").warning("sessions did not close within %.0fs", close_within)


def cmd_web(argv: list[str]) -> None:
    from . import web
    from .config import Settings

    argparse.ArgumentParser(prog="python -m agent web", description=(web.__doc__ or "").splitlines()[0]).parse_args(argv)
    _setup_logging(os.environ.get("AGENT_LOG_LEVEL", "INFO"))
    try:
        web.run(Settings.from_env())
    except AgentError as e:
        _fail(e)
    except OSError as e:
        _fail(f"cannot serve the web page: {e.strerror or e}")


def cmd_token(argv: list[str]) -> None:
    from .config import Settings
    from .stack import load_server_config
    from .web import join_token

    parser = argparse.ArgumentParser(prog="python -m agent token")
    parser.add_argument("--room", default="demo")
    parser.add_argument("--identity", default="caller")
    parser.add_argument("--ttl", type=int, default=6 * 3600, help="seconds")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        key, secret = settings.livekit_api_key, settings.livekit_api_secret
        if not key or not secret:
            cfg = load_server_config(settings.livekit_config)
            key, secret = cfg.api_key, cfg.api_secret
    except AgentError as e:
        _fail(e)
    assert key and secret  # load_server_config refuses a livekit.yaml without keys
    print(join_token(key, secret, args.room, args.identity, ttl_s=args.ttl))


def cmd_tools(argv: list[str]) -> None:
    """``tools list`` and ``tools call NAME --args JSON``: for operators debugging a tool."""
    from .config import Settings

    parser = argparse.ArgumentParser(prog="python -m agent tools")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="print every tool with its JSON schema")
    call = sub.add_parser("call", help="run one tool")
    call.add_argument("name")
    call.add_argument("--args", default="{}", help="the arguments, a JSON object")
    call.add_argument("--call-id", default=None, help="call id (for side-effecting tools: the ledger key)")
    args = parser.parse_args(argv)
    _setup_logging(os.environ.get("AGENT_LOG_LEVEL", "WARNING"))
    try:
        settings = Settings.from_env()
        asyncio.run(_tools_main(settings, args))
    except AgentError as e:
        _fail(e)


async def _tools_main(settings: Any, args: argparse.Namespace) -> None:
    from .tools import CallContext, Services, Store, open_registry

    registry, mcp = await open_registry(settings)
    try:
        if args.action == "list":
            for tool in registry:
                flags = f"{tool.source}, timeout {tool.timeout:g}s" + (", side effects" if tool.side_effects else "")
                print(f"{tool.name}  ({flags})\n  {tool.description.splitlines()[0] if tool.description else ''}")
                print("  " + json.dumps(tool.parameters, indent=2).replace("\n", "\n  "))
            return
        services = Services(store=Store(settings.db_path), escalation_webhook=settings.escalation_webhook)
        call = CallContext(call_id=args.call_id or f"cli_{uuid.uuid4().hex[:12]}", room=None, services=services)
        outcome = await registry.execute(args.name, args.args, call)
        print(outcome.output)
        if outcome.is_error:
            raise SystemExit(1)
    finally:
        await mcp.aclose()


def cmd_dispatch(argv: list[str]) -> None:
    """``dispatch``, ``dispatch list``, ``dispatch delete``: LiveKit's AgentDispatch API."""
    from .agent_dispatch import DispatchClient, check_metadata, check_room_name, describe
    from .config import Settings

    forms = (
        "python -m agent dispatch --room R [--agent-name N] [--metadata JSON]   dispatch an agent to room R\n"
        "python -m agent dispatch list --room R                                 the room's dispatches\n"
        "python -m agent dispatch delete --room R --id D                        delete one"
    )
    action = argv[0] if argv[:1] in (["list"], ["delete"]) else "create"
    prog = "python -m agent dispatch" + ("" if action == "create" else f" {action}")
    parser = argparse.ArgumentParser(prog=prog, description=forms, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--room", required=True, help="room name")
    if action == "create":
        parser.add_argument("--agent-name", default=None, help="the worker's AGENT_NAME (default: this AGENT_NAME)")
        parser.add_argument("--metadata", default="", help="JSON handed to the job (ctx.job.metadata)")
    if action == "delete":
        parser.add_argument("--id", required=True, help="dispatch id (from `dispatch list`)")
    args = parser.parse_args(argv if action == "create" else argv[1:])
    _setup_logging(os.environ.get("AGENT_LOG_LEVEL", "WARNING"))
    try:
        # The arguments first: a bad one needs no settings to be reported.
        check_room_name(args.room)
        if action == "create" and args.metadata:
            check_metadata(args.metadata)
        settings = Settings.from_env()
        key, secret = _server_credentials(settings)
        client = DispatchClient(settings.livekit_url, key, secret)
        if action == "create":
            agent_name = settings.agent_name if args.agent_name is None else args.agent_name
            print(describe(asyncio.run(client.create(args.room, agent_name, args.metadata))))
        elif action == "list":
            for dispatch in asyncio.run(client.list(args.room)):
                print(describe(dispatch))
        else:
            print("deleted " + describe(asyncio.run(client.delete(args.room, args.id))))
    except AgentError as e:
        _fail(e)


def _server_credentials(settings: Any) -> tuple[str, str]:
    """LIVEKIT_API_KEY/SECRET, else, as `token` does, the local server's own keys (what `up` runs with)."""
    from .stack import load_server_config

    if not (settings.livekit_api_key and settings.livekit_api_secret) and os.path.exists(settings.livekit_config):
        cfg = load_server_config(settings.livekit_config)
        return cfg.api_key, cfg.api_secret
    key, secret = settings.require_livekit_credentials()
    return key, secret


def cmd_sip(argv: list[str]) -> None:
    """``sip setup``: the inbound trunk and dispatch rule for phone calls, and the
    outbound trunk for calls the agent places (agent.sip), idempotently."""
    from .agent_dispatch import server_api
    from .config import Settings
    from .sip import InboundPlan, OutboundPlan, ensure_inbound, ensure_outbound

    usage = (
        "usage: python -m agent sip setup [--number N ...] [--allow ADDRESS ...] [--username U --password P] [--room-prefix P] "
        "[--agent-name N] [--outbound-address HOST[:PORT] [--outbound-username U --outbound-password P] [--outbound-transport T]]"
    )
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return
    if argv[:1] != ["setup"]:
        _fail(usage)
    parser = argparse.ArgumentParser(
        prog="python -m agent sip setup",
        description="Create or update the inbound SIP trunk and the dispatch rule that gives each call a room and our agent, "
        "and with --outbound-address the outbound trunk that `call` dials through.",
    )
    parser.add_argument("--number", action="append", default=[], help="a number the trunk answers, and calls come from (repeat; none: any)")
    parser.add_argument("--allow", action="append", default=[], help="an address or CIDR calls may come from (repeat; none: any)")
    parser.add_argument("--username", default="", help="digest auth user name callers must give")
    parser.add_argument("--password", default="", help="digest auth password")
    parser.add_argument("--room-prefix", default="call-", help="each call's room: this prefix plus a random part")
    parser.add_argument("--agent-name", default=None, help="the agent dispatched into each call (default: this AGENT_NAME)")
    parser.add_argument("--outbound-address", default="", help="your SIP provider's host[:port]: calls the agent places go there")
    parser.add_argument("--outbound-username", default="", help="the provider's user name for outbound calls")
    parser.add_argument("--outbound-password", default="", help="the provider's password for outbound calls")
    parser.add_argument("--outbound-transport", default="auto", help="auto, udp, tcp or tls")
    args = parser.parse_args(argv[1:])
    _setup_logging(os.environ.get("AGENT_LOG_LEVEL", "WARNING"))
    try:
        settings = Settings.from_env()
        plan = InboundPlan(
            numbers=tuple(args.number), allowed_addresses=tuple(args.allow), auth_username=args.username, auth_password=args.password,
            room_prefix=args.room_prefix, agent_name=settings.agent_name if args.agent_name is None else args.agent_name,
        ).checked()  # fmt: skip
        outbound = None
        if args.outbound_address or args.outbound_username or args.outbound_password:
            outbound = OutboundPlan(
                address=args.outbound_address, numbers=tuple(args.number), auth_username=args.outbound_username,
                auth_password=args.outbound_password, transport=args.outbound_transport,
            ).checked()  # fmt: skip
        key, secret = _server_credentials(settings)

        async def run() -> tuple[Any, str, list[str]]:
            async with server_api(settings.livekit_url, key, secret) as lk:
                inbound = await ensure_inbound(lk, plan)
                out_id, out_changes = await ensure_outbound(lk, outbound) if outbound else ("", [])
                return inbound, out_id, out_changes

        result, outbound_id, outbound_changes = asyncio.run(run())
    except AgentError as e:
        _fail(e)
    for change in result.changes + outbound_changes:
        print(change)
    if not result.changes and not outbound_changes:
        also = f" and outbound trunk {outbound_id}" if outbound_id else ""
        print(f"nothing to change: inbound trunk {result.trunk_id}, dispatch rule {result.rule_id}{also} are as asked")


def cmd_call(argv: list[str]) -> None:
    """``call NUMBER``: the agent phones NUMBER through the outbound trunk (agent.sip.place_call)."""
    from .agent_dispatch import server_api
    from .config import Settings
    from .sip import CallRequest, place_call

    parser = argparse.ArgumentParser(
        prog="python -m agent call",
        description="Dispatch the agent into a room of the call's own and have LiveKit SIP phone NUMBER from it; the agent speaks "
        "once the call is answered. Prints one line: answered, or why not (busy, declined, no answer, failed); exits 1 when not answered.",
    )
    parser.add_argument("number", help="the number to call, e.g. +15550100")
    parser.add_argument("--room", default="", help="the call's room (default: call-out- plus a random part); must not exist yet")
    parser.add_argument("--agent-name", default=None, help="the agent that calls (default: this AGENT_NAME)")
    parser.add_argument("--ring-timeout", type=float, default=30.0, help="seconds the phone may ring (default 30)")
    parser.add_argument("--trunk", default="", help="outbound trunk id (default: the one `sip setup --outbound-address` made)")
    args = parser.parse_args(argv)
    _setup_logging(os.environ.get("AGENT_LOG_LEVEL", "WARNING"))
    try:
        settings = Settings.from_env()
        request = CallRequest(
            to=args.number, room=args.room, agent_name=settings.agent_name if args.agent_name is None else args.agent_name,
            ring_timeout_s=args.ring_timeout, trunk_id=args.trunk,
        ).checked()  # fmt: skip
        key, secret = _server_credentials(settings)

        async def run() -> Any:
            async with server_api(settings.livekit_url, key, secret) as lk:
                return await place_call(lk, request)

        result = asyncio.run(run())
    except AgentError as e:
        _fail(e)
    print(result.line())
    if not result.answered:
        raise SystemExit(1)


def cmd_worker(argv: list[str]) -> None:
    """Preflight, then hand over to the livekit-agents CLI."""
    from .config import Settings
    from .preflight import preflight

    if "--help" in argv or "-h" in argv:
        # Help needs no settings, credentials or servers: the CLI prints it from
        # its own option table.
        from .worker import Worker

        _run_livekit_cli(Worker(), argv)
        return
    try:
        settings = Settings.from_env()
        settings.require_livekit_credentials()
        if argv[:1] in (["start"], ["dev"]):
            from . import scrape

            scrape.start(settings)  # binds AGENT_METRICS_PORT now: taken = one error, nothing started
    except AgentError as e:
        _fail(e)
    _setup_logging(settings.log_level)
    try:
        asyncio.run(preflight(settings))
    except AgentError as e:
        _fail(e, code=1)
    # The livekit-agents CLI installs its own log handlers; ours only served the preflight.
    logging.getLogger().handlers.clear()
    from .worker import build_server  # livekit-agents: imported once the preflight has passed

    server = build_server(settings)
    if settings.redispatch and argv[:1] in (["start"], ["dev"]):
        from .dispatch import Redispatcher

        key, secret = settings.require_livekit_credentials()
        server.redispatcher = Redispatcher(settings.livekit_url, key, secret, settings.agent_name, grace=settings.redispatch_grace_s)
    _run_livekit_cli(server, argv)


def cmd_sessions(argv: list[str]) -> None:
    """``sessions [--room R] [--since T] [--json]``: the records of finished sessions, oldest first."""
    from .config import Settings
    from .records import open_records, parse_since

    parser = argparse.ArgumentParser(prog="python -m agent sessions", description="List the stored session records.")
    parser.add_argument("--room", default=None, help="only this room's sessions")
    parser.add_argument("--since", default=None, help="only sessions started since T: an ISO date/time (2026-12-02, 2026-12-02T14:00) or an age (90s, 30m, 2h, 7d)")
    parser.add_argument("--json", action="store_true", help="a JSON array of the whole records (transcript, tool calls, usage)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        since = parse_since(args.since, now=time.time()) if args.since else None
        records = open_records(settings).select(room=args.room, since=since)
    except AgentError as e:
        _fail(e)
    if args.json:
        print(json.dumps([r.as_json() for r in records], indent=2))
        return
    print(f"{'started':<20} {'duration':>9} {'turns':>5} {'tools':>5} {'cost $':>9} {'reconn':>6}  {'reason':<24} room")
    for r in records:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))
        print(
            f"{started:<20} {r.duration_s:>8.1f}s {r.turns:>5} {len(r.tool_calls):>5} {r.cost_usd:>9.4f} "
            f"{r.reconnects:>6}  {r.close_reason:<24} {r.room}"
        )


def cmd_download_files(argv: list[str]) -> None:
    """The plugins' model files, fetched ahead of time: needs no server, so no preflight."""
    from .worker import Worker

    _run_livekit_cli(Worker(), ["download-files", *argv])


def _run_livekit_cli(server: Any, argv: list[str]) -> None:
    from livekit.agents import cli

    # Its CLI knows only --help; ours answer -h too.
    sys.argv = [sys.argv[0], *("--help" if a == "-h" else a for a in argv)]
    cli.run_app(server)


def up_worker_env(
    env: dict[str, str], url: str, index: int, http_port: int, metrics_port: int | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """What `up` sets for its worker ``index``: its node's URL, the HTTP and
    metrics ports from the configured ones up, and, unless the caller's
    environment says otherwise, a load from jobs alone: everything `up` starts
    shares this machine's CPU, so the CPU figure is mostly livekit-server's,
    the backend's and the other workers', and on a busy 2-core box it alone
    crossed livekit-server's target load (0.7) and the room got no agent
    (a fresh-clone run, 2026-12-02: "worker is at full capacity")."""
    worker_env = {**env, "LIVEKIT_URL": url, "AGENT_HTTP_PORT": str(http_port + index)}
    if metrics_port:  # one metrics port each, like the HTTP ports
        worker_env["AGENT_METRICS_PORT"] = str(metrics_port + index)
    if "AGENT_LOAD_FROM_CPU" not in environ:
        worker_env["AGENT_LOAD_FROM_CPU"] = "false"
    return worker_env


def cmd_up(argv: list[str]) -> None:
    """The main job: everything on this machine, until Ctrl-C."""
    from .config import Settings
    from .stack import SipServiceConfig, Stack, cache_dir, cluster_node_config, free_local_port, load_server_config, write_server_config
    from .web import join_token

    parser = argparse.ArgumentParser(prog="python -m agent up", description="AGENT_SIP=1 also starts LiveKit SIP (phone calls).")
    parser.add_argument("--room", default="demo", help="room name to print a join token for")
    parser.add_argument("--nodes", type=int, default=1, help="livekit-server nodes; more than one make a cluster sharing one Redis")
    parser.add_argument("--workers", type=int, default=1, help="workers, spread over the nodes (HTTP ports from AGENT_HTTP_PORT up)")
    parser.add_argument("--redis-port", type=int, default=6379, help="redis-server's port on 127.0.0.1 (with --nodes > 1, or AGENT_SIP=1)")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.workers < 1:
        _fail("--nodes and --workers must be at least 1")
    try:
        settings = Settings.from_env()
        cfg = load_server_config(settings.livekit_config)
    except AgentError as e:
        _fail(e)
    stack = Stack(cache_dir(settings) / "logs" / time.strftime("%Y%m%d-%H%M%S"))
    stopping = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    # Both, explicitly: a process started in the background by a shell without
    # job control inherits SIGINT *ignored*, and Ctrl-C (or a test's SIGINT) would
    # then leave everything running.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        nodes = [cfg]
        redis = f"127.0.0.1:{args.redis_port}"
        if args.nodes > 1 or settings.sip:
            # LiveKit's multi-node mode, and how livekit-server and livekit-sip talk to each other
            why = f"a cluster of {args.nodes} nodes" if args.nodes > 1 else "livekit-server and livekit-sip"
            print(f"[up] starting redis-server on {redis} for {why}", flush=True)
            stack.start_redis("127.0.0.1", args.redis_port, workdir=stack.log_dir)
            nodes = [
                write_server_config(stack.log_dir / f"livekit-node{i}.yaml", cluster_node_config(cfg.raw, index=i, redis_address=redis))
                for i in range(args.nodes)
            ]
        for i, node in enumerate(nodes):
            print(f"[up] starting livekit-server with {node.path} on port {node.port} (logs in {stack.log_dir})", flush=True)
            stack.start_livekit(node, name="livekit" if len(nodes) == 1 else f"livekit-node{i}")
        url = cfg.url()
        env = {
            "LIVEKIT_URL": url,
            "LIVEKIT_API_KEY": settings.livekit_api_key or cfg.api_key,
            "LIVEKIT_API_SECRET": settings.livekit_api_secret or cfg.api_secret,
        }
        if settings.sip:
            sip = SipServiceConfig.write(
                stack.log_dir / "sip.yaml", api_key=env["LIVEKIT_API_KEY"], api_secret=env["LIVEKIT_API_SECRET"], ws_url=url,
                redis=redis, address=settings.sip_address, sip_port=settings.sip_port, rtp_ports=settings.sip_rtp_range,
                health_port=free_local_port(),
            )  # fmt: skip
            print(f"[up] starting livekit-sip on {settings.sip_address}:{settings.sip_port} (RTP {settings.sip_rtp_ports})", flush=True)
            stack.start_sip(sip)
        if settings.uses_openai:
            print(f"[up] realtime backend: OpenAI ({settings.backend_base_url}, model {settings.realtime_model})", flush=True)
        elif settings.realtime_base_url:
            print(f"[up] realtime backend: {settings.realtime_base_url}", flush=True)
        else:
            host, port = settings.local_realtime_host, settings.local_realtime_port
            print(f"[up] starting the local realtime server on {host}:{port}", flush=True)
            stack.start_realtime(host, port)
        for i in range(args.workers):
            node = nodes[i % len(nodes)]
            worker_env = up_worker_env(env, node.url(), i, settings.http_port, settings.metrics_port, os.environ)
            print(f"[up] starting worker {i} (registers with {node.url()}, HTTP port {settings.http_port + i})", flush=True)
            stack.start_worker(env=worker_env, name="worker" if args.workers == 1 else f"worker{i}")
        page = stack.start_web(settings.web_host, settings.web_port, env=env)
        token = join_token(env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"], args.room, "caller", ttl_s=6 * 3600)
        print(
            f"\n[up] ready. Talk to the agent in a browser: {page}?room={args.room}\n"
            f"  LiveKit's token endpoint (for starter apps and TokenSource.endpoint): POST {page}token\n"
            "  or join the room from any LiveKit client:\n"
            f"  server URL: {url}\n"
            f"  token:      {token}\n"
            f"  (room {args.room!r}; more tokens: python -m agent token --room NAME --identity NAME)\n"
            "  From another device, use this machine's LAN address and set rtc.node_ip in livekit.yaml.\n"
            + (
                f"  Phone calls: livekit-sip at sip:{settings.sip_address}:{settings.sip_port}; make the inbound trunk with\n"
                "  python -m agent sip setup --number <number> [--allow <address>] (README: Telephony).\n"
                if settings.sip
                else ""
            )
            + "Ctrl-C stops everything.",
            flush=True,
        )
        while all(p.alive() for p in stack.processes):
            time.sleep(0.5)
        dead = [p for p in stack.processes if not p.alive()]
        for p in dead:
            print(f"[up] {p.name} exited with {p.proc.returncode}; last lines:\n{p.tail()}", file=sys.stderr)
        raise SystemExit(1)
    except KeyboardInterrupt:
        print("\n[up] stopping", flush=True)
    except AgentError as e:
        stack.stop()
        _fail(e, code=1)
    except (RuntimeError, TimeoutError) as e:
        stack.stop()
        _fail(str(e), code=1)
    finally:
        stack.stop()


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "up": cmd_up,
    "realtime-server": cmd_realtime_server,
    "token": cmd_token,
    "web": cmd_web,
    "dispatch": cmd_dispatch,
    "sip": cmd_sip,
    "call": cmd_call,
    "tools": cmd_tools,
    "sessions": cmd_sessions,
    "start": lambda a: cmd_worker(["start", *a]),
    "dev": lambda a: cmd_worker(["dev", *a]),
    "connect": lambda a: cmd_worker(["connect", *a]),
    "console": lambda a: cmd_worker(["console", *a]),
    "download-files": cmd_download_files,
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command = COMMANDS.get(args[0])
    if command is None:
        _fail(f"unknown command {args[0]!r}\n{USAGE}")
    command(args[1:])


if __name__ == "__main__":
    main()
