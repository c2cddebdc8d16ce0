"""Scenarios without code: ``python -m agent.testing run scenario.yaml --worker CMD``.

A scenario file names the backend's scripted brain and one or more calls, each
a list of steps a caller takes and expects, in order::

    brain:                          # or brain_file: rules.yaml
      instructed: "Hello! I'm an AI assistant. How can I help you today?"
      rules:
        - {match: "open on (?P<day>\\w+)", say: "On {day} we open at nine in the morning."}
    calls:
      - name: greets and answers
        steps:
          - hear: how can I help you       # expect(caller).to_hear(..., within=)
            within: 10
          - say: What time do you open on Sunday?
          - hear: we open at nine in the morning
            within: 4
          - type: I'd like two lattes      # room chat
          - tool: place_order              # expect(caller).to_call_tool(...)
            arguments: {item: latte}
          - silence: 2                     # expect(caller).to_be_silent(2)

``--worker`` is a command (``"python my_agent.py start"``) or ``module:server``.
It prints one line per step and a summary, keeps each failed call's
recording (left: said, right: heard) and the worker's log in ``--out``, and
exits 1 when a step failed, 2 when the scenario or the set-up is wrong. Run
outside a network namespace, it re-runs itself inside one (root needed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STEP_KINDS = ("hear", "say", "say_wav", "type", "tool", "silence", "wait", "leave")


class ScenarioError(ValueError):
    """The scenario file is not one this runner can run; the message says where."""


@dataclass(frozen=True)
class Step:
    kind: str
    value: Any
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.options.items())
        return f"{self.kind}: {self.value!r}{extra}"


@dataclass(frozen=True)
class Call:
    name: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Scenario:
    brain: dict[str, Any] | str | None
    calls: tuple[Call, ...]


def load(path: str | Path) -> Scenario:
    """Read and check a scenario file; ScenarioError naming the place of a mistake."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ScenarioError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping with 'calls' (and 'brain' or 'brain_file')")
    unknown = sorted(set(data) - {"brain", "brain_file", "calls"})
    if unknown:
        raise ScenarioError(f"{path}: unknown key(s) {', '.join(unknown)}")
    brain: dict[str, Any] | str | None = data.get("brain")
    if data.get("brain_file"):
        brain = str((Path(path).parent / data["brain_file"]).resolve())
    if brain is not None and not isinstance(brain, dict | str):
        raise ScenarioError(f"{path}: brain must be a mapping of rules")
    raw_calls = data.get("calls")
    if not isinstance(raw_calls, list) or not raw_calls:
        raise ScenarioError(f"{path}: 'calls' must be a list of calls, each with 'steps'")
    calls = []
    for i, raw in enumerate(raw_calls, 1):
        if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list) or not raw["steps"]:
            raise ScenarioError(f"{path}: call {i} needs a list of 'steps'")
        steps = []
        for j, step in enumerate(raw["steps"], 1):
            kinds = [k for k in step if k in STEP_KINDS] if isinstance(step, dict) else []
            if len(kinds) != 1:
                raise ScenarioError(f"{path}: call {i}, step {j}: one of {', '.join(STEP_KINDS)} per step (got {step!r})")
            kind = kinds[0]
            options = {k: v for k, v in step.items() if k != kind}
            allowed = {"hear": {"within"}, "tool": {"arguments", "within"}, "silence": set(), "say": set(), "say_wav": set(),
                       "type": set(), "wait": set(), "leave": set()}[kind]  # fmt: skip
            extra = sorted(set(options) - allowed)
            if extra:
                raise ScenarioError(f"{path}: call {i}, step {j} ({kind}): unknown option(s) {', '.join(extra)}")
            steps.append(Step(kind, step[kind], options))
        calls.append(Call(str(raw.get("name") or f"call {i}"), tuple(steps)))
    return Scenario(brain, tuple(calls))


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def line(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)


