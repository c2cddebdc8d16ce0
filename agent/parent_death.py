"""Child processes that die with their parent, however the parent ends.

A clean stop (SIGTERM, Ctrl-C) lets a parent stop its children itself, but
a crash, the OOM killer or a SIGKILL runs none of its code: its children are
reparented to init and run on (a transcription process holds about 135 MB).
On Linux the kernel can see to it instead: ``prctl(PR_SET_PDEATHSIG, sig)``
in the child asks for ``sig`` when the parent goes. Elsewhere this module
does nothing, and only the clean stop applies.

Two kernel rules shape the callers:

- the signal comes when the parent *thread* that forked the child ends, not
  the process: such children are started from a thread that lives as long as
  the process (:func:`from_lasting_thread`: the main thread, or one thread
  kept for it; a child started from ``asyncio.to_thread`` outlived a
  pytest session killed mid-call);
- the setting survives ``exec`` but not a fork: each child has to ask for
  itself.

A command the project starts asks through util-linux's ``setpriv
--pdeathsig`` (:func:`dying_with_parent`), which sets it and then execs the
command, rather than through a ``preexec_fn``: Python code between fork and
exec in a process with threads can deadlock in the child (seen: CPython
3.11's after-fork clean-up waited forever on a lock another thread held at
the fork, and a test run hung restarting livekit-server).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["die_with_parent", "dying_with_parent", "from_lasting_thread"]

_T = TypeVar("_T")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Resolved here, in the parent: a preexec_fn runs between fork and exec, where
# loading a library could wait forever on a lock another thread held at the fork.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(parent: int | None = None, sig: int = signal.SIGKILL) -> None:
    """In a child: have the kernel send it ``sig`` when its parent dies.

    ``parent`` is the pid the child expects as its parent (e.g. passed as a
    pool initializer's argument); if that parent is already gone by now, the
    signal would never come, so the child takes it at once. As a ``preexec_fn``
    leave it out: the parent waits for the exec there, so it cannot be gone.
    (For a command, use :func:`dying_with_parent` instead of a ``preexec_fn``.)
    """
    if _prctl is None:
        return
    if _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def dying_with_parent(argv: list[str], sig: str = "KILL") -> list[str]:
    """``argv`` run through ``setpriv --pdeathsig``, so that the kernel sends the
    command ``sig`` when the thread that started it ends; ``argv`` unchanged
    where that is not available (not Linux, no util-linux)."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is None:
        return argv
    return [setpriv, "--pdeathsig", sig, "--", *argv]


class _LastingThread:
    """A daemon thread that runs what it is given, one call at a time, until the
    process ends: children it forks get their parent-death signal only then."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="agent-child-starter", daemon=True).start()

    def _serve(self) -> None:
        while True:
            fn, done = self._calls.get()
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(fn())
                except BaseException as e:  # handed to the caller, which raises it
                    done.set_exception(e)

    def call(self, fn: Callable[[], _T]) -> _T:
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._calls.put((fn, done))
        return done.result()


_lasting: _LastingThread | None = None
_lasting_lock = threading.Lock()


def from_lasting_thread(start: Callable[[], _T]) -> _T:
    """``start()`` (which starts a child process) on a thread that lives as long
    as this process: here if this is the main thread, else on a thread kept for
    it. A child started with :func:`dying_with_parent` then dies with the
    process, not with a short-lived thread that happened to start it."""
    global _lasting
    if threading.current_thread() is threading.main_thread():
        return start()
    with _lasting_lock:
        if _lasting is None:
            _lasting = _LastingThread()
    return _lasting.call(start)
