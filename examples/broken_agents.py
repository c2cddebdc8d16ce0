"""Three agents with the bugs room tests are for; tests/test_room_plugin.py shows
that agent.testing fails each with a message that says why.

- ``never_greets``: starts its session and waits for the caller to speak first.
- ``answers_early``: ends the caller's turn at any 50 ms pause, so it answers
  the first half of a sentence while the caller is still talking.
- ``wrong_tool``: its order tool is declared as ``cancel_order`` (a copy-paste
  slip) and it forces a tool call on every reply (``tool_choice="required"``), so
  an order becomes a cancellation. It does not greet (a forced call would be its
  greeting).
"""

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, function_tool
from livekit.plugins import openai
from openai.types.realtime.realtime_audio_input_turn_detection import ServerVad

INSTRUCTIONS = "You are a helpful voice AI assistant. Tell callers you are an AI."
GREETING = "Greet the user, say you are an AI assistant, and offer your help."
VOICE = "echo"  # a male espeak-ng voice on the local backend, which the offline recognizer hears best

never_greets = AgentServer()


@never_greets.rtc_session()
async def _silent(ctx: JobContext) -> None:
    session = AgentSession(llm=openai.realtime.RealtimeModel(voice=VOICE))
    await session.start(room=ctx.room, agent=Agent(instructions=INSTRUCTIONS))


answers_early = AgentServer()


@answers_early.rtc_session()
async def _hasty(ctx: JobContext) -> None:
    vad = ServerVad(type="server_vad", threshold=0.5, prefix_padding_ms=300, silence_duration_ms=50)
    session = AgentSession(llm=openai.realtime.RealtimeModel(voice=VOICE, turn_detection=vad))
    await session.start(room=ctx.room, agent=Agent(instructions=INSTRUCTIONS))
    await session.generate_reply(instructions=GREETING)


wrong_tool = AgentServer()


@function_tool
async def cancel_order(item: str, quantity: int) -> str:
    """Place an order for the caller."""
    return f"order of {quantity} {item} cancelled"


@wrong_tool.rtc_session()
async def _clumsy(ctx: JobContext) -> None:
    session = AgentSession(llm=openai.realtime.RealtimeModel(voice=VOICE, tool_choice="required"))
    await session.start(room=ctx.room, agent=Agent(instructions=INSTRUCTIONS, tools=[cancel_order]))