async def run_call(lab: Any, call: Call, ear: Any, out: Path, report: Report) -> bool:
    from .expect import RoomCaller, expect
    from .harness import room_name

    folder = out / call.name.replace(" ", "-").replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    caller = lab.caller(room_name("scenario"), "caller")
    await caller.join()
    rc = RoomCaller(caller, lab.backends, ear, folder)
    report.line(f"call {call.name!r}")
    ok = True
    try:
        for n, step in enumerate(call.steps, 1):
            started = time.monotonic()
            try:
                await _step(rc, step, expect)
            except AssertionError as e:
                report.line(f"  FAIL {n}. {step.describe()} ({time.monotonic() - started:.1f}s)\n" + _indent(str(e)))
                report.failed.append(f"{call.name}, step {n}: {step.describe()}")
                ok = False
                break
            report.line(f"  ok   {n}. {step.describe()} ({time.monotonic() - started:.1f}s)")
    finally:
        await caller.leave()
        if not ok:
            report.line(f"  kept {rc.save(folder / 'caller.wav')} (left: said, right: heard)")
    return ok


async def _step(rc: Any, step: Step, expect: Any) -> None:
    if step.kind == "hear":
        await expect(rc).to_hear(str(step.value), within=float(step.options.get("within", 5)))
    elif step.kind == "say":
        await rc.say(str(step.value))
    elif step.kind == "say_wav":
        await rc.say_wav(step.value)
    elif step.kind == "type":
        await rc.type(str(step.value))
    elif step.kind == "tool":
        await expect(rc).to_call_tool(str(step.value), within=float(step.options.get("within", 10)), **(step.options.get("arguments") or {}))
    elif step.kind == "silence":
        await expect(rc).to_be_silent(float(step.value))
    elif step.kind == "wait":
        await asyncio.sleep(float(step.value))
    elif step.kind == "leave":
        await rc.leave()


def _indent(text: str) -> str:
    return "\n".join(f"       {line}" for line in text.splitlines())


async def run(scenario: Scenario, worker: str, out: Path, *, slot: int = 0) -> Report:
    from ..sound.recognizer import Recognizer
    from .lab import Lab

    report = Report()
    lab = Lab(out / "lab", slot=slot, brain=scenario.brain)
    await asyncio.to_thread(lab.start)
    try:
        started = time.monotonic()
        handle = await asyncio.to_thread(lab.start_worker, worker)
        report.line(f"worker {worker!r} registered in {time.monotonic() - started:.1f}s")
        ear = Recognizer()
        try:
            for call in scenario.calls:
                await run_call(lab, call, ear, out, report)
        finally:
            ear.close()
            handle.stop()
            if report.failed:
                log = out / f"{handle.name}.log"
                log.write_text(handle.log())
                report.line(f"kept the worker's log: {log}")
    finally:
        await asyncio.to_thread(lab.stop)
    passed = len(scenario.calls) - len({f.split(', step')[0] for f in report.failed})
    report.line(f"{passed} of {len(scenario.calls)} calls passed" + (f"; failed: {'; '.join(report.failed)}" if report.failed else ""))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.testing", description="Room tests of any LiveKit agent, from a YAML scenario.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("run", help="run a scenario file against a worker")
    cmd.add_argument("scenario", help="the scenario file (YAML)")
    cmd.add_argument("--worker", required=True, help='the worker: a command ("python agent.py start") or module:server')
    cmd.add_argument("--out", default="room-test-results", help="where recordings and logs of failed calls go")
    cmd.add_argument("--slot", type=int, default=0, help="livekit-server's port slot (7880 + 10 x slot)")
    args = parser.parse_args(argv)
    try:
        scenario = load(args.scenario)
    except ScenarioError as e:
        print(f"agent.testing: {e}", file=sys.stderr)
        return 2
    from .netns import inside_namespace

    if not inside_namespace():
        os.execv(sys.executable, [sys.executable, "-m", "agent.testing.netns", "--", sys.executable, "-m", "agent.testing", *sys.argv[1:]])
    from ..errors import AgentError

    try:
        report = asyncio.run(run(scenario, args.worker, Path(args.out).resolve(), slot=args.slot))
    except (AgentError, TimeoutError, RuntimeError) as e:  # the worker or the lab would not start
        print(f"agent.testing: could not run the scenario: {e}", file=sys.stderr)
        return 2
    return 1 if report.failed else 0
