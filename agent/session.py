"""One room's voice session: realtime model, instructions, greeting, event wiring.

This is the one module that wires the model (and, later, the tool registry
and the audio front-end) to a room.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from typing import Any

from livekit import api
from livekit.agents import Agent, AgentSession, JobContext, RunContext, llm, room_io
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGiven
from livekit.plugins import openai
from openai.types.realtime import AudioTranscription
from openai.types.realtime.realtime_audio_input_turn_detection import ServerVad

from .audio.bargein import BargeIn, Listener
from .audio.frontend import FrontendProcessor
from .audio.tap import FarEndTap
from .caller_link import CallerLink
from .config import Settings
from .feed import RoomFeed
from .internals import claim_user_turn, steady_realtime_model
from .link import HeartbeatSession, ReconnectNotice
from .metrics import SessionMeter
from .phone import (
    PHONE_NUMBER_ATTRIBUTE,
    KeypadBuffer,
    attach_keypad,
    is_phone_caller,
    outbound_call,
    phone_instructions,
    transfer_call,
    wait_answered,
)
from .prewarm import INPUT_RATE, take_prepared
from .records import SessionRecorder, open_records
from .timing import Stopwatch, Timeline
from .tools import CallContext, Services, open_registry, tool_names_for_room
from .tools.builtin import ESCALATION_TOPIC

log = logging.getLogger("agent.session")


def greeting_instructions(greeting: str) -> str:
    """Response instructions for the greeting.

    The quoted sentence is what both OpenAI's model and the local scripted
    brain say; the disclosure ("I'm an AI") lives in it.
    """
    return f'Greet the caller and tell them you are an AI assistant. Say exactly: "{greeting}"'


def input_transcription(settings: Settings) -> AudioTranscription | None | NotGiven:
    """What transcribes the caller's audio (``AGENT_INPUT_TRANSCRIPTION``).

    By default, OpenAI: the plugin's default transcription model; the local
    backend: PocketSphinx, offline (its scripted brain reads the words).
    "off": none, so no transcription is paid for or waited on (the model
    still hears the audio; transcripts of the caller are then missing)."""
    model = settings.input_transcription.strip()
    if model == "off":
        return None
    if model:
        return AudioTranscription(model=model)
    return NOT_GIVEN if settings.uses_openai else AudioTranscription(model="pocketsphinx")


def build_model(settings: Settings, http_session: HeartbeatSession | None = None) -> openai.realtime.RealtimeModel:
    """The realtime model, pointed at OpenAI or at the local backend by ``base_url``.

    ``http_session`` carries the WebSocket heartbeat that turns a hung backend
    into a reconnect (see agent/link.py)."""
    return steady_realtime_model(
        openai.realtime.RealtimeModel(
            http_session=http_session,  # type: ignore[arg-type]  # quacks like aiohttp.ClientSession for ws_connect
            model=settings.realtime_model,
            voice=settings.voice,
            base_url=settings.backend_base_url,
            api_key=settings.backend_api_key,
            turn_detection=ServerVad(
                type="server_vad",
                threshold=settings.vad_threshold,
                prefix_padding_ms=300,
                silence_duration_ms=settings.silence_duration_ms,
                create_response=True,
                interrupt_response=True,
            ),
            input_audio_transcription=input_transcription(settings),
            conn_options=APIConnectOptions(max_retry=settings.realtime_max_retries, retry_interval=2.0, timeout=settings.realtime_connect_timeout_s),
            # Roll over to a new realtime session before the backend's cap (OpenAI: 60 min);
            # the plugin waits for the current reply, then reconnects with the context.
            max_session_duration=settings.realtime_max_session_s if settings.realtime_max_session_s else NOT_GIVEN,
        )
    )


RESUME_LINE = "Sorry, I lost the line for a moment. I'm back, and I remember our conversation."
# livekit-agents gives a reply 10 s to start (response.created), then drops it for
# good: a backend that stalls as a call comes in would leave the caller waiting
# in silence for a greeting that never comes. The greeting is asked for again,
# a second after each failure, for this long.
GREETING_RETRY_S = 60.0
GREETING_RETRY_PAUSE_S = 1.0


class VoiceAgent(Agent):
    def __init__(
        self,
        settings: Settings,
        tools: list[Any],
        history: llm.ChatContext | None = None,
        notice: ReconnectNotice | None = None,
        meter: SessionMeter | None = None,
        clock: Stopwatch | None = None,
        timeline: Timeline | None = None,
        *,
        greet: bool = True,
        admitted: asyncio.Future[bool] | None = None,
    ) -> None:
        super().__init__(instructions=settings.instructions, tools=tools, chat_ctx=history)
        self._greet = greet  # False: the greeting waits for the callee of a call we placed (run_session asks for it)
        # True once the room is joined and this agent is its one agent (the
        # worker's entrypoint); the agent says nothing before, nothing if False.
        self._admitted = admitted
        self._clock = clock
        self._timeline = timeline
        self._greeting = settings.greeting
        self._resumed = history is not None
        self._notice = notice
        self._meter = meter
        self._reask_atask: asyncio.Task[None] | None = None
        self._greet_atask: asyncio.Task[None] | None = None

    async def on_enter(self) -> None:
        rt = self.realtime_llm_session
        if self._notice is not None:
            rt.on("error", self._notice.on_error)
            rt.on("session_reconnected", self._notice.on_reconnected)
            rt.on("openai_server_event_received", self._notice.on_server_event)
        rt.on("session_reconnected", self._on_reconnected)
        if self._meter is not None:
            self._meter.watch_realtime(rt)  # before the greeting, so its usage counts
        if self._timeline is not None:
            rt.on("openai_server_event_received", self._timeline.on_server_event)
        if self._resumed:
            # A new job for a room whose agent died: the conversation goes on.
            self.greet(f'Say exactly: "{RESUME_LINE}"')
        elif self._greet:
            self.greet()
        if self._clock is not None:
            self._clock.lap("agent started")
            log.info("job set-up until the greeting is asked for: %s", self._clock.summary())

    def _on_reconnected(self, _ev: object) -> None:
        # The realtime connection was replaced and the context replayed onto it
        # (livekit-agents does that). A reply cut by the drop is lost with the old
        # connection: ask again rather than leave the caller in silence.
        # Only a plain unanswered turn: after a function call the framework itself
        # sends the output and asks for the reply; asking too would answer twice.
        items = self.session.history.items
        last = items[-1] if items else None
        unanswered = getattr(last, "type", None) == "message" and (
            last.role == "user" or (last.role == "assistant" and last.interrupted)  # type: ignore[union-attr]
        )
        log.info("realtime session reconnected; last reply %s", "unfinished: asking again" if unanswered else "complete")
        if unanswered and (self._reask_atask is None or self._reask_atask.done()):
            self._reask_atask = asyncio.create_task(self._reask(), name="reask_after_reconnect")

    def greet(self, instructions: str | None = None) -> None:
        """Greet the caller (or say what ``instructions`` ask for in its place), asking
        again while the reply fails to start (:data:`GREETING_RETRY_S`), until the
        caller speaks first. A greeting asked for before is superseded."""
        if self._greet_atask is not None:
            self._greet_atask.cancel()
        self._greet_atask = asyncio.create_task(
            self._greet_until_said(instructions or greeting_instructions(self._greeting)), name="greeting"
        )

    def _turns(self, role: str) -> int:
        return sum(1 for item in self.session.history.items if isinstance(item, llm.ChatMessage) and item.role == role)

    async def _greet_until_said(self, instructions: str) -> None:
        """Two ways a greeting goes unsaid: livekit-agents drops a reply that did
        not start within 10 s (the handle carries the error), and a reply stalled
        by a link outage is interrupted by the spoken reconnect notice
        (agent.link.ReconnectNotice) with nothing said. A greeting cut short by
        the caller was said (its message is in the history), and once the
        caller speaks the conversation goes on without one."""
        if self._admitted is not None:
            try:
                if not await asyncio.shield(self._admitted):
                    return  # another agent serves the room; this job is leaving
            except Exception:  # the room was never joined: the session fails with it
                return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GREETING_RETRY_S
        said, spoken = self._turns("assistant"), self._turns("user")
        attempt = 1
        while True:
            try:
                handle = self.session.generate_reply(instructions=instructions)
            except RuntimeError as e:  # the session is closing
                log.info("greeting not asked for: %s", e)
                return
            await handle  # never raises; a failure is on the handle
            error = handle.exception()
            if (error is None and not handle.interrupted) or self._turns("assistant") > said:
                return
            why = str(error) if error is not None else "interrupted before a word was said"
            if self._turns("user") > spoken:
                log.warning("greeting failed (%s); the caller has spoken since, the conversation goes on", why)
                return
            if loop.time() >= deadline:
                log.error("greeting failed %d times in %.0f s (%s); the agent waits for the caller", attempt, GREETING_RETRY_S, why)
                return
            attempt += 1
            log.warning("greeting failed (%s); asking again (attempt %d)", why, attempt)
            await asyncio.sleep(GREETING_RETRY_PAUSE_S)
            # A caller who cut in before the first word may still be talking, or
            # their turn was committed meanwhile: their answer comes first.
            if self._turns("user") > spoken or self.session.user_state == "speaking":
                log.info("the caller spoke before the greeting; the conversation goes on without it")
                return

    async def aclose(self) -> None:
        """Cancel and await what this agent started (a greeting or re-ask in flight); the job's shutdown calls it."""
        tasks = [t for t in (self._reask_atask, self._greet_atask) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _reask(self) -> None:
        try:
            ctx = self.chat_ctx.copy()
            last = ctx.items[-1] if ctx.items else None
            if getattr(last, "type", None) == "message" and last.role == "assistant":  # type: ignore[union-attr]
                # The cut reply is dropped and made again in full; kept, it would
                # read as an answer already given.
                ctx.items.pop()
            # Also brings over what the lost connection never confirmed (a message
            # typed while the backend hung), which the plugin's replay leaves out.
            await self.update_chat_ctx(ctx)
            self.session.generate_reply()
        except Exception:
            log.exception("could not ask again after the reconnect")


class RoomHooks:
    """What the built-in tools may do to the room: mark an escalation, hang up.

    Owns the hang-up task; it is cancelled with the job.
    """

    def __init__(self, ctx: JobContext, session: AgentSession[Any], *, transfer_to: str | None = None) -> None:
        self._ctx = ctx
        self._session = session
        self._transfer_to = transfer_to
        self.phone_caller: str | None = None  # the linked caller's identity, when it is on the phone
        self._hangup_atask: asyncio.Task[None] | None = None
        self._transfer_atask: asyncio.Task[None] | None = None

    async def mark_escalated(self, reason: str) -> bool:
        """Tell the room; on a phone call with a transfer target, put the call
        through once the agent has said so. True when it will."""
        room = self._ctx.room
        await room.local_participant.set_attributes({"agent.escalated": "true", "agent.escalation_reason": reason[:200]})
        payload = json.dumps({"type": "escalation", "room": room.name, "reason": reason}).encode()
        await room.local_participant.publish_data(payload, reliable=True, topic=ESCALATION_TOPIC)
        if not (self._transfer_to and self.phone_caller):
            return False
        if self._transfer_atask is None:
            self._transfer_atask = asyncio.create_task(self._transfer_after_saying_so(self.phone_caller, self._transfer_to), name="transfer")
        return True

    async def _transfer_after_saying_so(self, identity: str, target: str) -> None:
        await self._after_agent_speaks()
        try:
            await transfer_call(self._ctx.api, self._ctx.room.name, identity, target)
        except Exception as e:  # the call goes on with the agent; the room was told of the escalation
            log.error("could not transfer the call in room %s to %s: %s", self._ctx.room.name, target, e)

    async def end_call(self) -> None:
        if self._hangup_atask is None:
            self._hangup_atask = asyncio.create_task(self._hang_up_after_goodbye(), name="hang_up")

    async def _hang_up_after_goodbye(self) -> None:
        await self._after_agent_speaks()
        log.info("ending the call in room %s (end_call)", self._ctx.room.name)
        try:
            await self._ctx.api.room.delete_room(api.DeleteRoomRequest(room=self._ctx.room.name))
        except Exception as e:
            log.warning("could not delete room %s: %s", self._ctx.room.name, e)
        self._ctx.shutdown(reason="end_call")

    async def _after_agent_speaks(self) -> None:
        # The tool's output makes the model say something (goodbye, "I am
        # putting you through"); act once that is said: a second for the reply
        # to start, then the agent not speaking for a second (or after 20 s,
        # whatever it does). Driven by state changes.
        changed = asyncio.Event()
        on_change = lambda _ev: changed.set()  # noqa: E731
        self._session.on("agent_state_changed", on_change)
        try:
            async with asyncio.timeout(20):
                await asyncio.sleep(1.0)  # the goodbye reply starts
                while True:
                    changed.clear()
                    if self._session.agent_state == "speaking":
                        await changed.wait()
                        continue
                    try:
                        async with asyncio.timeout(1.0):
                            await changed.wait()
                    except TimeoutError:
                        break  # quiet for a second: the goodbye is said
        except TimeoutError:
            pass
        finally:
            self._session.off("agent_state_changed", on_change)

    async def aclose(self) -> None:
        tasks = [t for t in (self._hangup_atask, self._transfer_atask) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


MAX_CHAT_CHARS = 2000  # a typed message longer than this is cut (and logged), not spoken back for minutes


async def _bounded_chat(sess: AgentSession[Any], ev: Any) -> None:
    """Room chat (``lk.chat``) to the model, as livekit-agents does, but bounded:
    an oversized message is cut to MAX_CHAT_CHARS with a log line."""
    text = ev.text
    if len(text) > MAX_CHAT_CHARS:
        log.warning("chat message of %d characters from %s cut to %d", len(text), getattr(ev.participant, "identity", "?"), MAX_CHAT_CHARS)
        text = text[:MAX_CHAT_CHARS]
    if not text.strip():
        return
    await _user_text(sess, text)


async def _user_text(sess: AgentSession[Any], text: str) -> None:
    """A user message that is not speech (chat, keypad digits), answered at once."""
    async with claim_user_turn(sess):  # as livekit-agents' default chat handler does
        await sess.interrupt()
        sess.generate_reply(user_input=text)


async def run_session(
    ctx: JobContext, settings: Settings, clock: Stopwatch | None = None, admitted: asyncio.Future[bool] | None = None
) -> AgentSession[Any]:
    """Start the agent in ``ctx.room``; returns once the session is running.

    The room need not be joined yet: the entrypoint joins it beside this start
    (livekit-agents' ``session.start`` opens the realtime session meanwhile, and
    its own request for the join waits for the entrypoint's), so nothing before
    the start may need the connection (the room's name and metadata come from
    the job). ``admitted`` (see :class:`VoiceAgent`) holds the greeting until the
    entrypoint knows this agent is the room's one.
    ``clock`` gets a lap per step of the set-up, logged when the greeting is asked for."""
    clock = clock or Stopwatch()
    # Built in the idle job process when it could be (agent.prewarm), else now.
    prepared = take_prepared(ctx.proc, settings, clock)
    frontend = prepared.frontend
    frontend_config = frontend.config
    trace_dir = settings.frontend_trace_dir
    if trace_dir:
        frontend.trace = []
    http = HeartbeatSession(settings.realtime_heartbeat_s)
    ctx.add_shutdown_callback(http.close)
    session: AgentSession[Any] = AgentSession(
        llm=build_model(settings, http),
        # Our canceller is ready from the first frame; the framework's warm-up
        # (ignoring the caller for 3 s of agent speech) would only hide echo.
        aec_warmup_duration=None if frontend_config.echo_cancellation else NOT_GIVEN,
    )
    clock.lap("model")

    transcript = prepared.transcript

    @session.on("close")
    def _on_close(ev: object) -> None:
        # The caller left (or the session failed): end the job now rather than
        # when livekit-server closes the empty room, so the worker is free again.
        reason = getattr(ev, "reason", ev)
        log.info("session closed in room %s: %s", ctx.room.name, reason)
        transcript.record_end(ctx.room.name, str(reason))
        ctx.shutdown(reason=f"session closed: {reason}")

    history = transcript.chat_context(ctx.room.name)
    if history is not None:
        log.info("room %s: resuming a conversation of %d items from the persisted transcript", ctx.room.name, len(history.items))
    clock.lap("transcript")

    @session.on("conversation_item_added")
    def _persist_message(ev: Any) -> None:
        if isinstance(ev.item, llm.ChatMessage):
            transcript.record_message(ctx.room.name, ev.item)

    @session.on("function_tools_executed")
    def _persist_calls(ev: Any) -> None:
        transcript.record_tool_calls(ctx.room.name, ev.function_calls, ev.function_call_outputs)

    registry, mcp = await open_registry(settings, prepared.registry)
    ctx.add_shutdown_callback(mcp.aclose)
    clock.lap("tools")
    hooks = RoomHooks(ctx, session, transfer_to=settings.transfer_to)
    ctx.add_shutdown_callback(hooks.aclose)
    names = tool_names_for_room(settings, [ctx.job.metadata, ctx.job.room.metadata])
    tools = registry.select(names)
    services = Services(
        store=prepared.store,
        room_name=ctx.room.name,
        escalation_webhook=settings.escalation_webhook,
        mark_escalated=hooks.mark_escalated,
        end_call=hooks.end_call,
    )
    log.info("room %s gets %d tools: %s", ctx.room.name, len(tools), ", ".join(tools.names()))

    def make_call(run_ctx: RunContext[Any]) -> CallContext:
        return CallContext(call_id=run_ctx.function_call.call_id, room=ctx.room.name, services=services)

    notice = ReconnectNotice(session, settings.reconnect_notice, settings.reconnect_notice_after_s)
    ctx.add_shutdown_callback(notice.aclose)
    meter = SessionMeter.for_session(settings, tools.names())
    meter.attach(session)
    feed = RoomFeed(lambda: ctx.room.local_participant, meter.usage_summary)  # there once the room is joined
    meter.on_usage_change = feed.usage_changed
    ctx.add_shutdown_callback(feed.aclose)
    SessionRecorder(open_records(settings), transcript, meter, room=ctx.room.name, worker=ctx.worker_id, job_id=ctx.job.id).attach(session)
    timeline = Timeline(ctx.room.name, clock)
    listener: Listener | None = None

    def hear(frame: Any) -> None:  # the cleaned caller audio, to the barge-in VAD once it runs
        if listener is not None:
            listener.push(frame)

    listens = prepared.vad is not None
    placed = outbound_call(ctx.job.metadata)  # a call the agent places: speak once the callee answers
    agent = VoiceAgent(
        settings, tools.function_tools(make_call, feed), history, notice, meter, clock, timeline, greet=placed is None, admitted=admitted
    )
    ctx.add_shutdown_callback(agent.aclose)
    clock.lap("services")
    await session.start(
        room=ctx.room,
        agent=agent,
        room_options=room_io.RoomOptions(
            close_on_disconnect=True,
            text_input=room_io.TextInputOptions(text_input_cb=_bounded_chat),
            audio_input=room_io.AudioInputOptions(
                sample_rate=INPUT_RATE,
                noise_cancellation=(
                    FrontendProcessor(frontend, listener=hear if listens else None, process=frontend_config.enabled)
                    if frontend_config.enabled or listens
                    else None
                ),
                # gain control, if any, runs inside the front-end (after the canceller)
                auto_gain_control=False if frontend_config.enabled else NOT_GIVEN,
            ),
        ),
    )
    tap: FarEndTap | None = None
    if (frontend_config.echo_cancellation or listens) and session.output.audio is not None:
        session.output.audio = tap = FarEndTap(frontend, session.output.audio)
    if listens and tap is not None:

        def interruptible() -> bool:
            speech = session.current_speech
            return session.agent_state == "speaking" and speech is not None and speech.allow_interruptions

        barge_in = BargeIn(tap, interruptible, resume_s=settings.barge_in_resume_s, loop=asyncio.get_running_loop())
        listener = Listener(prepared.vad, barge_in)
        ctx.add_shutdown_callback(listener.aclose)

        @session.on("user_state_changed")
        def _confirm(ev: Any) -> None:  # the backend's speech_started (the session has no VAD of its own)
            if ev.new_state == "speaking":
                barge_in.on_confirmed()

        @session.on("close")
        def _report_barge_in(_ev: object) -> None:
            lead = sorted(barge_in.lead_s)
            log.info(
                "barge-in in room %s: %d pauses, %d confirmed by the backend (agent stopped %s ms before it, median), %d resumed",
                ctx.room.name, barge_in.pauses, barge_in.confirmed,
                round(lead[len(lead) // 2] * 1000) if lead else "-", barge_in.resumed,
            )  # fmt: skip

    if session.output.audio is not None:
        session.output.audio.on("playback_started", timeline.on_playback_started)

    def relink(identity: str) -> None:
        ctx.log_context_fields["participant"] = identity  # on this job's log records from now on
        hooks.phone_caller = identity if is_phone_caller(ctx.room.remote_participants.get(identity)) else None
        frontend.on_phone_line(hooks.phone_caller is not None)
        session.room_io.set_participant(identity)
        session.interrupt()
        agent.greet()

    keypad = KeypadBuffer(lambda text: _user_text(session, text), pause_s=settings.dtmf_pause_s, caller=lambda: hooks.phone_caller)
    ctx.add_shutdown_callback(keypad.aclose)

    async def read_keypad(timeout: float) -> str | None:
        if hooks.phone_caller is None:
            raise LookupError("the caller is not on a phone")
        return await keypad.next_entry(timeout)

    services.read_keypad = read_keypad
    detach_keypad = attach_keypad(ctx.room, keypad)

    async def _detach_keypad() -> None:
        detach_keypad()

    ctx.add_shutdown_callback(_detach_keypad)

    async def first_link() -> str | None:
        if placed is None:
            await session.room_io.wait_for_ready()
        else:
            try:  # the callee joins while the phone rings; no one, if the call failed before
                await asyncio.wait_for(session.room_io.wait_for_ready(), placed.wait_s)
            except TimeoutError:
                log.warning("room %s: the call to %s never reached the room; leaving", ctx.room.name, placed.to)
                ctx.shutdown(reason="the call was not placed")
                return None
        linked = session.room_io.linked_participant
        if linked:
            ctx.log_context_fields["participant"] = linked.identity  # on this job's log records from now on
            if is_phone_caller(linked):
                hooks.phone_caller = linked.identity
                frontend.on_phone_line(True)  # the echo can hold only the telephone band
                log.info("room %s: the caller is on the phone (%s)", ctx.room.name, linked.attributes.get(PHONE_NUMBER_ATTRIBUTE, "number withheld"))
                await agent.update_instructions(phone_instructions(settings.instructions, linked, placed=placed is not None))
            if placed is not None:
                if is_phone_caller(linked) and not await wait_answered(ctx.room, linked.identity, placed.wait_s):
                    log.info("room %s: %s did not answer; leaving", ctx.room.name, placed.to)
                    ctx.shutdown(reason="the callee did not answer")
                    return None
                log.info("room %s: %s answered; greeting", ctx.room.name, placed.to)
                agent.greet()
        return linked.identity if linked else None

    link = CallerLink(
        ctx.room, settings.agent_name, first_link=first_link(),
        relink=relink, leave=lambda reason: ctx.shutdown(reason=reason),
    )  # fmt: skip
    ctx.add_shutdown_callback(link.aclose)

    @session.on("close")
    def _report_frontend(ev: object) -> None:
        if trace_dir:
            frontend.write_trace(os.path.join(trace_dir, f"{ctx.room.name}.wav"))
        if frontend.frames:
            log.info(
                "audio front-end in room %s: %d frames, %.3f ms CPU per 10 ms frame, echo lag %.0f ms (estimates %s), "
                "echo return loss %.1f dB, %d agent turns",
                ctx.room.name, frontend.frames, frontend.cpu_s / frontend.frames * 1000, frontend.lag_s * 1000,
                [round(x * 1000) for x in frontend.lag_estimates[-5:]], 10 * math.log10(max(frontend.erl.value, 1e-12)), frontend.turns,
            )  # fmt: skip
            log.info("far-end segment anchors moved by (ms): %s", [round(x * 1000) for x in frontend.anchor_shifts[-20:]])

    return session
