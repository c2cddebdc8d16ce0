"""Callers at normal CPU priority in a test lane that runs at idle priority.

``scripts/lanes.sh`` runs its background lanes at ``SCHED_IDLE`` (``chrt --idle``),
so that they use only the CPU the room lane leaves. A caller there stands for a
phone or a browser on a device of its own, yet it shared the lane's starvation:
its event loop handled the agent's new track seconds late, and the audio the agent
sent before the caller's ``AudioStream`` existed was gone (livekit-agents starts
speaking once livekit-server reports the track subscribed, which does not wait
for the caller's code). Measured: a caller whose loop was held for 7 s from its
join heard none of the greeting, whose transcript did arrive; CI failed three times
on that, never the agent.

So, in a process that started at idle priority, every thread runs at normal
priority while a caller is joined (:func:`caller_joined` / :func:`caller_left`),
and the processes the harness starts for the system under test (livekit-server,
the realtime backend, the worker, Redis) stay at idle: :class:`agent.stack.Stack`
starts them through ``chrt --idle`` when :data:`LANE_IDLE`. Anywhere else this
module does nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

__all__ = ["LANE_IDLE", "caller_joined", "caller_left", "thread_policies"]

logger = logging.getLogger(__name__)

# Read at import, on the main thread, before any caller raised it.
LANE_IDLE: bool = sys.platform.startswith("linux") and os.sched_getscheduler(0) == os.SCHED_IDLE

_lock = threading.Lock()
_joined = 0


def _thread_ids() -> list[int]:
    return [int(tid) for tid in os.listdir("/proc/self/task")]


def thread_policies() -> dict[int, int]:
    """Scheduling policy of each thread of this process, by thread id."""
    policies: dict[int, int] = {}
    for tid in _thread_ids():
        try:
            policies[tid] = os.sched_getscheduler(tid)
        except ProcessLookupError:  # the thread ended meanwhile
            pass
    return policies


def _set_all(policy: int) -> None:
    # New threads take their creator's policy, so once every thread has it, the
    # threads started later (the WebRTC stack starts some per connection) have it too.
    for tid in _thread_ids():
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(0))
        except ProcessLookupError:  # the thread ended meanwhile
            pass
        except PermissionError as e:  # leaving SCHED_IDLE needs CAP_SYS_NICE (or RLIMIT_NICE)
            logger.warning("cannot change the CPU priority of the caller's threads: %s", e)
            return


def caller_joined() -> None:
    """A caller joins: the process runs at normal priority (in an idle lane)."""
    global _joined
    if not LANE_IDLE:
        return
    with _lock:
        _joined += 1
        if _joined == 1:
            _set_all(os.SCHED_OTHER)


def caller_left() -> None:
    """A caller left: with none joined, the process is back at idle priority."""
    global _joined
    if not LANE_IDLE:
        return
    with _lock:
        _joined = max(_joined - 1, 0)
        if _joined == 0:
            _set_all(os.SCHED_IDLE)
