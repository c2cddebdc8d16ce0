"""Log lines (agent.logs): JSON lines with AGENT_LOG_FORMAT=json, the same keys
as livekit-agents' own JSON formatter, and the room/job/participant fields.

That a real job's lines carry room, job_id and participant is shown in
test_agent_dispatch_rooms.py (a worker with AGENT_LOG_FORMAT=json).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from livekit.agents.cli.log import JsonFormatter

from agent.config import Settings
from agent.errors import ConfigError
from agent.logs import JsonLines, log_format, readable, use_json_lines

ROOT = Path(__file__).resolve().parents[1]


def record(msg: str = "job %s: joining room %s", args: tuple[object, ...] = ("AJ_1", "support"), **extra: object) -> logging.LogRecord:
    r = logging.getLogger("agent.worker").makeRecord("agent.worker", logging.INFO, __file__, 10, msg, args, None, extra=extra)
    return r


class TestJsonLines:
    def test_a_line_is_one_json_object_with_the_job_fields(self) -> None:
        line = JsonLines().format(record(room="support", job_id="AJ_1", participant="caller-7"))
        assert "\n" not in line
        data = json.loads(line)
        assert data["level"] == "INFO" and data["name"] == "agent.worker"
        assert data["message"] == "job AJ_1: joining room support"
        assert (data["room"], data["job_id"], data["participant"]) == ("support", "AJ_1", "caller-7")
        assert data["pid"] == os.getpid()
        assert data["timestamp"].endswith("+00:00")

    def test_fields_not_known_are_absent_not_empty(self) -> None:
        data = json.loads(JsonLines().format(record(room="support")))
        assert "participant" not in data and "job_id" not in data

    def test_it_writes_the_keys_livekit_agents_writes(self) -> None:
        # The worker's own lines (start mode) come from the framework's formatter:
        # one log pipeline must read both.
        ours = json.loads(JsonLines().format(record(room="support", job_id="AJ_1")))
        theirs = json.loads(JsonFormatter().format(record(room="support", job_id="AJ_1")))
        for key in ("level", "name", "message", "pid", "room", "job_id"):
            assert ours[key] == theirs[key], key
        assert set(ours) <= set(theirs), set(ours) - set(theirs)

    def test_an_exception_is_in_the_line(self) -> None:
        try:
            raise ValueError("bad frame")
        except ValueError:
            r = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
        data = json.loads(JsonLines().format(r))
        assert "ValueError: bad frame" in data["exc_info"]

    def test_an_extra_that_is_not_json_is_written_as_text(self) -> None:
        data = json.loads(JsonLines().format(record(path=Path("/tmp/x"), error=OSError("no route"))))
        assert data["path"] == "/tmp/x" and data["error"] == "OSError: no route"

    def test_dev_mode_handlers_are_switched_to_json_lines(self) -> None:
        logger = logging.getLogger("test_logs.dev")
        coloured, framework = logging.StreamHandler(), logging.StreamHandler()
        coloured.setFormatter(logging.Formatter("%(message)s"))
        theirs = JsonFormatter()
        framework.setFormatter(theirs)
        logger.handlers = [coloured, framework]
        use_json_lines(logger)
        assert isinstance(coloured.formatter, JsonLines)
        assert framework.formatter is theirs  # the framework's JSON lines are kept as they are


class TestSetting:
    @pytest.mark.parametrize("raw,expected", [(None, "text"), ("", "text"), ("json", "json"), (" JSON ", "json"), ("text", "text")])
    def test_values(self, raw: str | None, expected: str) -> None:
        assert log_format(raw) == expected

    def test_an_unknown_format_names_the_variable(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("AGENT_LOG_FORMAT", "xml")
        with pytest.raises(ConfigError, match="AGENT_LOG_FORMAT='xml' must be one of text, json"):
            Settings.from_env(dotenv_path=tmp_path / ".env")


# ----------------------------------------------------------------- a command's own logging

PROGRAM = (
    "import logging; from agent.__main__ import _setup_logging; _setup_logging('INFO'); "
    "logging.getLogger('agent.realtime').info('listening on %s', 8765, extra={'room': 'support'})"
)


def run_program(**env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AGENT_", "OPENAI_"))}
    return subprocess.run([sys.executable, "-c", PROGRAM], env={**full_env, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_command_logs_json_lines_when_asked() -> None:
    done = run_program(AGENT_LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    data = json.loads(lines[0])
    assert data["message"] == "listening on 8765" and data["room"] == "support" and data["name"] == "agent.realtime"


def test_a_command_logs_text_as_before_by_default() -> None:
    done = run_program()
    assert done.returncode == 0, done.stderr
    assert done.stderr.rstrip().endswith(" INFO agent.realtime: listening on 8765"), done.stderr


def test_a_bad_format_is_one_error_line() -> None:
    done = run_program(AGENT_LOG_FORMAT="xml")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: AGENT_LOG_FORMAT='xml' must be one of text, json", done.stderr


def test_a_json_line_reads_as_text_for_failure_reports() -> None:
    line = json.dumps(
        {
            "message": "greeting failed", "level": "WARNING", "name": "agent.session", "room": "again-1",
            "timestamp": "2026-12-07T13:43:17.030123+00:00", "exc_info": "Traceback ...\nTimeoutError: no reply",
        }
    )  # fmt: skip
    assert readable(line) == "13:43:17.030 WARNING agent.session: greeting failed [room again-1] | TimeoutError: no reply"
    # Text lines and JSON that is not a record pass as they are.
    assert readable("2026-12-07 13:42:10,843 INFO websockets.server: listening") == "2026-12-07 13:42:10,843 INFO websockets.server: listening"
    assert readable("[1, 2]") == "[1, 2]"
