"""agent/testing/watchdog.py: a test stuck where pytest-timeout's signal cannot
reach it ends the session with its stack, instead of hanging the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from agent.testing.watchdog import MARGIN_S, hang_limit

_STUCK = '''
import signal, time
import pytest

def _stuck():
    # pytest-timeout's SIGALRM stays pending, as for a main thread inside a C call
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(120)

@pytest.fixture
def stuck_at_teardown():
    yield
    _stuck()

def test_before():
    pass

def test_stuck_in_native_code():
    _stuck()

def test_failed_then_stuck_in_teardown(stuck_at_teardown):
    assert False, "failed"

def test_after():
    pass
'''


def _inner(tmp_path: Path, test: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_stuck.py").write_text(_STUCK)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path),
            "-o", "timeout=2", "-v", "test_stuck.py::test_before", f"test_stuck.py::{test}", "test_stuck.py::test_after"]  # fmt: skip
    return subprocess.run(
        argv, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("test", ["test_stuck_in_native_code", "test_failed_then_stuck_in_teardown"])
def test_a_stuck_test_ends_the_session_with_its_stack(tmp_path: Path, test: str) -> None:
    out = _inner(tmp_path, test, AGENT_TEST_HANG_S="3")
    assert out.returncode == 1, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert "Timeout (0:00:0" in out.stderr, out.stderr[-2000:]  # faulthandler's line: the time it waited
    assert "in _stuck" in out.stderr, "the stuck frame is in the dump"
    assert "test_before PASSED" in out.stdout, out.stdout[-2000:]
    assert "test_after" not in out.stdout.split(test, 1)[-1], "the session ended at the stuck test"


class _Config:
    """What hang_limit reads of pytest's config: pytest-timeout's option and ini value."""

    def __init__(self, option: object, ini: object = "300") -> None:
        self.option, self.ini = option, ini

    def getoption(self, name: str) -> object:
        return self.option

    def getini(self, name: str) -> object:
        return self.ini


def test_the_limit_follows_pytest_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_TEST_HANG_S", raising=False)
    assert hang_limit(cast(pytest.Config, _Config(None))) == 300 + MARGIN_S  # the ini's timeout
    assert hang_limit(cast(pytest.Config, _Config(2.0))) == 2 + MARGIN_S  # --timeout 2
    assert hang_limit(cast(pytest.Config, _Config(0.0))) == 0  # --timeout 0: no limit, no watchdog
    assert hang_limit(cast(pytest.Config, _Config(None, ""))) == 0  # pytest-timeout unset
    monkeypatch.setenv("AGENT_TEST_HANG_S", "7")
    assert hang_limit(cast(pytest.Config, _Config(2.0))) == 7
