"""The local OpenAI-Realtime-compatible server.

This package never imports ``livekit``: it speaks only the OpenAI Realtime
protocol, so it runs, scales and is tested on its own.

- ``protocol``: the pure session state machine (no asyncio, sockets or clock).
- ``server``: the thin WebSocket shell around it.
- ``vad``, ``audio``, ``brain``, ``speech``: turn detection, codecs, replies, voice.
"""
