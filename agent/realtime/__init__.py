"""The local OpenAI-Realtime-compatible server.

This package never imports ``livekit``: it speaks only the OpenAI Realtime
protocol, so it runs, scales and is tested on its own.

- ``protocol``: the pure session state machine (no asyncio, sockets or clock),
  with ``conversation`` (items and order), ``usage`` (tokens, rate limits),
  ``pacing`` (when reply audio is due), ``client_events`` (the parsing edge)
  and ``errors`` (OpenAI's error codes, one table).
- ``server``: the thin WebSocket shell around it; ``faults``: test fault injection.
- ``vad``, ``audio``, ``brain``, ``speech``: turn detection, codecs, replies, voice.
"""
