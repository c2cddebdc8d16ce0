"""The private livekit-agents API we use (agent/internals.py) is still there.

Each test names what an upgrade of livekit-agents broke, so the failure
points at agent/internals.py instead of at a silent room.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

from livekit.agents import AgentServer, AgentSession, utils

from agent.internals import DeadJob, claim_user_turn, host_cpu_load, on_job_process_died, process_pool, set_http_port


async def test_claim_user_turn_holds_the_session_user_state() -> None:
    session: AgentSession = AgentSession()
    assert inspect.isfunction(AgentSession._claim_user_turn), "AgentSession._claim_user_turn is gone"
    async with claim_user_turn(session):
        assert session.user_state == "speaking"
    assert session.user_state != "speaking"


def test_the_server_makes_its_process_pool_in_run() -> None:
    source = inspect.getsource(AgentServer.run)
    assert "self._proc_pool = " in source, "AgentServer.run no longer makes self._proc_pool"
    assert process_pool(AgentServer()) is None  # not before run()


def test_the_pool_reports_closed_processes_with_their_job() -> None:
    from livekit.agents.ipc import proc_pool, supervised_proc

    assert "process_closed" in inspect.getsource(proc_pool.ProcPool), "ProcPool no longer emits process_closed"
    for name in ("exitcode", "killed"):
        assert isinstance(getattr(supervised_proc.SupervisedProc, name), property), f"SupervisedProc.{name} is gone"
    from livekit.agents.ipc.job_proc_executor import ProcJobExecutor

    assert isinstance(ProcJobExecutor.running_job, property), "ProcJobExecutor.running_job is gone"
    from livekit.agents.job import RunningJobInfo

    fields = set(inspect.signature(RunningJobInfo).parameters)
    assert {"accept_arguments", "job"} <= fields, f"RunningJobInfo fields changed: {fields}"


def test_only_processes_that_died_running_a_job_are_reported() -> None:
    pool: utils.EventEmitter[str] = utils.EventEmitter()
    seen: list[DeadJob] = []
    on_job_process_died(pool, seen.append)
    job = SimpleNamespace(job=SimpleNamespace(id="AJ_1", room=SimpleNamespace(name="r1")), accept_arguments=SimpleNamespace(identity="agent-AJ_1"))
    pool.emit("process_closed", SimpleNamespace(running_job=None, exitcode=-9, killed=False))  # idle
    pool.emit("process_closed", SimpleNamespace(running_job=job, exitcode=0, killed=False))  # normal end
    pool.emit("process_closed", SimpleNamespace(running_job=job, exitcode=-9, killed=True))  # killed by the pool
    pool.emit("process_closed", SimpleNamespace(running_job=job, exitcode=-9, killed=False))  # died
    assert seen == [DeadJob("AJ_1", "r1", "agent-AJ_1", -9)]


def test_the_default_cpu_load_is_a_fraction() -> None:
    load = host_cpu_load(AgentServer())
    assert 0.0 <= load <= 1.0


def test_every_closed_process_is_reported_with_its_pid() -> None:
    from livekit.agents.ipc import supervised_proc

    from agent.internals import ClosedJobProcess, on_job_process_closed

    assert isinstance(supervised_proc.SupervisedProc.pid, property), "SupervisedProc.pid is gone"
    pool: utils.EventEmitter[str] = utils.EventEmitter()
    seen: list[ClosedJobProcess] = []
    on_job_process_closed(pool, seen.append)
    pool.emit("process_closed", SimpleNamespace(pid=11, running_job=None, exitcode=0, killed=False))
    pool.emit("process_closed", SimpleNamespace(pid=12, running_job=object(), exitcode=-9, killed=True))
    assert seen == [ClosedJobProcess(11, False, 0, False), ClosedJobProcess(12, True, -9, True)]


def test_the_http_port_of_any_server_can_be_set() -> None:
    source = inspect.getsource(AgentServer.run)
    assert "self._port" in source, "AgentServer.run no longer serves on self._port"
    server = AgentServer()
    set_http_port(server, 0)
    assert server._port == 0


def test_the_realtime_session_still_mirrors_and_replays_as_steady_replay_expects() -> None:
    # The behaviour is tested against the local server in tests/test_realtime_replay.py;
    # here, the names SteadyRealtimeSession overrides or reads.
    from livekit.agents.llm._realtime import openai as plugin_realtime

    session_source = inspect.getsource(plugin_realtime.RealtimeSession)
    assert "self._remote_chat_ctx = llm.remote_chat_context.RemoteChatContext()" in session_source, (
        "the reconnect no longer makes a new mirror: SteadyRealtimeSession cannot tell its replay"
    )
    assert "events.extend(self._create_update_chat_ctx_events(chat_ctx))" in session_source, (
        "the reconnect no longer replays through _create_update_chat_ctx_events"
    )
    assert isinstance(plugin_realtime.RealtimeSession.chat_ctx, property)
    assert "self._sessions.add(sess)" in inspect.getsource(plugin_realtime.RealtimeModel.session)
