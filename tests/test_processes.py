"""Every process the project starts stops with its parent: on SIGTERM, on
SIGINT, and when the parent is killed outright (SIGKILL, a crash).

Each test runs the real command (`python -m agent realtime-server | up |
start`) in a subprocess, waits until the processes it starts are all there,
notes every descendant (pid and start time: a reparented process gets ppid 1,
and a pid may be reused), sends the signal to the command's process alone (a
supervisor's kill, not a terminal's Ctrl-C to the whole group), and asserts
that every one of those processes is gone soon after.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from proc_tree import Proc, descendants

from agent.stack import livekit_server_binary, port_open
from agent.testing.harness import SLOTS, Testbed, free_port, shipped_config_on_slot

pytestmark = [pytest.mark.background]  # the room tests here mostly wait for processes

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]
GONE_WITHIN_S = 5.0


class Command:
    """``python -m agent ARGS`` in a session of its own, with what it has started."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", *args], env=env, cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.tree: list[Proc] = []

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, ready: Callable[[list[Proc]], bool], timeout: float) -> list[Proc]:
        """Wait until ``ready(descendants)``; remember them."""
        deadline = time.monotonic() + timeout
        while True:
            self.tree = descendants(self.proc.pid)
            if ready(self.tree):
                return self.tree
            assert self.proc.poll() is None, f"exited early ({self.proc.returncode}):\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, "not all up:\n" + "\n".join(p.cmdline for p in self.tree) + self.output()[-3000:]
            time.sleep(0.2)

    def assert_all_gone_after(self, sig: signal.Signals, exit_within: float) -> None:
        tree = self.tree
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(exit_within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {exit_within}s after {sig.name}:\n{self.output()[-3000:]}")
        deadline = time.monotonic() + GONE_WITHIN_S
        while (left := [p for p in tree if p.alive()]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"{sig.name} left {len(left)} of {len(tree)} processes running:\n" + "\n".join(
            f"  {p.pid}: {p.cmdline[:160]}" for p in left
        )

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            self.tree = descendants(self.proc.pid) or self.tree
            self.proc.kill()
            self.proc.wait()
        for p in self.tree:
            if p.alive():
                os.kill(p.pid, signal.SIGKILL)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AGENT_", "OPENAI_"))}
    env.update(extra)
    return env


Start = Callable[..., Command]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Start]:
    """Starts commands; kills whatever they left (a failing test must not leak either)."""
    commands: list[Command] = []

    def start(*args: str, env: dict[str, str]) -> Command:
        commands.append(Command(args, env, tmp_path / f"{args[0]}-{len(commands)}.log"))
        return commands[-1]

    yield start
    for command in commands:
        command.kill_all()


def _is_transcriber(p: Proc) -> bool:
    return "multiprocessing.spawn" in p.cmdline


def _job_processes(tree: list[Proc]) -> list[Proc]:
    """livekit-agents' job processes: children of its forkserver."""
    servers = {p.pid for p in tree if "multiprocessing.forkserver" in p.cmdline}
    return [p for p in tree if p.ppid in servers]


# ----------------------------------------------------------------- the realtime server


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_realtime_server_leaves_no_process_behind(sig: signal.Signals, started: Start) -> None:
    port = free_port()
    server = started("realtime-server", "--port", str(port), env=_env())
    server.wait_for(lambda tree: port_open("127.0.0.1", port) and any(map(_is_transcriber, tree)), timeout=60)
    server.assert_all_gone_after(sig, exit_within=10)


# ----------------------------------------------------------------- the worker


@pytest.mark.room
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_worker_leaves_no_process_behind(sig: signal.Signals, testbed: Testbed, started: Start) -> None:
    # A named worker of its own on the session's testbed: no room is dispatched to it.
    # Its processes: livekit-agents' forkserver, the idle job process it forks, and
    # multiprocessing's resource tracker. (A job is not dispatched here: a worker
    # refuses jobs while the machine's CPU is saturated, which would make the test
    # depend on the load of the machine.)
    env = _env(**testbed.worker_environment(
        AGENT_NAME=f"procs-{uuid.uuid4().hex[:6]}", AGENT_HTTP_PORT=str(free_port()), AGENT_NUM_IDLE_PROCESSES="1",
        AGENT_DRAIN_TIMEOUT="3", AGENT_REDISPATCH="0",
    ))  # fmt: skip
    worker = started("start", env=env)

    def settled(tree: list[Proc]) -> bool:
        out = worker.output()
        return "registered worker" in out and "process initialized" in out and len(_job_processes(tree)) >= 1

    worker.wait_for(settled, timeout=90)
    worker.assert_all_gone_after(sig, exit_within=3 + 20)  # the drain timeout, then the framework's own stop


# ----------------------------------------------------------------- the main job (`up`)


@pytest.mark.room
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_up_leaves_no_process_behind(sig: signal.Signals, tmp_path: Path, started: Start) -> None:
    env = _env(
        AGENT_LIVEKIT_CONFIG=str(shipped_config_on_slot(tmp_path / "livekit.yaml", SLOTS["process-leaks"])),
        AGENT_LOCAL_REALTIME_PORT=str(free_port()),
        AGENT_HTTP_PORT=str(free_port()),
        AGENT_WEB_PORT=str(free_port()),
        AGENT_CACHE_DIR=str(tmp_path / "cache"),
        AGENT_NUM_IDLE_PROCESSES="1",
        LIVEKIT_SERVER_BIN=str(livekit_server_binary()),
    )
    up = started("up", env=env)

    def everything_up(tree: list[Proc]) -> bool:
        return "ready." in up.output() and any(map(_is_transcriber, tree)) and len(_job_processes(tree)) >= 1

    tree = up.wait_for(everything_up, timeout=120)
    assert any(p.cmdline.startswith(env["LIVEKIT_SERVER_BIN"]) for p in tree)
    assert any("agent web" in p.cmdline for p in tree)
    up.assert_all_gone_after(sig, exit_within=60)


# ----------------------------------------------------------------- how children are started


def test_children_ask_for_the_parent_death_signal_without_python_between_fork_and_exec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preexec_fn runs Python in the forked child, which can deadlock when the
    parent has threads (a run hung in CPython's after-fork clean-up while
    restarting livekit-server); the signal is asked for by setpriv instead, and
    the kernel really sends it when the parent dies."""
    from agent.stack import ManagedProcess

    seen: dict[str, object] = {}
    real_popen = subprocess.Popen

    class Recording(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, argv: list[str], **kwargs: object) -> None:
            seen.update(kwargs, argv=argv)
            super().__init__(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess, "Popen", Recording)
    child = ManagedProcess("sleeper", ["sleep", "30"], env=dict(os.environ), log_path=None)
    monkeypatch.undo()
    child.stop()
    assert seen.get("preexec_fn") is None
    assert seen["argv"][:3] == [seen["argv"][0], "--pdeathsig", "KILL"] and str(seen["argv"][0]).endswith("setpriv")  # type: ignore[index]



@pytest.mark.parametrize("thread", ["main", "short-lived"])
def test_a_child_dies_with_its_killed_parent_whichever_thread_started_it(tmp_path: Path, thread: str) -> None:
    """The kernel's side: a parent that starts a child and is then killed takes the
    child with it; also when a thread that has ended since started it (as
    ``asyncio.to_thread`` does: the plugin's workers outlived a killed pytest
    session), and the child lives on while the parent does."""
    pid_file = tmp_path / "child.pid"
    start = "c = ManagedProcess('s', ['sleep', '60'], env=dict(os.environ), log_path=None)"
    if thread == "short-lived":
        start = f"box = {{}}\nt = threading.Thread(target=lambda: box.update({start.replace('c = ', 'c=', 1)})); t.start(); t.join(); c = box['c']"
    parent = subprocess.Popen([
        sys.executable, "-c",
        "import os, threading, time\nfrom agent.stack import ManagedProcess\n"
        f"{start}\nopen({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(60)",
    ], cwd=ROOT)  # fmt: skip
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None, "the parent never started its child"
        time.sleep(0.05)
    child_proc = Proc.read(int(pid_file.read_text()))
    assert child_proc is not None and "sleep 60" in child_proc.cmdline
    time.sleep(0.3)
    assert child_proc.alive(), "the child died with the thread that started it, not with its parent"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + GONE_WITHIN_S
    while child_proc.alive():
        assert time.monotonic() < deadline, f"the child {child_proc.pid} outlived its killed parent"
        time.sleep(0.05)
