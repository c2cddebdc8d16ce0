"""Every use of livekit-agents' private API, in one place.

livekit-agents 1.8.9 gives no public hook for two things we need:

- a programmatic user turn (``AgentSession._claim_user_turn``): its own
  room-chat handler uses it so that a typed message interrupts the agent
  and is answered as one turn; our bounded chat handler must do the same;
- the host's CPU load as livekit-agents measures it by default
  (``worker._DefaultLoadCalc``), which our load function combines with the
  job count;
- the HTTP port of any AgentServer (``AgentServer._port``): agent.testing
  runs other people's agents, whose servers default to port 8081 in start
  mode, side by side;
- the job process pool (``AgentServer._proc_pool`` and its
  ``process_closed`` event), where a job process that died is seen at once
  (the re-dispatcher replaces its agent without waiting for the server to
  time the participant out), and every job process's end (the metrics
  count failed and drained jobs there, and mark the process dead).

``tests/test_internals.py`` checks each of these against the installed
livekit-agents, so an upgrade that renames or removes one fails there,
with the name, rather than in a room at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentServer, AgentSession


def claim_user_turn(session: AgentSession[Any]) -> AbstractAsyncContextManager[None]:
    """Hold a user turn open across awaits, as livekit-agents' own chat handler does."""
    return session._claim_user_turn()


@dataclass(frozen=True)
class DeadJob:
    """A job process that ended badly with its job still running."""

    job_id: str
    room: str
    agent_identity: str
    exitcode: int | None


@dataclass(frozen=True)
class ClosedJobProcess:
    """A job process that ended, for whatever reason."""

    pid: int | None
    had_job: bool  # False: an idle (warm) process that never ran a job
    exitcode: int | None
    killed: bool  # the pool killed it (a drain or a shutdown that overran)


def host_cpu_load(server: AgentServer) -> float:
    """livekit-agents' default load figure: the host's CPU use, 0..1, averaged over seconds."""
    from livekit.agents.worker import _DefaultLoadCalc

    return float(_DefaultLoadCalc.get_load(server))


def process_pool(server: AgentServer) -> Any | None:
    """The server's job process pool, once ``AgentServer.run`` has made it."""
    return getattr(server, "_proc_pool", None)


def on_job_process_died(pool: Any, callback: Callable[[DeadJob], None]) -> None:
    """Call ``callback`` when a process dies while running a job.

    Idle processes, normal ends and processes the pool killed itself (a
    drain, a job that overran its shutdown) are not reported.
    """

    def closed(proc: Any) -> None:
        job = proc.running_job
        if job is None or proc.exitcode in (0, None) or proc.killed:
            return
        callback(DeadJob(job.job.id, job.job.room.name, job.accept_arguments.identity, proc.exitcode))

    pool.on("process_closed", closed)


def on_job_process_closed(pool: Any, callback: Callable[[ClosedJobProcess], None]) -> None:
    """Call ``callback`` for every process of the pool that ends, idle or not."""
    pool.on(
        "process_closed",
        lambda proc: callback(ClosedJobProcess(proc.pid, proc.running_job is not None, proc.exitcode, proc.killed)),
    )


def set_http_port(server: AgentServer, port: int) -> None:
    """Make ``server`` serve its health and worker endpoints on ``port`` (0: any free port)."""
    if not hasattr(server, "_port"):
        raise AttributeError("AgentServer._port is gone: agent/internals.py needs updating for this livekit-agents")
    server._port = port
