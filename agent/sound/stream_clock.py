"""When each chunk of a steady audio stream arrived, told from when it is handled.

A receiver hands out a track's audio at the stream's own steady pace (10 ms
every 10 ms), but an event loop that handles it can stall: the frames that
queued up meanwhile are then handled in a burst. Stamped with the time they
were handled, they all read as arriving at once. Two places depend on the
true times: the worker's echo canceller, which reads its reference at each
frame's time (:mod:`agent.audio.frontend`), and the test caller, which times
what it hears (:mod:`agent.testing.caller`; a greeting received in a burst
after the test process stalled never lasted 0.2 s by its stamps).
"""

from __future__ import annotations

import collections

import numpy as np


class StreamClock:
    """Arrival times of a steady stream's chunks, from when they are handled.

    A received track's audio arrives at its own steady pace (the receiver
    hands out 10 ms every 10 ms), but the event loop that handles it can stall
    (livekit-agents' loop monitor logs 130-460 ms stalls of a job's loop on a
    loaded 2-core machine; a test process at idle priority stalls longer). The
    frames that queued up meanwhile are then handled in a burst, and stamped
    "now" they would all read as arriving together: in the worker, the caller's
    frames would all read the canceller's reference at about the same time, off
    by up to the stall; offline (bench/frontend_stalls.py),
    150-900 ms stalls every 1.4-2 s let 29 echo turns through in 12 scenes of
    20 s of -6 dB echo, none with the true times.

    A chunk is never handled before it arrives, and the stream's sample count
    says how far apart chunks arrived: sample ``n`` arrived at ``n / rate`` plus
    the smallest ``handled - n / rate`` seen over the last ``window_s`` of the
    stream (a sliding minimum: bursts after a stall do not move it). A chunk
    handled more than ``max_stall_s`` later than that says the stream itself
    paused (a caller's network dropped, a new track after a reconnect): no
    loop stalls that long, and the stamps start again from it at once.
    """

    def __init__(self, rate: int, window_s: float = 1.0, max_stall_s: float = 1.5) -> None:
        self.rate = rate
        self._samples = 0
        self._window = int(window_s * rate)
        self._max_stall_s = max_stall_s
        self._lowest: collections.deque[tuple[int, float]] = collections.deque()  # (sample count, offset), offsets rising

    def stamp(self, samples: int, handled_at: float) -> float:
        """The arrival time of the last of ``samples`` new samples, handled at ``handled_at``."""
        self._samples += samples
        offset = handled_at - self._samples / self.rate
        if self._lowest and offset - self._lowest[0][1] > self._max_stall_s:
            self._lowest.clear()
        while self._lowest and self._lowest[-1][1] >= offset:
            self._lowest.pop()
        self._lowest.append((self._samples, offset))
        while self._lowest[0][0] < self._samples - self._window:
            self._lowest.popleft()
        return self._samples / self.rate + self._lowest[0][1]


def handled_in_bursts(arrival: np.ndarray, stalls: list[tuple[float, float]], per_chunk_s: float = 0.0003) -> np.ndarray:
    """When a loop that stalls handles chunks that arrive at ``arrival``: it
    stands still during each ``(start, end)`` stall and then works off the
    backlog, ``per_chunk_s`` a chunk. The model the tests and
    ``bench/frontend_stalls.py`` put :class:`StreamClock` through."""
    handled = np.empty(len(arrival))
    free = -np.inf
    for k, t in enumerate(arrival):
        for start, end in stalls:
            if start <= t < end:
                t = end
        handled[k] = free = max(float(t), free + per_chunk_s)
    return handled
