"""The worker: livekit-agents' AgentServer and the job entry (its preflight
is :mod:`agent.preflight`)."""

from __future__ import annotations

import asyncio
import logging
import time

from livekit import rtc
from livekit.agents import AgentServer, JobContext, JobRequest

from .config import Settings
from .dispatch import AGENT_NAME_ATTRIBUTE, Redispatcher, outranks, senior_agent
from .internals import DeadJob, host_cpu_load, on_job_process_died, process_pool
from .metrics import JOBS_ACCEPTED, count_job_ends
from .prewarm import prewarm

# Imported here, not in the entrypoint: job processes import this module while
# they warm up, so the openai/plugin imports (about 1 s of CPU) are paid before
# a caller is waiting rather than after.
from .session import run_session
from .timing import Stopwatch

log = logging.getLogger("agent.worker")

# Imported once in livekit-agents' forkserver (Linux), ahead of its own
# warm-up, so that every job process shares their pages copy-on-write rather
# than importing a private copy while it warms up: this module imports the
# session, the audio front-end, the tools, the metrics and the stores. (Under
# spawn, elsewhere, this is a no-op and each job process imports them.)
PRELOAD_MODULES = ["agent.worker"]


async def entrypoint(ctx: JobContext) -> None:
    """One job = one room = one realtime session. Runs in a job process."""
    clock = Stopwatch()
    settings = Settings.from_env()
    # On every record of this job process (livekit-agents' filter copies them),
    # so JSON lines carry them; the session adds the participant it links to.
    ctx.log_context_fields.update(room=ctx.room.name, job_id=ctx.job.id)
    log.info("job %s: joining room %s", ctx.job.id, ctx.room.name)
    # The room is joined beside the session's start, which opens the realtime
    # connection meanwhile. There is one join: ours; livekit-agents'
    # session.start asks for one too, which waits for ours and returns once the
    # room is joined. The agent says nothing until it knows it is the room's one
    # agent (the greeting waits for the admission).
    admitted = asyncio.create_task(_admit(ctx, settings, clock), name="admission")
    starting = asyncio.create_task(run_session(ctx, settings, clock, admitted), name="session-start")
    try:
        try:
            joined = await asyncio.shield(admitted)
        except Exception as e:
            # Had the session's start gone on, its own join would try again (up to
            # 10 s more, the job staying meanwhile: a refused outbound call's room
            # is deleted while we join): it stops here, and the job with it.
            log.error("job %s could not join room %s: %s", ctx.job.id, ctx.room.name, e)
            ctx.shutdown(reason="could not join the room")
            return
        if joined:
            await starting
    finally:
        for task in (starting, admitted):
            task.cancel()
        await asyncio.gather(starting, admitted, return_exceptions=True)


async def _admit(ctx: JobContext, settings: Settings, clock: Stopwatch) -> bool:
    """Join the room; False (and the job shuts down) when another agent already serves it.
    Raises TimeoutError when the join takes longer than ``settings.join_timeout_s``."""
    try:
        async with asyncio.timeout(settings.join_timeout_s) as bound:
            await ctx.connect()
    except TimeoutError:
        if not bound.expired():
            raise  # the join's own
        # livekit-server removed us mid-join (the room was deleted: a refused outbound
        # call) and the SDK's join waited on, with no answer and no end (seen in CI).
        raise TimeoutError(f"not joined within {settings.join_timeout_s:g} s (AGENT_JOIN_TIMEOUT_S)") from None
    clock.lap("connect")
    senior = senior_agent(ctx.room, settings.agent_name)
    if senior is not None:  # a double dispatch (see agent.dispatch): the first agent keeps the room
        log.warning("room %s already has agent %s: job %s leaves so the room keeps one agent", ctx.room.name, senior.identity, ctx.job.id)
        mute_published_tracks(ctx.room)
        ctx.shutdown(reason="another agent serves this room")
        return False

    def on_joined(p: rtc.RemoteParticipant) -> None:
        # An agent that joined at the same moment, listed to us only now.
        if outranks(ctx.room, p, settings.agent_name):
            log.warning(
                "room %s already has agent %s: job %s leaves so the room keeps one agent (it joined at the same moment, listed to us only now)",
                ctx.room.name, p.identity, ctx.job.id,
            )  # fmt: skip
            # Our greeting may be playing by now, and the job's shutdown closes the
            # session before it leaves the room: the caller heard 0.2 s of a second
            # voice that way (CI, 2026-12-07). Muted, we are silent at once.
            mute_published_tracks(ctx.room)
            ctx.shutdown(reason="another agent serves this room")

    ctx.room.on("participant_connected", on_joined)
    return True


def mute_published_tracks(room: rtc.Room) -> None:
    """Mute every track we publish in ``room``: no one hears us from now on."""
    for publication in room.local_participant.track_publications.values():
        if publication.track is not None:
            publication.track.mute()


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
        preload_modules=PRELOAD_MODULES,
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


