"""tests/hang_watchdog.py: a test stuck where pytest-timeout's signal cannot reach
it ends the session with its stack, instead of hanging the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

_STUCK = '''
import signal, time

def test_before():
    pass

def test_stuck_in_native_code():
    # pytest-timeout's SIGALRM stays pending, as for a main thread inside a C call
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(120)

def test_after():
    pass
'''


def test_a_test_stuck_past_the_watchdog_ends_the_session_with_its_stack(tmp_path: Path) -> None:
    (tmp_path / "test_stuck.py").write_text(_STUCK)
    env = {**os.environ, "AGENT_TEST_HANG_S": "3", "PYTHONPATH": str(TESTS)}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path),
            "-p", "hang_watchdog", "-o", "timeout=2", "-q", "test_stuck.py"]  # fmt: skip
    out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert "Timeout (0:00:03)!" in out.stderr, out.stderr[-2000:]
    assert "in test_stuck_in_native_code" in out.stderr, "the stuck test's frame is in the dump"
    assert "test_after" not in out.stdout, "the session ended at the stuck test"
