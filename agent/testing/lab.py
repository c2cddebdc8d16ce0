"""A lab for testing any LiveKit agent: livekit-server and the local realtime
backend in the test namespace, and workers started from any command or any
livekit-agents entrypoint (``module:server``).

The backend keeps a journal (agent/realtime/journal.py) that tests read tool
calls from. A worker may get a backend of its own with a brain given inline
(rules as a dict) or from a file; otherwise it shares the lab's.

    with Lab(tmp_dir, slot=22) as lab:
        worker = lab.start_worker("examples.stock_agent:server")
        caller = lab.caller("room-1")
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..realtime.journal import JournalReader, ToolCall
from ..stack import ManagedProcess, port_open
from .caller import Caller
from .harness import Testbed, free_port, slot_ports
from .netns import SERVER_IP

Brain = dict[str, Any] | str | Path  # rules inline, or a YAML/JSON file

# Slots the labs of single tests lease (agent.testing.harness.SLOTS has the fixed ones below 50).
LEASED_SLOTS = range(50, 71)
_LEASES = Path(tempfile.gettempdir()) / "agent-testing-slots"


@contextlib.contextmanager
def leased_slot(slots: Iterable[int] = LEASED_SLOTS) -> Iterator[int]:
    """A port slot that no other lab on this machine holds, until the block ends.

    Each slot has a lock file (flock): pytest processes side by side never get
    the same one, and a lock dies with its process, so a killed run holds none.
    A slot whose signal port something already listens on is skipped.
    """
    _LEASES.mkdir(parents=True, exist_ok=True)
    for slot in slots:
        lock = open(_LEASES / f"slot-{slot}.lock", "w")  # held open for the lease
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        try:
            if port_open(SERVER_IP, slot_ports(slot)[0], timeout=0.2):
                continue
            yield slot
            return
        finally:
            lock.close()  # closing the file releases the lock
    raise RuntimeError(f"no free port slot for a lab among {list(slots)}: other labs hold them all")


@dataclass
class Backend:
    """A local realtime backend and its journal."""

    url: str  # the base_url: http://127.0.0.1:PORT/v1
    journal: JournalReader
    process: ManagedProcess | None = None  # None: the lab's own

    def tool_calls(self, since: float = 0.0) -> list[ToolCall]:
        return self.journal.tool_calls(since)


@dataclass
class Worker:
    """A worker the lab started; ``log()`` is its output so far."""

    name: str
    process: ManagedProcess
    backend: Backend
    ready_s: float = 0.0  # from start to registered with livekit-server
    stopped: bool = field(default=False)

    def log(self) -> str:
        return self.process.log_text()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.process.stop()


class Lab(Testbed):
    """livekit-server and the local realtime backend (with a journal); workers on demand."""

    def __init__(self, workdir: Path, *, slot: int = 0, brain: Brain | None = None) -> None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        journal = workdir / "backend-journal.jsonl"
        env = {"AGENT_LOCAL_REALTIME_JOURNAL": str(journal)}
        if brain is not None:
            env["AGENT_BRAIN_SCRIPT"] = str(_brain_file(brain, workdir / "brain.yaml"))
        super().__init__(workdir, worker=False, realtime_env=env, slot=slot)
        self.backend = Backend(f"http://127.0.0.1:{self.realtime_port}/v1", JournalReader(journal))
        self.backends = [self.backend]
        self.workers: list[Worker] = []
        self._count = 0

    def start_backend(self, brain: Brain, *, name: str | None = None) -> Backend:
        """A realtime backend of its own, with ``brain``."""
        self._count += 1
        name = name or f"backend-{self._count}"
        journal = self.workdir / f"{name}-journal.jsonl"
        port = free_port()
        env = {"AGENT_BRAIN_SCRIPT": str(_brain_file(brain, self.workdir / f"{name}-brain.yaml")), "AGENT_LOCAL_REALTIME_JOURNAL": str(journal)}
        proc = self.stack.start_realtime("127.0.0.1", port, env=env, name=name)
        backend = Backend(f"http://127.0.0.1:{port}/v1", JournalReader(journal), proc)
        self.backends.append(backend)
        return backend

    def tool_calls(self, since: float = 0.0) -> list[ToolCall]:
        """The function calls every backend of the lab sent since ``since``, in time order."""
        return tool_calls(self.backends, since)

    def start_worker(  # type: ignore[override]
        self, target: str | list[str], *, env: dict[str, str] | None = None, brain: Brain | None = None,
        name: str | None = None, timeout: float = 90.0,
    ) -> Worker:  # fmt: skip
        """Start a worker from ``"module:server"`` (any livekit-agents AgentServer) or a
        command (a list, or a string split like a shell would) and wait until it has
        registered with livekit-server. Its realtime model reaches the lab's backend
        (or one of its own with ``brain``) through OPENAI_BASE_URL."""
        self._count += 1
        name = name or f"worker-{self._count}"
        backend = self.start_backend(brain, name=f"{name}-backend") if brain is not None else self.backend
        http_port = free_port()
        worker_env = self._worker_environment(self.url, http_port, {
            "OPENAI_BASE_URL": backend.url,
            "OPENAI_API_KEY": "local-test-key",
            "AGENT_REALTIME_BASE_URL": backend.url,
            "AGENT_TESTING_HTTP_PORT": str(http_port),
            "AGENT_METRICS_PORT": "0",
            "PYTHONPATH": os.pathsep.join([os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])]),
            **(env or {}),
        })  # fmt: skip
        argv = _command(target)
        started = time.monotonic()
        proc = self.stack.spawn(name, argv, env=worker_env)
        worker = Worker(name, proc, backend)
        self.workers.append(worker)
        try:
            proc.wait_for_log("registered worker", timeout)
        except BaseException:
            worker.stop()
            raise
        worker.ready_s = time.monotonic() - started
        return worker

    def caller(self, room: str, identity: str = "caller", *, agent_name: str | None = None, **options: Any) -> Caller:
        return self._caller(self.url, room, identity, agent_name, **options)


def tool_calls(backends: list[Backend], since: float = 0.0) -> list[ToolCall]:
    """The function calls ``backends`` sent since ``since``, with the agent's outputs, in time order."""
    return sorted((c for b in backends for c in b.tool_calls(since)), key=lambda c: c.t)


def journal(backends: list[Backend], since: float = 0.0) -> list[dict[str, Any]]:
    """The journal entries of ``backends`` since ``since``, in time order."""
    return sorted((e for b in backends for e in b.journal.entries(since)), key=lambda e: e["t"])


def _command(target: str | list[str]) -> list[str]:
    if isinstance(target, list):
        return target
    if ":" in target and " " not in target and "/" not in target:
        return [sys.executable, "-m", "agent.testing.entry", target, "start"]
    return shlex.split(target)


def _brain_file(brain: Brain, path: Path) -> Path:
    if isinstance(brain, dict):
        path.write_text(yaml.safe_dump(json.loads(json.dumps(brain)), sort_keys=False))
        return path
    return Path(brain)
