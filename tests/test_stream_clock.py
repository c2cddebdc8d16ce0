"""agent.sound.stream_clock: arrival times of a steady stream handled by a loop that stalls."""

from __future__ import annotations

import numpy as np
import pytest

from agent.sound.stream_clock import StreamClock, handled_in_bursts

RATE = 24000
FRAME = RATE // 100


def stalled_handling(frames: int, stalls: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(arrival, handled) of ``frames`` 10 ms frames through a loop that stalls."""
    arrival = (np.arange(frames) + 1) * FRAME / RATE
    return arrival, handled_in_bursts(arrival, stalls)


def test_stream_clock_tells_arrival_through_a_burst_after_a_stall() -> None:
    arrival, handled = stalled_handling(300, [(1.0, 1.45)])
    clock = StreamClock(RATE)
    stamped = np.array([clock.stamp(FRAME, h) for h in handled])
    assert np.max(handled - arrival) > 0.4  # the stall: frames handled up to 450 ms late
    assert np.max(np.abs(stamped - arrival)) < 0.001


def test_stream_clock_follows_a_stream_that_paused() -> None:
    """A stream that stops for 2 s (no frames at all: the caller's network
    dropped) and goes on: no loop stalls that long, so the stamps follow the
    new arrivals at once; a shorter gap is taken for a stall until the window
    has passed."""
    for gap, first in ((2.0, 3.013), (1.0, 1.013)):
        clock = StreamClock(RATE, window_s=1.0, max_stall_s=1.5)
        for k in range(100):
            clock.stamp(FRAME, (k + 1) * 0.01 + 0.003)
        later = [clock.stamp(FRAME, 1.0 + gap + (k + 1) * 0.01 + 0.003) for k in range(200)]
        assert later[0] == pytest.approx(first, abs=0.001)
        assert later[-1] == pytest.approx(1.0 + gap + 200 * 0.01 + 0.003, abs=0.001)  # followed by the end
