"""Speech for the local backend: espeak-ng, run as a subprocess, resampled to 24 kHz.

The synthesizer's home is :mod:`agent.sound.espeak` (the worker's reconnect
notice and the benchmarks use it too); these names stay importable here for
the server shell.
"""

from ..errors import SpeechError
from ..sound.espeak import OPENAI_VOICES, Synthesizer

__all__ = ["OPENAI_VOICES", "SpeechError", "Synthesizer"]
