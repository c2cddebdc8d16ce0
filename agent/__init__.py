"""A LiveKit voice-agent worker on the OpenAI Realtime protocol.

Sub-packages:
- ``agent.realtime``: the local OpenAI-Realtime-compatible server (no livekit imports).
- ``agent.testing``: room-test harness (namespaces, livekit-server, simulated callers).
"""

__version__ = "0.1.0"
