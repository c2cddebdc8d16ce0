"""WAV files as int16 numpy arrays.

:func:`read_wav` takes any PCM sample width (espeak-ng writes 16-bit, other
tools 8, 24 or 32) and gives int16 frames x channels; :func:`read_mono`
averages the channels; :func:`write_wav` writes 16-bit PCM whole or not at
all (a crash mid-write leaves no truncated file for a reader to trip on).
"""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path

import numpy as np

from ..errors import AudioFormatError

WavSource = str | Path | bytes


def read_wav(source: WavSource) -> tuple[np.ndarray, int]:
    """(int16 samples x channels, sample rate) of a PCM WAV file, or of its bytes.

    A file that is no WAV raises ``wave.Error`` (or ``EOFError``); a sample
    width other than 8, 16, 24 or 32 bits raises :class:`AudioFormatError`.
    """
    name = "WAV bytes" if isinstance(source, bytes) else str(source)
    with wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16  # sign-extend, keep 16 bits
    elif width == 4:
        data = (np.frombuffer(raw, "<i4").astype(np.int64) >> 16).astype(np.int32)
    else:
        raise AudioFormatError(f"{name}: unsupported sample width {width}")
    return data.astype(np.int16).reshape(-1, channels), rate


def to_mono(data: np.ndarray) -> np.ndarray:
    """int16 frames x channels -> int16 mono, the channels averaged."""
    if data.ndim == 1:
        return data.astype(np.int16, copy=False)
    if data.shape[1] == 1:
        return data[:, 0].copy()
    return np.asarray(data.astype(np.int32).mean(axis=1), dtype=np.int16)


def read_mono(source: WavSource) -> tuple[np.ndarray, int]:
    """A PCM WAV (file or bytes) as int16 mono, channels averaged, and its sample rate."""
    data, rate = read_wav(source)
    return to_mono(data), rate


def write_wav(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    """Write int16 ``pcm`` (mono, or frames x channels) as 16-bit PCM, whole or not at all."""
    data = np.asarray(pcm)
    channels = 1 if data.ndim == 1 else data.shape[1]
    partial = f"{path}.partial"
    with wave.open(partial, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.astype("<i2").tobytes())
    os.replace(partial, path)
