"""Run a command inside a private, throw-away network namespace.

Why: libwebrtc (inside the livekit SDK) skips loopback interfaces when it
gathers ICE candidates, so two processes on one machine cannot reach each
other -- or a local livekit-server -- over 127.0.0.1.  Inside a fresh network
namespace we add a veth pair with two ordinary (non-loopback) addresses,
``v0`` = 10.77.0.1/24 (where livekit-server binds) and ``v1`` = 10.77.0.2/24
(a second client address); both ends stay in the namespace.  Nothing in
there can reach the outside network, so tests never touch it either.

We also unshare the PID namespace (with its own /proc): the supervisor below
is PID 1 there, and when it exits the kernel kills whatever the command left
running (a stray livekit-server, say).  The namespace, its veth pair and every
process in it vanish together; nothing has to be cleaned up afterwards.

Command line::

    python -m agent.testing.netns -- python -m pytest tests/...
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "CLIENT_IP",
    "SERVER_IP",
    "NamespaceError",
    "ip",
    "inside_namespace",
    "run_in_namespace",
]

SERVER_IP = "10.77.0.1"
CLIENT_IP = "10.77.0.2"
_PREFIX = 24

_ENV_FLAG = "AGENT_NETNS"
_SI_KERNEL = 0x80  # si_code of a signal the kernel sent, e.g. Ctrl-C from the tty
_FORWARDED = (signal.SIGINT, signal.SIGTERM)
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class NamespaceError(RuntimeError):
    """The namespace could not be created (missing tool, not root, ...)."""


def inside_namespace() -> bool:
    """True in a process started by :func:`run_in_namespace` (``AGENT_NETNS=1``)."""
    return os.environ.get(_ENV_FLAG) == "1"


def run_in_namespace(argv: Sequence[str]) -> int:
    """Run ``argv`` in a fresh network namespace and return its exit code.

    Re-executes this module as ``unshare --net --pid --mount-proc --fork
    --kill-child=SIGTERM -- python -m agent.testing.netns --inside -- argv``.
    SIGINT/SIGTERM sent to this process are passed on; a Ctrl-C from the
    terminal reaches every process of the foreground group by itself, so it is
    not passed on a second time.  Already inside: runs ``argv`` directly.
    """
    if not argv:
        raise ValueError("run_in_namespace needs a command")
    if inside_namespace():
        return _supervise(subprocess.Popen(list(argv)), _child_pid)
    _require_root_and("unshare")
    env = dict(os.environ)
    # `-m agent.testing.netns` must resolve whatever the caller's cwd is.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    cmd = [
        "unshare", "--net", "--pid", "--mount-proc", "--fork", "--kill-child=SIGTERM",
        "--", sys.executable, "-m", "agent.testing.netns", "--inside", "--", *argv,
    ]  # fmt: skip
    unshare = subprocess.Popen(cmd, env=env)
    # unshare blocks SIGINT/SIGTERM while it waits, so signal its child (our
    # `--inside` supervisor) directly.
    return _supervise(unshare, lambda p: _first_child(p.pid))


def ip(*args: str) -> None:
    """Run ``ip ARGS``; NamespaceError with its stderr when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise NamespaceError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")


def _inside(argv: Sequence[str]) -> int:
    """The ``--inside`` branch: set up lo + veth, then run ``argv`` as a child."""
    _require_root_and("ip")
    for ip_args in (
        ["link", "set", "lo", "up"],
        ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        ["addr", "add", f"{SERVER_IP}/{_PREFIX}", "dev", "v0"],
        ["addr", "add", f"{CLIENT_IP}/{_PREFIX}", "dev", "v1"],
        ["link", "set", "v0", "up"],
        ["link", "set", "v1", "up"],
    ):
        ip(*ip_args)
    os.environ.update(
        {_ENV_FLAG: "1", "AGENT_NETNS_SERVER_IP": SERVER_IP, "AGENT_NETNS_CLIENT_IP": CLIENT_IP}
    )
    try:
        child = subprocess.Popen(list(argv))
    except OSError as exc:
        raise NamespaceError(f"cannot start {argv[0]!r}: {exc}") from exc
    return _supervise(child, _child_pid)


def _supervise(proc: subprocess.Popen[bytes], target: Callable[[subprocess.Popen[bytes]], int | None]) -> int:
    """Wait for ``proc``, passing SIGINT/SIGTERM on to ``target(proc)``; return its exit code.

    Signals are blocked and taken with ``sigtimedwait`` so we can see who sent
    them: a kernel-sent SIGINT (terminal Ctrl-C) already reached the child.
    Also reaps orphans, since inside the namespace we are PID 1.
    """
    watched = {*_FORWARDED, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        while True:
            status = _reap(proc)
            if status is not None:
                return status
            info = signal.sigtimedwait(watched, 0.5)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_signo == signal.SIGINT and info.si_code == _SI_KERNEL:
                continue
            pid = target(proc)
            try:
                # no supervisor yet: kill unshare; --kill-child SIGTERMs the rest
                os.kill(proc.pid if pid is None else pid, info.si_signo if pid else signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _reap(proc: subprocess.Popen[bytes]) -> int | None:
    """Reap ``proc`` (and, as PID 1 of the namespace, any orphan); its exit code once it ended."""
    result: int | None = None
    while True:
        try:
            pid, status = os.waitpid(-1 if os.getpid() == 1 else proc.pid, os.WNOHANG)
        except ChildProcessError:
            return result
        if pid == 0:
            return result
        if pid == proc.pid:
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            result = 128 - code if code < 0 else code  # killed by signal N -> 128+N
            if os.getpid() != 1:
                return result


def _child_pid(proc: subprocess.Popen[bytes]) -> int:
    return proc.pid


def _first_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _require_root_and(tool: str) -> None:
    if shutil.which(tool) is None:
        raise NamespaceError(f"`{tool}` not found on PATH (needs util-linux `unshare` and iproute2 `ip`)")
    if os.geteuid() != 0:
        raise NamespaceError(
            "creating a network namespace needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN); run as root"
        )


def main(args: Sequence[str] | None = None) -> int:
    """``python -m agent.testing.netns [--inside] -- cmd args...``"""
    args = list(sys.argv[1:] if args is None else args)
    inside = bool(args) and args[0] == "--inside"
    if inside:
        args = args[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m agent.testing.netns -- cmd [args...]", file=sys.stderr)
        return 2
    try:
        return _inside(args) if inside else run_in_namespace(args)
    except NamespaceError as exc:
        print(f"agent.testing.netns: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
