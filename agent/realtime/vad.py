"""The server VAD: its home is :mod:`agent.sound.vad`, shared with the trace report."""

from ..sound.vad import FRAME_MS, FRAME_SAMPLES, EnergyVad, SpeechStarted, SpeechStopped, VadConfig, VadEvent, threshold_to_dbfs

__all__ = ["FRAME_MS", "FRAME_SAMPLES", "EnergyVad", "SpeechStarted", "SpeechStopped", "VadConfig", "VadEvent", "threshold_to_dbfs"]
