"""G.711 μ-law (ITU-T G.711, the North American telephone codec) and a
telephone line made of it, for measuring what a phone call does to audio.

A call through LiveKit SIP carries the caller's voice, and the agent's own
voice on its way to the phone, as 8 kHz G.711: the band is cut to the
telephone band (300-3400 Hz) and every sample is companded to 8 bits (about
38 dB of signal to quantisation noise for speech). :func:`phone_line` does
both to a signal at any rate and brings it back to that rate, as livekit-sip
hands a call's audio to a room; the front-end measurement's ``--phone``
scenes pass the echo path and the caller's microphone through it.
"""

from __future__ import annotations

import numpy as np

from .resample import resample

__all__ = ["PHONE_BAND_HZ", "PHONE_RATE", "PhoneBand", "mulaw_decode", "mulaw_encode", "phone_band_fir", "phone_line"]

PHONE_RATE = 8000
PHONE_BAND_HZ = (300.0, 3400.0)
_BIAS = 0x84  # 132: G.711's offset that makes the segments line up
_CLIP = 8159  # of the 14-bit magnitude


def mulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 samples to G.711 μ-law bytes (uint8), as the reference coder does it
    (on the 14-bit magnitude: the sample's two low bits are dropped first)."""
    x = pcm.astype(np.int32) >> 2
    negative = x < 0
    magnitude = np.minimum(np.where(negative, -x, x), _CLIP) + (_BIAS >> 2)
    # the segment (0..7): how far the magnitude reaches past 6 bits
    segment = np.maximum(np.floor(np.log2(magnitude)).astype(np.int32) - 5, 0)
    code = np.where(segment > 7, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))  # past the last: its top code
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8)


def mulaw_decode(code: np.ndarray) -> np.ndarray:
    """G.711 μ-law bytes to int16 samples."""
    c = ~code.astype(np.int32) & 0xFF
    exponent = (c >> 4) & 0x07
    magnitude = (((c & 0x0F) << 3) + _BIAS) << exponent
    return np.where(c & 0x80, _BIAS - magnitude, magnitude - _BIAS).astype(np.int16)


def phone_band_fir(rate: int, taps: int = 255) -> np.ndarray:
    """A linear-phase band-pass FIR of the telephone band at ``rate`` (windowed
    sinc, ``taps`` long: (taps - 1) / 2 samples of delay, 5.3 ms at 24 kHz).
    Short, so its ringing stays within a few ms of each sound instead of
    spreading over a whole signal as a brick-wall FFT filter's would."""
    n = np.arange(taps) - (taps - 1) / 2
    low, high = (f / rate for f in PHONE_BAND_HZ)
    h: np.ndarray = (2 * high * np.sinc(2 * high * n) - 2 * low * np.sinc(2 * low * n)) * np.blackman(taps)
    return h


class PhoneBand:
    """:func:`phone_band_fir` on a stream of int16 chunks (its state carried
    from one chunk to the next); each chunk comes out as long as it went in,
    (taps - 1) / 2 samples late."""

    def __init__(self, rate: int, taps: int = 255) -> None:
        self._h = phone_band_fir(rate, taps)
        self._tail = np.zeros(taps - 1)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._tail, pcm.astype(np.float64)])
        self._tail = x[len(x) - len(self._tail) :]
        return np.clip(np.round(np.convolve(x, self._h, mode="valid")), -32768, 32767).astype(np.int16)


def _band(x: np.ndarray, rate: int) -> np.ndarray:
    """``x`` (float, a whole signal) through :func:`phone_band_fir`, not delayed."""
    return np.convolve(x, phone_band_fir(rate), mode="same")


def phone_line(pcm: np.ndarray, rate: int) -> np.ndarray:
    """int16 ``pcm`` at ``rate`` as it comes out of a G.711 call: telephone band,
    8 kHz μ-law, then back at ``rate`` (same length)."""
    if pcm.size == 0:
        return pcm.astype(np.int16)
    banded = np.clip(np.round(_band(pcm.astype(np.float64), rate)), -32768, 32767).astype(np.int16)
    narrow = mulaw_decode(mulaw_encode(resample(banded, rate, PHONE_RATE)))
    wide = resample(narrow, PHONE_RATE, rate).astype(np.float64)
    wide = np.pad(wide, (0, max(0, pcm.size - wide.size)))[: pcm.size]
    return np.clip(np.round(_band(wide, rate)), -32768, 32767).astype(np.int16)
