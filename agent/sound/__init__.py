"""Sound helpers every part of the project shares: WAV files, resampling,
espeak-ng speech, the energy VAD and G.711.

One home, imported by the local realtime server (``agent.realtime``), the
worker's audio front-end and link (``agent.audio``, ``agent.link``), the
room-test harness (``agent.testing``) and the benchmarks (``bench/``). So
that all of them can, this package imports neither ``livekit`` (the realtime
server must never load it) nor anything of theirs, and keeps no state bound
to an event loop at import: numpy arrays in, numpy arrays out.

    wav.py       read any PCM WAV as int16, write int16 WAVs whole or not at all
    resample.py  linear resampling of int16 mono
    espeak.py    espeak-ng: a WAV file, samples now, or cached syntheses for a server
    vad.py       the server VAD's energy turn detector (also the trace report's yardstick)
    g711.py      G.711 μ-law, and a telephone line made of it (band and companding)
"""

# The rate of the OpenAI Realtime protocol's PCM16 audio: what the local
# server buffers, what its VAD runs on and what its speech is made at.
REALTIME_RATE = 24000
