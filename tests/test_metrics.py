"""Metrics of one session (agent.metrics): what each event adds to which family.

The families live in this test process's default registry (no multiprocess
directory here; tests/test_scrape.py runs real job processes), so each test
reads the change it made.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from livekit.agents import AgentStateChangedEvent, llm, utils
from livekit.agents.voice.events import ConversationItemAddedEvent, FunctionToolsExecutedEvent
from prometheus_client import REGISTRY

from agent.cost import Usage, parse_prices
from agent.metrics import JOBS_DRAINED, JOBS_FAILED, PLUGIN_MAX_SESSION_S, SessionMeter, TurnClock, count_job_ends


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def meter(clock: Clock) -> Iterator[SessionMeter]:
    m = SessionMeter(
        model="gpt-realtime", prices=parse_prices(None), silence_s=0.5, max_session_s=60.0,
        tool_names=frozenset({"place_order"}), clock=clock,
    )  # fmt: skip
    yield m
    m.close()


# ---------------------------------------------------------------------- turn clock


class TestTurnClock:
    def test_turn_latency_runs_from_the_end_of_speech_to_the_first_agent_audio(self) -> None:
        c = TurnClock(silence_s=0.5)
        c.speech_started(10.0)
        c.speech_stopped(12.5)  # the caller stopped at 12.0; VAD waited 0.5 s of silence
        assert c.agent_state("thinking", 12.6) is None
        assert c.agent_state("speaking", 12.9) == ("turn", pytest.approx(0.9))
        assert c.agent_state("listening", 15.0) is None  # no barge-in: nobody spoke over it

    def test_a_pause_is_not_the_end_of_the_turn(self) -> None:
        c = TurnClock(silence_s=0.5)
        c.speech_stopped(12.5)
        c.speech_started(12.7)  # the caller goes on
        assert c.agent_state("speaking", 13.0) is None
        c.speech_stopped(14.5)
        assert c.agent_state("listening", 14.0) is None
        assert c.agent_state("speaking", 15.0) == ("turn", pytest.approx(1.0))

    def test_speech_with_no_caller_turn_before_it_gives_no_latency(self) -> None:
        c = TurnClock(silence_s=0.5)
        assert c.agent_state("speaking", 1.0) is None  # the greeting
        assert c.agent_state("listening", 3.0) is None

    def test_barge_in_runs_from_the_onset_over_the_agent_to_its_silence(self) -> None:
        c = TurnClock(silence_s=0.5)
        c.agent_state("speaking", 1.0)
        c.speech_started(2.0)
        assert c.agent_state("listening", 2.3) == ("barge_in", pytest.approx(0.3))

    def test_onset_while_the_agent_is_quiet_is_no_barge_in(self) -> None:
        c = TurnClock(silence_s=0.5)
        c.speech_started(2.0)
        c.agent_state("speaking", 2.5)
        assert c.agent_state("listening", 4.0) is None


# ---------------------------------------------------------------------- session meter


def test_usage_of_every_response_done_counts_tokens_minutes_and_cost(meter: SessionMeter) -> None:
    before = {n: sample(n) for n in ("agent_audio_input_tokens_total", "agent_audio_output_tokens_total", "agent_audio_minutes_in_total")}
    cost_before = sample("agent_cost_usd_total", model="gpt-realtime")
    usage = {"input_token_details": {"text_tokens": 40, "audio_tokens": 300}, "output_token_details": {"text_tokens": 10, "audio_tokens": 600}}
    meter.on_server_event({"type": "response.done", "response": {"status": "completed", "usage": usage}})
    meter.on_server_event({"type": "response.done", "response": {"status": "cancelled", "usage": usage}})  # billed too
    meter.on_server_event({"type": "response.created", "response": {}})
    assert meter.responses == 2
    assert meter.usage == Usage(text_in=80, audio_in=600, text_out=20, audio_out=1200)
    # 600 tokens in = 1 min at $0.06, 1200 out = 1 min at $0.24
    assert meter.cost_usd == pytest.approx(0.30)
    assert sample("agent_audio_input_tokens_total") - before["agent_audio_input_tokens_total"] == 600
    assert sample("agent_audio_output_tokens_total") - before["agent_audio_output_tokens_total"] == 1200
    assert sample("agent_audio_minutes_in_total") - before["agent_audio_minutes_in_total"] == pytest.approx(1.0)
    assert sample("agent_cost_usd_total", model="gpt-realtime") - cost_before == pytest.approx(0.30)


def test_speech_events_and_agent_state_give_turn_latency(meter: SessionMeter, clock: Clock) -> None:
    count = sample("agent_turn_latency_seconds_count")
    session: utils.EventEmitter[str] = utils.EventEmitter()
    rt: utils.EventEmitter[str] = utils.EventEmitter()
    meter.attach(session)
    meter.watch_realtime(rt)
    rt.emit("openai_server_event_received", {"type": "input_audio_buffer.speech_started", "audio_start_ms": 100})
    clock.t = 1002.5
    rt.emit("openai_server_event_received", {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2000})
    session.emit("agent_state_changed", AgentStateChangedEvent(old_state="listening", new_state="speaking", created_at=1003.2))
    assert meter.turn_latencies == [pytest.approx(1.2)]
    assert sample("agent_turn_latency_seconds_count") - count == 1


def test_tool_calls_count_by_tool_and_outcome(meter: SessionMeter) -> None:
    ok = sample("agent_tool_calls_total", tool="place_order", outcome="ok")
    unknown = sample("agent_tool_calls_total", tool="unknown", outcome="error")
    session: utils.EventEmitter[str] = utils.EventEmitter()
    meter.attach(session)
    session.emit("function_tools_executed", FunctionToolsExecutedEvent(
        function_calls=[llm.FunctionCall(call_id="c1", name="place_order", arguments="{}"),
                        llm.FunctionCall(call_id="c2", name="make_me_rich", arguments="{}")],
        function_call_outputs=[llm.FunctionCallOutput(call_id="c1", name="place_order", output="order 1", is_error=False),
                               llm.FunctionCallOutput(call_id="c2", name="make_me_rich", output="no such tool", is_error=True)],
    ))  # fmt: skip
    assert [(c.name, c.outcome) for c in meter.tool_calls] == [("place_order", "ok"), ("make_me_rich", "error")]
    assert sample("agent_tool_calls_total", tool="place_order", outcome="ok") - ok == 1
    assert sample("agent_tool_calls_total", tool="unknown", outcome="error") - unknown == 1  # a made-up name is no label


def test_caller_turns_are_the_user_messages(meter: SessionMeter) -> None:
    session: utils.EventEmitter[str] = utils.EventEmitter()
    meter.attach(session)
    for role in ("assistant", "user", "assistant", "user"):
        session.emit("conversation_item_added", ConversationItemAddedEvent(item=llm.ChatMessage(role=role, content=["x"])))
    assert meter.turns == 2


def test_the_session_is_active_until_it_closes_once(meter: SessionMeter) -> None:
    active = sample("agent_sessions_active")
    session: utils.EventEmitter[str] = utils.EventEmitter()
    meter.attach(session)
    assert sample("agent_sessions_active") == active + 1
    session.emit("close", SimpleNamespace(reason="participant_disconnected"))
    meter.close()
    assert sample("agent_sessions_active") == active


def test_a_reconnect_after_max_session_is_a_rollover_and_earlier_one_a_reconnect(meter: SessionMeter, clock: Clock) -> None:
    reconnects, rollovers = sample("agent_realtime_reconnects_total"), sample("agent_realtime_rollovers_total")
    clock.t += 10
    meter.on_reconnected()  # 10 s into a connection capped at 60 s: a failure
    clock.t += 61
    meter.on_reconnected()  # 61 s later: the planned rollover
    assert (meter.reconnects, meter.rollovers) == (1, 1)
    assert sample("agent_realtime_reconnects_total") - reconnects == 1
    assert sample("agent_realtime_rollovers_total") - rollovers == 1


def test_plugin_rollover_default_is_the_one_we_assume() -> None:
    from livekit.agents.llm._realtime.openai_utils import DEFAULT_MAX_SESSION_DURATION

    assert DEFAULT_MAX_SESSION_DURATION == PLUGIN_MAX_SESSION_S


# ---------------------------------------------------------------------- job ends (worker process)


def test_job_ends_count_failed_and_drained() -> None:
    failed, drained = JOBS_FAILED._value.get(), JOBS_DRAINED._value.get()
    pool: utils.EventEmitter[str] = utils.EventEmitter()
    draining = False
    count_job_ends(pool, draining=lambda: draining)
    job = object()
    pool.emit("process_closed", SimpleNamespace(pid=1, running_job=None, exitcode=0, killed=False))  # an idle process
    pool.emit("process_closed", SimpleNamespace(pid=2, running_job=job, exitcode=0, killed=False))  # a normal end
    pool.emit("process_closed", SimpleNamespace(pid=3, running_job=job, exitcode=-9, killed=False))  # crashed
    pool.emit("process_closed", SimpleNamespace(pid=4, running_job=job, exitcode=-9, killed=True))  # killed by the pool
    draining = True
    pool.emit("process_closed", SimpleNamespace(pid=5, running_job=job, exitcode=0, killed=False))  # ended during the drain
    assert JOBS_FAILED._value.get() - failed == 2
    assert JOBS_DRAINED._value.get() - drained == 1


# ---------------------------------------------------------------------- against a real realtime session


async def test_the_meter_reads_every_response_done_of_the_plugins_realtime_session() -> None:
    # livekit-plugins-openai's own session against the local server (no room): the raw
    # server events the meter takes carry the same usage the plugin reports in its metrics.
    import asyncio

    import aiohttp
    from livekit.agents.metrics import RealtimeModelMetrics
    from livekit.plugins import openai

    from agent.realtime.server import RealtimeServer, ServerOptions

    server = RealtimeServer(ServerOptions(port=0))
    await server.start()
    http = aiohttp.ClientSession()
    model = openai.realtime.RealtimeModel(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="local", http_session=http)
    rt = model.session()
    reported: list[RealtimeModelMetrics] = []
    done = asyncio.Event()

    def on_metrics(m: RealtimeModelMetrics) -> None:
        if isinstance(m, RealtimeModelMetrics) and m.request_id:  # a response's, not the connection's
            reported.append(m)
            done.set()

    rt.on("metrics_collected", on_metrics)
    meter = SessionMeter(model="gpt-realtime", prices=parse_prices(None), silence_s=0.5)
    meter.watch_realtime(rt)
    try:
        await rt.generate_reply(instructions='Say exactly: "Hi there."')
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await rt.aclose()
        await http.close()
        await server.aclose()
    (m,) = reported
    assert meter.responses == 1
    assert meter.usage.audio_out == m.output_token_details.audio_tokens > 0
    assert meter.usage.text_in == m.input_token_details.text_tokens > 0
    assert meter.usage.text_out == m.output_token_details.text_tokens
    assert meter.cost_usd == pytest.approx(m.output_token_details.audio_tokens / 1200 * 0.24 + m.input_token_details.audio_tokens / 600 * 0.06)
