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
    """A stream that stops for 2 s (no frames at all) and goes on: after one
    window of the new frames, the stamps are the new arrival times."""
    clock = StreamClock(RATE, window_s=1.0)
    for k in range(100):
        clock.stamp(FRAME, (k + 1) * 0.01 + 0.003)
    late = [clock.stamp(FRAME, 3.0 + (k + 1) * 0.01 + 0.003) for k in range(200)]
    assert late[0] < 2.0  # at first the pause is taken for a stall...
    assert late[-1] == pytest.approx(3.0 + 200 * 0.01 + 0.003, abs=0.001)  # ...then followed
