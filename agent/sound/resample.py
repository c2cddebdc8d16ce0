"""Resampling of int16 mono by linear interpolation.

Good enough for speech at the rates used here (8, 16, 22.05, 24 and 48 kHz),
and pure numpy, so the realtime server can use it without livekit. The
worker and the test caller resample livekit frames with ``rtc.AudioResampler``
(a streaming, filtered resampler) instead; that is livekit's, not another copy
of this.
"""

from __future__ import annotations

import numpy as np


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear-interpolation resampling of int16 mono; good enough for speech at these rates."""
    if src_rate == dst_rate or pcm.size == 0:
        return pcm.astype(np.int16, copy=False)
    n_out = int(round(pcm.size * dst_rate / src_rate))
    x_out = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    out = np.interp(x_out, np.arange(pcm.size, dtype=np.float64), pcm.astype(np.float64))
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)
