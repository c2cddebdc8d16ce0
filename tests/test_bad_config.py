"""Bad configuration ends in one clear message, not a wall of tracebacks;
and help needs no configuration at all.

Each case runs the real command line (`python -m agent start|up`) as a user
would, and checks the exit code and what reaches stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_fork import ForkedCli

from agent.__main__ import COMMANDS
from agent.testing.harness import Testbed, free_port

pytestmark = [pytest.mark.background]  # the room tests here mostly wait for processes

ROOT = Path(__file__).resolve().parents[1]


# A guard against a hang, not a speed limit: this file runs in the background lane
# (SCHED_IDLE), which gets no CPU while the room lane's cluster tests take both cores.
def unconfigured_env() -> dict[str, str]:
    """This environment without any LIVEKIT_*, AGENT_* or OPENAI_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AGENT_", "OPENAI_"))}


def run_agent(*args: str, env: dict[str, str], timeout: float = 180, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {**unconfigured_env(), **env}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_clear_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    err = done.stderr
    assert done.returncode != 0, f"expected a failure, got exit 0; stderr:\n{err}"
    assert "Traceback" not in err, f"a traceback reached the user:\n{err}"
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, f"expected exactly one `error:` line, got:\n{err}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    return error_lines[0]


# ----------------------------------------------------------------- the worker


@pytest.mark.room
def test_wrong_api_secret_is_refused_with_one_message(testbed: Testbed) -> None:
    env = testbed.worker_environment(LIVEKIT_API_SECRET="x" * 40, AGENT_PREFLIGHT_TIMEOUT="3")
    done = run_agent("start", env=env)
    assert done.returncode == 1
    assert_one_clear_error(done, "refused API key", "LIVEKIT_API_SECRET")


@pytest.mark.room
def test_unreachable_livekit_server_retries_then_says_so(testbed: Testbed) -> None:
    env = testbed.worker_environment(LIVEKIT_URL=f"ws://127.0.0.1:{free_port()}", AGENT_PREFLIGHT_TIMEOUT="2")
    done = run_agent("start", env=env)
    assert done.returncode == 1
    assert_one_clear_error(done, "cannot reach livekit-server")


@pytest.mark.room
def test_unreachable_realtime_backend_retries_then_says_so(testbed: Testbed) -> None:
    env = testbed.worker_environment(
        AGENT_REALTIME_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", AGENT_PREFLIGHT_TIMEOUT="2"
    )
    done = run_agent("start", env=env)
    assert done.returncode == 1
    assert_one_clear_error(done, "cannot reach the local realtime server", "realtime-server")


def test_missing_credentials_name_the_variables() -> None:
    done = run_agent("start", env={"LIVEKIT_URL": "ws://127.0.0.1:1"})
    assert done.returncode == 2
    assert_one_clear_error(done, "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set")


def test_bad_setting_value_names_the_variable() -> None:
    done = run_agent("start", env={"AGENT_VAD_THRESHOLD": "loud"})
    assert_one_clear_error(done, "AGENT_VAD_THRESHOLD='loud'")


# ----------------------------------------------------------------- the main job (`up`)


def test_missing_livekit_yaml(tmp_path: Path) -> None:
    done = run_agent("up", env={"AGENT_LIVEKIT_CONFIG": str(tmp_path / "nope.yaml")})
    assert done.returncode == 2
    assert_one_clear_error(done, "nope.yaml: livekit.yaml not found")


def test_broken_livekit_yaml_points_at_the_line(tmp_path: Path) -> None:
    config = tmp_path / "livekit.yaml"
    config.write_text("port: 7880\nkeys:\n  devkey: [unclosed\n")
    done = run_agent("up", env={"AGENT_LIVEKIT_CONFIG": str(config)})
    assert done.returncode == 2
    assert_one_clear_error(done, "not valid YAML at line")


def test_short_secret_in_livekit_yaml(tmp_path: Path) -> None:
    config = tmp_path / "livekit.yaml"
    config.write_text("port: 7880\nkeys:\n  devkey: tooshort\n")
    done = run_agent("up", env={"AGENT_LIVEKIT_CONFIG": str(config)})
    assert_one_clear_error(done, "at least 32 characters")


# ----------------------------------------------------------------- help


HELP_CASES = [
    *([name, "--help"] for name in ["", *COMMANDS, "tools list", "tools call", "dispatch list", "dispatch delete", "sip setup"]),
    # -h too, for one command of ours and one the livekit-agents CLI parses
    ["", "-h"], ["up", "-h"], ["start", "-h"],
]  # fmt: skip


@pytest.fixture(scope="module")
def forked_cli() -> Iterator[ForkedCli]:
    cli = ForkedCli()
    try:
        yield cli
    finally:
        cli.close()


@pytest.mark.parametrize("command,flag", HELP_CASES, ids=lambda a: a or "agent")
def test_help_needs_no_configuration(command: str, flag: str, tmp_path: Path, forked_cli: ForkedCli) -> None:
    # No LIVEKIT_*/AGENT_* variables, and a working directory with no .env or livekit.yaml.
    done = forked_cli.run(*command.split(), flag, env=unconfigured_env(), cwd=tmp_path)
    assert done.returncode == 0, f"exit {done.returncode}; stderr:\n{done.stderr}"
    assert "usage" in done.stdout.lower(), done.stdout
    assert "error" not in done.stderr.lower(), done.stderr


@pytest.mark.parametrize("command", ["", "start"], ids=["agent", "start"])
def test_help_needs_no_configuration_from_a_fresh_interpreter(command: str, tmp_path: Path) -> None:
    # The cases above run in forks of one process that imported the CLI; two, here, as a user starts them.
    done = run_agent(*command.split(), "--help", env={}, cwd=tmp_path)
    assert done.returncode == 0, f"exit {done.returncode}; stderr:\n{done.stderr}"
    assert "usage" in done.stdout.lower(), done.stdout
    assert "error" not in done.stderr.lower(), done.stderr
