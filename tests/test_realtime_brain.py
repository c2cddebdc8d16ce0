"""The scripted brain: rules, templates, memory rebuilt from the conversation."""

from __future__ import annotations

import re
from pathlib import Path

from agent.realtime.brain import BrainInput, ScriptedBrain, Turn

ROOT = Path(__file__).resolve().parents[1]


def readme_brain(tmp_path: Path) -> ScriptedBrain:
    """The rules file shown in README, so the documentation cannot rot."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(rules:.*?)```", readme, re.DOTALL)
    assert block, "README lost its brain example"
    path = tmp_path / "brain.yaml"
    path.write_text(block.group(1))
    return ScriptedBrain.from_file(path)


def said(*texts: str) -> BrainInput:
    return BrainInput(turns=tuple(Turn("message", "user", text=t) for t in texts), instructions="")


def test_readme_rules_remember_a_fact_from_an_earlier_turn(tmp_path: Path) -> None:
    brain = readme_brain(tmp_path)
    assert brain.reply(said("hi, my name is Alice")).say == "Nice to meet you, Alice."
    assert brain.reply(said("hi, my name is Alice", "so what is my name")).say == "Your name is Alice."


def test_readme_rule_calls_a_tool_with_templated_arguments(tmp_path: Path) -> None:
    reply = readme_brain(tmp_path).reply(said("are you open on Sunday?"))
    assert [(c.name, c.arguments) for c in reply.calls] == [("get_opening_hours", {"day": "Sunday"})]


def test_say_exactly_wins_and_unknown_text_is_echoed() -> None:
    brain = ScriptedBrain()
    inp = BrainInput(turns=(), instructions="", response_instructions='Greet. Say exactly: "Hello, I am an AI."')
    assert brain.reply(inp).say == "Hello, I am an AI."
    assert brain.reply(said("the weather")).say == "You said: the weather"


def test_after_a_tool_output_it_reports_the_result() -> None:
    turns = (Turn("message", "user", text="order"), Turn("function_call_output", "tool", call_id="c1", output='{"message": "Order 7 placed."}'))
    assert ScriptedBrain().reply(BrainInput(turns=turns, instructions="")).say == "Done. Order 7 placed."


def test_a_reply_cut_short_leaves_the_question_before_it_unanswered() -> None:
    brain = ScriptedBrain()
    cut = Turn("message", "assistant", text="You said", complete=False)
    question = Turn("message", "user", text="hello there")
    assert brain.reply(BrainInput(turns=(question, cut), instructions="")).say == "You said: hello there"
    finished = Turn("message", "assistant", text="You said: hello there")
    assert brain.reply(BrainInput(turns=(question, finished), instructions="")).say == brain.heard_audio
