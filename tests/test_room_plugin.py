"""agent.testing's pytest plugin on agents with the bugs room tests are for
(examples/broken_agents.py): each fails with a message that says why. And the
plugin itself: it refuses to run outside a network namespace with one clear
message; a failing test keeps its recording and the worker's log and leaves no
process behind, with a second lab running beside this session's; two pytest
sessions whose tests have labs of their own run side by side; Ctrl-C during a
call stops every process the session started. (A caller speaking a live stream
is tests/test_room_plugin_speech.py, in the room lane.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from proc_tree import descendants, naming

from agent.stack import cache_dir
from agent.testing.expect import expect
from agent.testing.harness import LIVEKIT_PORT, SLOTS
from agent.testing.lab import leased_slot

# Taken before pytester points HOME at its own folder.
HOME = os.environ.get("HOME", "/root")
CACHE = cache_dir()

# Background lane (scripts/lanes.sh): these wait for failures to show, and time nothing a caller hears.
pytestmark = [pytest.mark.room, pytest.mark.background]

BRAIN = {
    "instructed": "Hello! I'm an AI assistant. How can I help you today?",
    "rules": [
        {"match": "open on", "say": "On Sunday we open early in the morning."},
        {"match": "(?P<quantity>\\w+) lattes", "call": "place_order", "arguments": {"item": "latte", "quantity": "{quantity}"}},
    ],
}


async def failure_of(expectation: Awaitable[Any]) -> str:
    """The message an expectation fails with (it must fail)."""
    with pytest.raises(AssertionError) as failure:
        await expectation
    print(f"\n[broken agent] {failure.value}")
    return str(failure.value)


async def test_an_agent_that_never_greets_fails_with_what_was_heard(room_worker: Any, room_caller: Any) -> None:
    await room_worker("examples.broken_agents:never_greets", brain=BRAIN)
    caller = await room_caller()
    message = await failure_of(expect(caller).to_hear("how can I help you", within=6))
    assert "within 6s" in message and "heard no speech" in message


async def test_an_agent_that_answers_before_the_caller_finishes_fails_so(room_worker: Any, room_caller: Any) -> None:
    await room_worker("examples.broken_agents:answers_early", brain=BRAIN)
    caller = await room_caller()
    await expect(caller).to_hear("how can I help you", within=10)
    await caller.say("What time do you open on Sunday? I would like to come early with my two children and my mother.")
    message = await failure_of(expect(caller).to_hear("we open early in the morning", within=4))
    assert "before the caller finished" in message and "turns" in message


async def test_an_agent_that_calls_the_wrong_tool_fails_with_the_calls_made(room_worker: Any, room_caller: Any) -> None:
    await room_worker("examples.broken_agents:wrong_tool", brain=BRAIN)
    caller = await room_caller()
    await caller.caller.wait_for_audio(timeout=15)  # the agent is in the room
    await caller.type("I'd like two lattes")
    message = await failure_of(expect(caller).to_call_tool("place_order", item="latte", within=8))
    assert "expected a call of place_order" in message and "cancel_order(" in message


def test_outside_a_network_namespace_the_plugin_says_how_to_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.testing.plugin as plugin

    monkeypatch.setattr(plugin, "inside_namespace", lambda: False)  # as if run without agent.testing.netns
    pytester.makepyfile("def test_needs_a_room(room_lab):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*room tests need a private network namespace*run pytest with --netns*"])


def test_a_failing_test_keeps_its_recording_and_log_and_leaves_no_process(pytester: pytest.Pytester, room_lab: Any) -> None:
    # room_lab: this session's lab runs on its slot while the inner session makes a second one on another.
    pytester.makepyfile(textwrap.dedent("""
        import sys
        from agent.testing.expect import expect

        async def test_fails(room_worker, room_caller):
            await room_worker("examples.stock_agent:server", brain={"instructed": "Hello! How can I help you today?"})
            caller = await room_caller()
            await expect(caller).to_hear("how can I help you", within=10)
            await expect(caller).to_hear("something it never says", within=3)
    """))
    root = Path(__file__).resolve().parents[1]
    started = time.time()
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", f"room_slot={SLOTS['plugin-inner']}", "-o", "asyncio_mode=auto",
            "--basetemp", str(pytester.path / "tmp"), str(pytester.path),
        ],
        cwd=root, capture_output=True, text=True, timeout=240,
        env={**os.environ, "HOME": HOME, "AGENT_CACHE_DIR": str(CACHE)},
    )  # fmt: skip
    out = result.stdout + result.stderr
    print(f"\n[plugin] inner session: {time.time() - started:.1f}s; exit {result.returncode}")
    assert result.returncode == 1, out
    assert "expected to hear 'something it never says'" in out, out
    kept = {p.name for p in (pytester.path / "tmp").rglob("*") if p.suffix in (".wav", ".log") and "test_fails" in str(p.parent)}
    assert "caller-1.wav" in kept and any(name.startswith("worker-") for name in kept), kept
    # Every process the inner session started was given a path under its basetemp
    # (livekit-server's config, the workers' and backends' workdir in their
    # environment). A machine-wide `pgrep -f "agent.testing.entry examples.stock_agent"`
    # also counted the workers of another lane's test running the same agent (ci13).
    left = [p for p in naming(str(pytester.path / "tmp")) if p.pid != os.getpid()]
    assert left == [], f"processes left behind: {[p.cmdline for p in left]}"


INNER_OWN_LAB = """
import asyncio, json, os, time
import pytest
from agent.testing.expect import expect

