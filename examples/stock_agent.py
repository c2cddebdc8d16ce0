"""The stock livekit-agents realtime agent, as livekit-agents' documentation
shows it: an AgentServer, an AgentSession with livekit-plugins-openai's
RealtimeModel, a greeting. Nothing of this project's.

    python examples/stock_agent.py start

examples/test_example_agents.py tests it in real rooms with agent.testing's pytest
plugin: livekit-plugins-openai reads OPENAI_BASE_URL, which the plugin points
at the local realtime backend.
"""

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.plugins import openai

server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(llm=openai.realtime.RealtimeModel(voice="echo"))
    await session.start(room=ctx.room, agent=Agent(instructions="You are a helpful voice AI assistant. Tell callers you are an AI."))
    await session.generate_reply(instructions="Greet the user, say you are an AI assistant, and offer your help.")


if __name__ == "__main__":
    cli.run_app(server)
