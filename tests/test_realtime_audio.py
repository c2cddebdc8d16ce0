"""Audio formats of the protocol: PCM16 24 kHz, G.711 mu-law and A-law (8 kHz)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.realtime import audio


def sine(rate: int, ms: int, freq: float = 440.0, amp: float = 12000) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
def test_g711_round_trip_keeps_the_signal(fmt: str) -> None:
    pcm = sine(24_000, 200)
    data = audio.encode(pcm, fmt)
    assert len(data) == 8 * 200  # one byte per 8 kHz sample
    back = audio.decode(data, fmt)
    assert abs(len(back) - len(pcm)) <= 3
    n = min(len(back), len(pcm)) - 50
    err = back[50:n].astype(float) - pcm[50:n].astype(float)
    snr = 10 * np.log10(np.mean(pcm[50:n].astype(float) ** 2) / np.mean(err**2))
    assert snr > 20, f"{fmt} round trip SNR {snr:.1f} dB"


def test_pcm16_is_little_endian_24k() -> None:
    pcm = np.array([1, -2, 300], np.int16)
    assert audio.encode(pcm, "audio/pcm") == b"\x01\x00\xfe\xff\x2c\x01"
    assert list(audio.decode(b"\x01\x00\xfe\xff\x2c\x01", "audio/pcm")) == [1, -2, 300]


def test_wrong_formats_are_refused_with_a_reason() -> None:
    with pytest.raises(audio.AudioFormatError, match="16-bit"):
        audio.decode(b"\x00\x01\x02", "audio/pcm")
    with pytest.raises(audio.AudioFormatError, match="unsupported"):
        audio.decode(b"\x00\x01", "audio/opus")
