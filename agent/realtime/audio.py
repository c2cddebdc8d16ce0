"""Audio formats of the Realtime protocol: PCM16 24 kHz, G.711 mu-law and A-law.

Internally the session keeps every buffer as PCM16 mono at 24 kHz; these
functions convert at the edges. G.711 runs at 8 kHz, so it is resampled.
"""

from __future__ import annotations

import numpy as np

from ..errors import AudioFormatError
from ..sound import REALTIME_RATE
from ..sound.resample import resample

__all__ = ["BYTES_PER_MS_PCM16", "G711_RATE", "SAMPLE_RATE", "AudioFormatError", "bytes_per_ms", "decode", "encode", "resample"]

SAMPLE_RATE = REALTIME_RATE
G711_RATE = 8000
BYTES_PER_MS_PCM16 = SAMPLE_RATE * 2 // 1000  # 48


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    sample = magnitude - 0x84
    return np.where(sign != 0, -sample, sample).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()
# Encoding by table lookup over all 65536 int16 values: exact inverse of the
# nearest decode level, and a single vectorised gather at run time.
_ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32)


def _encode_table(decode: np.ndarray) -> np.ndarray:
    order = np.argsort(decode.astype(np.int32))
    levels = decode.astype(np.int32)[order]
    idx = np.searchsorted(levels, _ALL_INT16)
    idx = np.clip(idx, 1, len(levels) - 1)
    left, right = levels[idx - 1], levels[idx]
    nearest = np.where(np.abs(_ALL_INT16 - left) <= np.abs(right - _ALL_INT16), idx - 1, idx)
    return order[nearest].astype(np.uint8)


_ULAW_ENCODE = _encode_table(_ULAW_DECODE)
_ALAW_ENCODE = _encode_table(_ALAW_DECODE)


def decode(data: bytes, fmt: str) -> np.ndarray:
    """Bytes in a protocol format -> int16 mono at 24 kHz."""
    if fmt == "audio/pcm":
        if len(data) % 2:
            raise AudioFormatError(
                f"audio/pcm is 16-bit: {len(data)} bytes is not a whole number of samples"
            )
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    if fmt == "audio/pcmu":
        return resample(_ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)], G711_RATE, SAMPLE_RATE)
    if fmt == "audio/pcma":
        return resample(_ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)], G711_RATE, SAMPLE_RATE)
    raise AudioFormatError(f"unsupported audio format {fmt!r}")


def encode(pcm: np.ndarray, fmt: str) -> bytes:
    """int16 mono at 24 kHz -> bytes in a protocol format."""
    if fmt == "audio/pcm":
        return pcm.astype("<i2").tobytes()
    down = resample(pcm, SAMPLE_RATE, G711_RATE).astype(np.int32) + 32768
    if fmt == "audio/pcmu":
        return _ULAW_ENCODE[down].tobytes()
    if fmt == "audio/pcma":
        return _ALAW_ENCODE[down].tobytes()
    raise AudioFormatError(f"unsupported audio format {fmt!r}")


def bytes_per_ms(fmt: str) -> float:
    return {"audio/pcm": 48.0, "audio/pcmu": 8.0, "audio/pcma": 8.0}[fmt]