@pytest.mark.room_lab(scope="test", brain={"instructed": "Hello! How can I help you today?"})
async def test_call(room_current_lab, room_worker, room_caller):
    body = time.time()
    await room_worker("examples.stock_agent:server")
    registered = time.time()
    caller = await room_caller()
    heard = await expect(caller).to_hear("how can I help you", within=10)
    report = {"url": room_current_lab.url, "workdir": str(room_current_lab.workdir), "body": body,
              "registered": registered, "greeted": heard.start}
    with open(os.environ["INNER_REPORT"], "w") as f:
        json.dump(report, f)
    if os.environ.get("INNER_HOLD"):  # the outer test presses Ctrl-C now
        await asyncio.sleep(120)
"""


def _inner_pytest(folder: Path, report: Path, *, hold: bool = False) -> subprocess.Popen[str]:
    """A pytest session of its own on ``folder`` (INNER_OWN_LAB), in a process group
    of its own, as a developer's terminal runs it (Ctrl-C goes to the whole group)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HOME": HOME, "AGENT_CACHE_DIR": str(CACHE), "INNER_REPORT": str(report), "INNER_HOLD": "1" if hold else "",
           "PYTHONFAULTHANDLER": "1"}  # fmt: skip
    # Started with SIGINT at its default, as from a terminal: this suite's background
    # lanes run as `cmd &` in a non-interactive bash, which starts them with SIGINT
    # ignored, an ignored signal stays ignored across exec, and a pytest started
    # with it ignored never saw its Ctrl-C (fresh-clone runs, 2026-12-07).
    with_sigint = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", with_sigint, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
         "--durations=0", "-q", "--basetemp", str(folder / "tmp"), str(folder)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_two_sessions_with_labs_of_their_own_run_side_by_side_and_ctrl_c_stops_one_mid_call(pytester: pytest.Pytester) -> None:
    """Session 1 runs its call to the end; session 2 holds its call until Ctrl-C,
    which must stop every process that session started, and nothing of session 1's."""
    folders = [pytester.mkdir(f"session-{n}") for n in (1, 2)]
    reports = [folder / "report.json" for folder in folders]
    for folder in folders:
        (folder / "test_inner.py").write_text(INNER_OWN_LAB)
    started = time.time()
    runs = [_inner_pytest(folders[0], reports[0]), _inner_pytest(folders[1], reports[1], hold=True)]
    try:
        deadline = time.time() + 120
        while not reports[1].exists() and runs[1].poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert reports[1].exists(), f"session 2 never reached its call:\n{runs[1].communicate(timeout=30)[0] if runs[1].poll() is not None else ''}"
        held = descendants(runs[1].pid)
        names = sorted({p.cmdline.split(" ")[0].rsplit("/", 1)[-1] for p in held if p.alive()})
        os.killpg(runs[1].pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        pressed = time.time()
        try:
            interrupted = runs[1].communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:  # where it hangs: faulthandler prints every thread's stack on SIGABRT
            os.kill(runs[1].pid, signal.SIGABRT)
            raise AssertionError(f"session 2 still running 60 s after Ctrl-C:\n{runs[1].communicate(timeout=30)[0]}") from None
        took = time.time() - pressed
        finished = runs[0].communicate(timeout=240)[0]
    finally:
        for run in runs:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    # multiprocessing's resource tracker (the offline ear's process pool starts one)
    # ignores SIGINT by design and exits when the session that started it has gone:
    # a moment after it, not with it. Anything still there 5 s on was left behind.
    deadline = time.time() + 5
    while (left := [p for p in held if p.alive()]) and time.time() < deadline:
        time.sleep(0.1)
    print(f"\n[plugin] Ctrl-C during session 2's call: {len(held)} processes ({', '.join(names)}); it ended {took:.1f}s after, exit {runs[1].returncode}")
    assert runs[0].returncode == 0, finished
    assert len(held) >= 3, held  # livekit-server, the backend, the worker (and its job processes)
    assert left == [], f"processes left after Ctrl-C: {[p.cmdline for p in left]}\n{interrupted}"
    assert runs[1].returncode == 2, interrupted  # pytest's exit code for an interrupted session
    results = [json.loads(report.read_text()) for report in reports]
    assert results[0]["url"] != results[1]["url"], results  # two servers, on leased slots of their own
    for n, (result, out) in enumerate(zip(results, (finished, interrupted), strict=True), 1):
        setup = re.search(r"([\d.]+)s setup\s+\S*test_call", out)
        print(f"[plugin] session {n} ({result['url']}): pytest start -> test body {result['body'] - started:.1f}s "
              f"(its lab's set-up {setup.group(1) + 's' if setup else 'not reported'}), worker registered "
              f"{result['registered'] - started:.1f}s, first caller greeted {result['greeted'] - started:.1f}s")  # fmt: skip
    assert subprocess.run(["pgrep", "-f", str(folders[0])], capture_output=True, text=True).stdout.split() == []
    slot = (int(results[1]["url"].rsplit(":", 1)[1]) - LIVEKIT_PORT) // 10
    with leased_slot([slot]):  # session 2's lease ended with it
        pass
