"""The worker: livekit-agents' AgentServer, the job entry, and a preflight.

The preflight runs before the framework takes over, so that the common
mistakes (wrong secret, server down, backend down) end in one clear line
instead of a retry loop of tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from urllib.parse import urlparse

import aiohttp
from livekit import api, rtc
from livekit.agents import AgentServer, JobContext, JobRequest

from .config import Settings
from .dispatch import AGENT_NAME_ATTRIBUTE, Redispatcher, outranks, senior_agent
from .errors import AgentError, LiveKitAuthError, LiveKitUnavailable, RealtimeUnavailable
from .internals import DeadJob, host_cpu_load, on_job_process_died, process_pool
from .metrics import JOBS_ACCEPTED, count_job_ends
from .prewarm import prewarm

# Imported here, not in the entrypoint: job processes import this module while
# they warm up, so the openai/plugin imports (about 1 s of CPU) are paid before
# a caller is waiting rather than after.
from .session import run_session
from .timing import Stopwatch

log = logging.getLogger("agent.worker")


async def entrypoint(ctx: JobContext) -> None:
    """One job = one room = one realtime session. Runs in a job process."""
    clock = Stopwatch()
    settings = Settings.from_env()
    # On every record of this job process (livekit-agents' filter copies them),
    # so JSON lines carry them; the session adds the participant it links to.
    ctx.log_context_fields.update(room=ctx.room.name, job_id=ctx.job.id)
    log.info("job %s: joining room %s", ctx.job.id, ctx.room.name)
    await ctx.connect()
    clock.lap("connect")
    senior = senior_agent(ctx.room, settings.agent_name)
    if senior is not None:  # a double dispatch (see agent.dispatch): the first agent keeps the room
        log.warning("room %s already has agent %s: job %s leaves so the room keeps one agent", ctx.room.name, senior.identity, ctx.job.id)
        ctx.shutdown(reason="another agent serves this room")
        return

    def on_joined(p: rtc.RemoteParticipant) -> None:
        # An agent that joined at the same moment, listed to us only now.
        if outranks(ctx.room, p, settings.agent_name):
            log.warning(
                "room %s already has agent %s: job %s leaves so the room keeps one agent (it joined at the same moment, listed to us only now)",
                ctx.room.name, p.identity, ctx.job.id,
            )  # fmt: skip
            ctx.shutdown(reason="another agent serves this room")

    ctx.room.on("participant_connected", on_joined)
    await run_session(ctx, settings, clock)


class Worker(AgentServer):
    """livekit-agents' AgentServer, plus: a job process that dies with its room
    still live is reported to the re-dispatcher at once."""

    redispatcher: Redispatcher | None = None
    log_format: str = "text"

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        if self.log_format == "json":
            from .logs import use_json_lines

            # The CLI has set up its handlers by now: coloured ones in dev mode.
            use_json_lines()
        # Both tasks are ours: cancelled and awaited when the server stops.
        tasks = [asyncio.create_task(self._watch_job_processes(), name="watch_job_processes")]
        if self.redispatcher is not None:
            tasks.append(asyncio.create_task(self.redispatcher.run(), name="redispatcher"))
        try:
            await super().run(devmode=devmode, unregistered=unregistered)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_job_processes(self) -> None:
        # The process pool is made inside run(); attach as soon as it exists.
        while (pool := process_pool(self)) is None:  # noqa: ASYNC110 - no event says it is made
            await asyncio.sleep(0.1)
        on_job_process_died(pool, self._on_job_died)
        count_job_ends(pool, draining=lambda: self.draining)

    def _on_job_died(self, dead: DeadJob) -> None:
        log.error(
            "job %s in room %s died (exit code %s)", dead.job_id, dead.room, dead.exitcode, extra={"room": dead.room, "job_id": dead.job_id}
        )
        if self.redispatcher is not None:
            self.redispatcher.job_died(dead.room, dead.agent_identity)


class WorkerLoad:
    """The load the worker reports: the larger of the host's CPU load (unless
    ``AGENT_LOAD_FROM_CPU=false``) and its jobs over ``AGENT_MAX_JOBS``.

    livekit-server sends a job only to a worker whose reported load is under
    its ``agents.target_load`` (0.7 by default), and the worker itself takes
    none at ``AGENT_LOAD_THRESHOLD`` or more. On a small, busy test box the CPU
    figure alone crosses 0.7 and the server then sends no job at all, with no
    error anywhere but its own log ("no servers available"): room tests count
    jobs instead.

    The jobs counted are the running ones and those accepted but not running
    yet (:meth:`accepted`): livekit-agents releases a job's reserved slot when
    it is accepted, before the job shows in ``active_jobs``, and three offers
    within 170 ms all found a worker of ``AGENT_MAX_JOBS=2`` with room (seen in
    the six-room cluster test). An accepted job that never starts stops
    counting after ``PENDING_S``.
    """

    PENDING_S = 15.0

    def __init__(self, *, max_jobs: int, from_cpu: bool) -> None:
        self.max_jobs = max_jobs
        self.from_cpu = from_cpu
        self._pending: dict[str, float] = {}  # job id -> when accepted (monotonic)

    def accepted(self, job_id: str) -> None:
        self._pending[job_id] = time.monotonic()

    def jobs(self, server: AgentServer) -> int:
        running = {info.job.id for info in server.active_jobs}
        now = time.monotonic()
        self._pending = {j: t for j, t in self._pending.items() if j not in running and now - t < self.PENDING_S}
        return len(running) + len(self._pending)

    def __call__(self, server: AgentServer) -> float:
        cpu = host_cpu_load(server) if self.from_cpu else 0.0
        jobs = self.jobs(server) / self.max_jobs if self.max_jobs else 0.0
        return min(1.0, max(cpu, jobs))


def build_server(settings: Settings) -> Worker:
    load = WorkerLoad(max_jobs=settings.max_jobs, from_cpu=settings.load_from_cpu)
    server = Worker(
        setup_fnc=prewarm,
        load_fnc=load,
        num_idle_processes=settings.num_idle_processes,
        port=settings.http_port,
        drain_timeout=settings.drain_timeout,
        load_threshold=settings.load_threshold,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret,
    )
    async def accept(request: JobRequest) -> None:
        await request.accept(attributes={AGENT_NAME_ATTRIBUTE: settings.agent_name})
        log.info("job %s accepted for room %s", request.id, request.room.name)
        load.accepted(request.id)
        JOBS_ACCEPTED.inc()

    server.rtc_session(entrypoint, agent_name=settings.agent_name, on_request=accept)
    server.log_format = settings.log_format
    return server


def _http_url(ws_url: str) -> str:
    parsed = urlparse(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parsed.scheme, parsed.scheme)
    return parsed._replace(scheme=scheme).geturl()


async def check_livekit(settings: Settings) -> None:
    """Reach livekit-server and prove our key/secret with one API call."""
    key, secret = settings.require_livekit_credentials()
    lk = api.LiveKitAPI(_http_url(settings.livekit_url), key, secret, timeout=aiohttp.ClientTimeout(total=5))
    try:
        await lk.room.list_rooms(api.ListRoomsRequest())
    except api.TwirpError as e:
        if e.status in (401, 403):
            raise LiveKitAuthError.refused(settings.livekit_url, key, e.message) from None
        raise LiveKitUnavailable(f"livekit-server at {settings.livekit_url} answered {e.status}: {e.message}") from None
    except Exception as e:  # aiohttp raises several unrelated types for "cannot connect"
        raise LiveKitUnavailable(
            f"cannot reach livekit-server at {settings.livekit_url}: {type(e).__name__}: {e}",
            hint="is it running? start everything with scripts/run.sh",
        ) from None
    finally:
        await lk.aclose()


def check_backend(settings: Settings) -> None:
    """A TCP connect to the realtime backend: enough to tell 'down' from 'up'."""
    parsed = urlparse(settings.backend_base_url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (443 if parsed.scheme in ("https", "wss") else 80)
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as e:
        which = "OpenAI" if settings.uses_openai else "the local realtime server"
        raise RealtimeUnavailable(
            f"cannot reach {which} at {settings.backend_base_url}: {e.strerror or e}",
            hint="start it with `python -m agent realtime-server`, or set AGENT_REALTIME_BASE_URL"
            if not settings.uses_openai
            else "check the network and OPENAI_API_KEY",
        ) from None


async def preflight(settings: Settings) -> None:
    """Retry what can be retried (an error whose ``retryable`` is set) until
    ``preflight_timeout``, then raise the last error; raise the others at once."""
    deadline = time.monotonic() + settings.preflight_timeout
    for check in (check_livekit, check_backend):
        delay = 0.25
        while True:
            try:
                if asyncio.iscoroutinefunction(check):
                    await check(settings)
                else:
                    await asyncio.to_thread(check, settings)
                break
            except AgentError as e:
                if not e.retryable or time.monotonic() + delay > deadline:
                    raise
                log.debug("preflight: %s; retrying in %.2fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
