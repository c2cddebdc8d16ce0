"""The stock livekit-agents realtime worker: the baseline of the benchmarks.

What livekit-agents' documentation shows for a speech-to-speech agent, and
nothing else: an AgentServer, one AgentSession with livekit-plugins-openai's
RealtimeModel, and generate_reply for the greeting. The realtime backend is
the same as ours (``AGENT_REALTIME_BASE_URL``, e.g. the local realtime server),
and so are the turn detection and input transcription settings, so that only
the workers differ. livekit-agents reads LIVEKIT_URL, LIVEKIT_API_KEY and
LIVEKIT_API_SECRET itself.

One change from the defaults, the same as our worker gets in the benchmarks:
its load is its jobs over AGENT_MAX_JOBS, not the host's CPU, which on a
2-core box that also runs the server, the backend and the callers would
refuse rooms for load that is not the worker's.

    python bench/stock_worker.py start
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.plugins import openai
from openai.types.realtime import AudioTranscription
from openai.types.realtime.realtime_audio_input_turn_detection import ServerVad

GREETING = "Hello! I'm an AI assistant. How can I help you today?"

MAX_JOBS = int(os.environ.get("AGENT_MAX_JOBS", "10"))
# As ours reads it (agent/session.py): "off" asks for no input transcription.
TRANSCRIPTION = os.environ.get("AGENT_INPUT_TRANSCRIPTION") or "pocketsphinx"
server = AgentServer(
    port=int(os.environ.get("AGENT_HTTP_PORT", "8081")),
    num_idle_processes=int(os.environ.get("AGENT_NUM_IDLE_PROCESSES", "2")),
    load_fnc=lambda s: min(1.0, len(s.active_jobs) / MAX_JOBS),
)


# A name (AGENT_NAME) makes it join only rooms dispatched to it by name, as ours does:
# bench/latency.py runs both workers at once and picks one per call with the token.
@server.rtc_session(agent_name=os.environ.get("AGENT_NAME", ""))
async def entrypoint(ctx: JobContext) -> None:
    model = openai.realtime.RealtimeModel(
        base_url=os.environ.get("AGENT_REALTIME_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY", "local"),
        turn_detection=ServerVad(type="server_vad", threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500),
        input_audio_transcription=None if TRANSCRIPTION == "off" else AudioTranscription(model=TRANSCRIPTION),
    )
    session = AgentSession(llm=model)
    await session.start(room=ctx.room, agent=Agent(instructions="You are a helpful voice assistant. Tell callers you are an AI."))
    session.generate_reply(instructions=f'Greet the caller and tell them you are an AI assistant. Say exactly: "{GREETING}"')


if __name__ == "__main__":
    cli.run_app(server)
