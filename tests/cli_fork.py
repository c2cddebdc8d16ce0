"""`python -m agent ARGS`, many times, for the price of one start-up.

Run as a program, it imports the command line (and livekit-agents' CLI under
it: about 2.5 s of CPU, which in the background lane, at the idle CPU
priority beside the room tests, took up to 28 s per command), then for each
request on stdin forks a child that takes the request's environment and
working directory and runs ``agent.__main__.main`` with its arguments, as the
interpreter would: stdout and stderr to files, ``SystemExit`` as the exit
code, an uncaught exception as a traceback and exit 1. One JSON object per
line each way. The parent is single-threaded, so forking it is safe.

``ForkedCli`` drives it from a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _child(args: list[str], env: dict[str, str], cwd: str, out: int, err: int) -> None:
    import agent.__main__ as cli

    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [cli.__file__, *args]
    code = 0
    try:
        cli.main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _serve() -> None:
    # The imports the requests share: the CLI, what the livekit-agents commands
    # load, and what their help pages are drawn with (loaded when one is).
    import typer.rich_utils  # noqa: F401
    from livekit.agents import cli  # noqa: F401

    import agent.__main__  # noqa: F401
    import agent.worker  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        with tempfile.NamedTemporaryFile() as out, tempfile.NamedTemporaryFile() as err:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(req["args"], req["env"], req["cwd"], out.fileno(), err.fileno())
            _, status = os.waitpid(pid, 0)
            result = {
                "returncode": os.waitstatus_to_exitcode(status),
                "stdout": Path(out.name).read_text(errors="replace"),
                "stderr": Path(err.name).read_text(errors="replace"),
            }
        print(json.dumps(result), flush=True)


class ForkedCli:
    """A server of ``python -m agent`` runs (see the module's docstring)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        ready = self._proc.stdout.readline()
        if not ready:
            raise RuntimeError("tests/cli_fork.py did not start (see the test's stderr)")

    def run(self, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"args": list(args), "env": env, "cwd": str(cwd)}) + "\n")
        self._proc.stdin.flush()
        got: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return subprocess.CompletedProcess(["python", "-m", "agent", *args], got["returncode"], got["stdout"], got["stderr"])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _serve()
