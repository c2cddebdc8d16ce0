"""agent.testing's pytest plugin on agents with the bugs room tests are for
(examples/broken_agents.py): each fails with a message that says why. And the
plugin itself: it refuses to run outside a network namespace with one clear
message; a failing test keeps its recording and the worker's log and leaves no
process behind, with a second lab running beside this session's."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from agent.stack import cache_dir
from agent.testing.expect import expect
from agent.testing.harness import SLOTS

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
    for pattern in (str(pytester.path), "agent.testing.entry examples.stock_agent"):
        left = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        assert left == [], f"processes left behind ({pattern}): {left}"
