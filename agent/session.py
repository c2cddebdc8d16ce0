"""One room's voice session: realtime model, instructions, greeting, event wiring.

This is the one module that wires the model (and, later, the tool registry
and the audio front-end) to a room.
"""

from __future__ import annotations

import logging

from livekit.agents import Agent, AgentSession, JobContext, room_io
from livekit.agents.types import NOT_GIVEN, APIConnectOptions
from livekit.plugins import openai
from openai.types.realtime import AudioTranscription
from openai.types.realtime.realtime_audio_input_turn_detection import ServerVad

from .config import Settings
from .tools import build_tools

log = logging.getLogger("agent.session")


def greeting_instructions(greeting: str) -> str:
    """Response instructions for the greeting.

    The quoted sentence is what both OpenAI's model and the local scripted
    brain say; the disclosure ("I'm an AI") lives in it.
    """
    return f'Greet the caller and tell them you are an AI assistant. Say exactly: "{greeting}"'


def build_model(settings: Settings) -> openai.realtime.RealtimeModel:
    """The realtime model, pointed at OpenAI or at the local backend by ``base_url``."""
    return openai.realtime.RealtimeModel(
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
        # OpenAI: the plugin's default transcription model. The local backend
        # transcribes offline (PocketSphinx) and its scripted brain reads the words.
        input_audio_transcription=NOT_GIVEN if settings.uses_openai else AudioTranscription(model="pocketsphinx"),
        conn_options=APIConnectOptions(max_retry=3, retry_interval=2.0, timeout=10.0),
    )


class VoiceAgent(Agent):
    def __init__(self, settings: Settings) -> None:
        super().__init__(instructions=settings.instructions, tools=build_tools())
        self._greeting = settings.greeting

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions=greeting_instructions(self._greeting))


async def run_session(ctx: JobContext, settings: Settings) -> AgentSession:
    """Start the agent in ``ctx.room``; returns once the session is running."""
    session: AgentSession = AgentSession(llm=build_model(settings))

    @session.on("close")
    def _on_close(ev: object) -> None:
        # The caller left (or the session failed): end the job now rather than
        # when livekit-server closes the empty room, so the worker is free again.
        reason = getattr(ev, "reason", ev)
        log.info("session closed in room %s: %s", ctx.room.name, reason)
        ctx.shutdown(reason=f"session closed: {reason}")

    await session.start(
        room=ctx.room,
        agent=VoiceAgent(settings),
        room_options=room_io.RoomOptions(close_on_disconnect=True),
    )
    return session
