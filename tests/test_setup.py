"""scripts/setup.sh: one `[setup]` line per step, the tools' own output in a
log per step, and a failing step that shows where its log is and how it ends.

The script runs from a copy in a temporary clone, with every tool it could
call to install something (apt-get, pip through .venv/bin/python, npm, go)
replaced on PATH by a fake that writes down that it ran: these tests never
install anything and never touch the network.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"
LIVEKIT_VERSION = re.search(r'^LIVEKIT_VERSION="(v[\d.]+)"$', SETUP.read_text(), re.M).group(1)  # type: ignore[union-attr]
SIP_VERSION = re.search(r'^SIP_VERSION="(v[\d.]+)"$', SETUP.read_text(), re.M).group(1)  # type: ignore[union-attr]
PRESENT = ("espeak-ng", "sox", "ip", "unshare", "node", "nft", "redis-server", "baresip")  # Debian packages the script only looks for
INSTALLERS = ("apt-get", "npm", "go")


class Clone:
    """A temporary clone with everything set up (``present``), and fakes to make a step run or fail."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "clone"
        self.bin = tmp / "bin"
        self.cache = tmp / "cache"
        self.calls = tmp / "calls"
        self.logs = self.root / ".cache" / "setup"
        (self.root / "scripts").mkdir(parents=True)
        shutil.copy2(SETUP, self.root / "scripts" / "setup.sh")
        self.bin.mkdir()
        for name in PRESENT:
            self.fake(self.bin / name, "exit 0")
        for name in INSTALLERS:
            self.fake(self.bin / name, f'echo "{name} $*" >>"{self.calls}"; echo "{name}: not in this test" >&2; exit 1')
        self.fake(self.root / ".venv" / "bin" / "python", f'echo "pip $*" >>"{self.calls}"; exit 1')
        self.write(self.root / "pyproject.toml", "[project]\nname = 'x'\n")
        for js in ("web", "deploy/validate"):  # the two npm ci steps
            self.write(self.root / js / "package-lock.json", "{}\n")
        self.server = self.cache / f"livekit-server-{LIVEKIT_VERSION}" / "server"
        self.fake(self.server, "exit 0")
        self.sip = self.cache / f"livekit-sip-{SIP_VERSION}" / "livekit-sip"
        self.fake(self.sip, "exit 0")
        self.write(self.root / ".venv" / ".installed", "", later=True)
        for js in ("web", "deploy/validate"):
            self.write(self.root / js / "node_modules" / ".package-lock.json", "{}\n", later=True)
        self.write(self.root / "web" / "src" / "app.js", "// the page\n")
        self.write(self.root / "web" / "dist" / "app.js", "// bundled\n", later=True)

    @staticmethod
    def write(path: Path, text: str, *, later: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if later:  # a stamp newer than what it stands for: the step is up to date
            os.utime(path, (time.time() + 5, time.time() + 5))

    @staticmethod
    def fake(path: Path, body: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k not in ("LIVEKIT_SERVER_BIN", "AGENT_CACHE_DIR")}
        base.update(PATH=f"{self.bin}:{os.environ['PATH']}", PYTHON=sys.executable, AGENT_CACHE_DIR=str(self.cache))
        return subprocess.run(["bash", str(self.root / "scripts" / "setup.sh"), *args], env={**base, **env},
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def called(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


def _running(pid: int) -> bool:
    try:  # a zombie waiting for its reaper counts as stopped
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return (done.stdout + done.stderr).splitlines()


@pytest.fixture
def clone(tmp_path: Path) -> Clone:
    return Clone(tmp_path)


def test_a_rerun_prints_only_setup_lines_and_runs_no_installer(clone: Clone) -> None:
    done = clone.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(line.startswith("[setup] ") for line in lines(done)), lines(done)
    assert lines(done)[-1].startswith("[setup] done")
    assert clone.called() == []


def test_a_step_that_runs_prints_one_line_and_logs_the_tools_output(clone: Clone) -> None:
    # pip and npm have work to do (their stamps are older than what they stand for); the fakes chatter
    os.utime(clone.root / ".venv" / ".installed", (0, 0))
    os.utime(clone.root / "web" / "node_modules" / ".package-lock.json", (0, 0))
    clone.fake(clone.root / ".venv" / "bin" / "python", 'for i in 1 2 3; do echo "Collecting package$i"; done')
    clone.fake(clone.bin / "npm", 'echo "added 42 packages in 3s"; echo "npm warn something" >&2')
    done = clone.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(line.startswith("[setup] ") for line in lines(done)), lines(done)
    assert len([line for line in lines(done) if "into .venv (pip" in line]) == 1
    assert len([line for line in lines(done) if "(npm ci" in line]) == 1
    assert "Collecting package3" in (clone.logs / "pip.log").read_text()
    assert "npm warn something" in (clone.logs / "npm.log").read_text()


def test_a_changed_page_script_is_bundled_again_in_one_line(clone: Clone) -> None:
    os.utime(clone.root / "web" / "dist" / "app.js", (0, 0))  # older than web/src/app.js
    clone.fake(clone.bin / "npm", f'echo "npm $*" >>"{clone.calls}"; echo "dist/app.js 580kb"')
    done = clone.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(line.startswith("[setup] ") for line in lines(done)), lines(done)
    assert [line for line in lines(done) if "bundling the web page" in line], lines(done)
    assert clone.called() == [f"npm run --prefix {clone.root}/web build"]
    assert "dist/app.js 580kb" in (clone.logs / "npm.log").read_text()


def test_a_failing_build_names_its_log_and_shows_its_last_lines(clone: Clone) -> None:
    shutil.rmtree(clone.server.parent)  # livekit-server is to be built, and the fake go fails
    chatter = "; ".join(f'echo "go: downloading example.com/m{i} v1.0.{i}" >&2' for i in range(40))
    clone.fake(clone.bin / "go", f'[ "$1" = env ] && {{ echo https://proxy.example; exit 0; }}\n{chatter}\n'
                                 'echo "fake go: the proxy is unreachable" >&2; exit 1')  # fmt: skip
    done = clone.run()
    assert done.returncode == 1
    out = lines(done)
    assert all(line.startswith("[setup] ") for line in out), out
    log = clone.logs / "livekit-server.log"
    assert any(str(log) in line for line in out), out
    assert "go: downloading example.com/m0 v1.0.0" in log.read_text()
    shown = [line for line in out if "go: downloading" in line]
    assert 10 <= len(shown) <= 25 and "m39" in shown[-1]  # the end of the log, not all of it
    assert any("the proxy is unreachable" in line for line in out)
    assert any("GOPROXY=https://proxy.example" in line for line in out)
    assert not clone.server.exists()


def test_a_failing_step_stops_the_build_running_beside_it(clone: Clone) -> None:
    shutil.rmtree(clone.server.parent)
    pid_file = clone.root / "go.pid"
    clone.fake(clone.bin / "go", f'[ "$1" = env ] && exit 0\necho $$ >"{pid_file}"; exec sleep 60')
    # npm runs, and fails once the build is under way
    os.utime(clone.root / "web" / "node_modules" / ".package-lock.json", (0, 0))
    clone.fake(clone.bin / "npm", f'i=0; while [ ! -s "{pid_file}" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n'
                                  'echo "npm error network" >&2; exit 1')  # fmt: skip
    started = time.monotonic()
    done = clone.run()
    assert done.returncode == 1 and time.monotonic() - started < 30
    assert any("npm ci in web/ failed" in line for line in lines(done)), lines(done)
    assert any(str(clone.logs / "npm.log") in line for line in lines(done))
    assert pid_file.exists(), "the build did not start beside the other steps"
    pid = int(pid_file.read_text())
    alive = _running(pid)
    if alive:  # a leaked one is ours to stop
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the livekit-server build outlived set-up"


def test_livekit_server_bin_must_be_an_executable(clone: Clone) -> None:
    not_executable = clone.root / "server.txt"
    not_executable.write_text("")
    done = clone.run(LIVEKIT_SERVER_BIN=str(not_executable))
    assert done.returncode == 1
    assert any(f"LIVEKIT_SERVER_BIN={not_executable} is not an executable" in line for line in lines(done))
    assert clone.called() == []


def test_a_failing_sip_build_names_its_log_and_what_it_needs(clone: Clone) -> None:
    shutil.rmtree(clone.sip.parent)  # livekit-sip is to be built (livekit-server is there), and the fake go fails
    clone.fake(clone.bin / "pkg-config", "exit 0")  # its -dev packages are installed
    clone.fake(clone.bin / "go", 'echo "fake go: opus.h: No such file or directory" >&2; exit 1')
    done = clone.run("--sip")
    assert done.returncode == 1
    out = lines(done)
    assert all(line.startswith("[setup] ") for line in out), out
    assert any("the livekit-sip build failed" in line for line in out), out
    assert any(str(clone.logs / "livekit-sip.log") in line for line in out), out
    assert any("opus.h: No such file or directory" in line for line in out), out
    assert any("libopus-dev" in line for line in out), out
    assert not clone.sip.exists()


def test_livekit_sip_is_built_only_when_phone_calls_are_asked_for(clone: Clone) -> None:
    shutil.rmtree(clone.sip.parent)  # not built, and go would fail
    clone.fake(clone.bin / "pkg-config", "exit 0")  # its -dev packages are installed
    done = clone.run()  # the main job without AGENT_SIP
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any("livekit-sip" in line for line in lines(done)), lines(done)
    assert clone.called() == []
    # AGENT_SIP=1 (run.sh passes the environment on) asks for it, as --sip does
    asked = clone.run(AGENT_SIP="1")
    assert asked.returncode == 1 and any("the livekit-sip build failed" in line for line in lines(asked)), lines(asked)
    assert [c for c in clone.called() if c.startswith("go ")], clone.called()


def test_builds_that_succeed_are_moved_into_the_cache_and_said_once(clone: Clone) -> None:
    shutil.rmtree(clone.server.parent)
    shutil.rmtree(clone.sip.parent)
    modcache = clone.root.parent / "gomodcache"
    (modcache / "github.com" / f"livekit/sip@{SIP_VERSION}").mkdir(parents=True)
    clone.fake(clone.bin / "pkg-config", "exit 0")
    # go install puts the binary in $GOBIN; go build -o PATH writes PATH; go env GOMODCACHE names the module cache
    clone.fake(clone.bin / "go", f"""case "$1" in
  env) [ "$2" = GOMODCACHE ] && echo "{modcache}"; exit 0 ;;
  install) printf '#!/bin/sh\\n' >"$GOBIN/server"; chmod +x "$GOBIN/server" ;;
  mod) ;;
  build) while [ "$1" != -o ]; do shift; done; printf '#!/bin/sh\\n' >"$2"; chmod +x "$2" ;;
esac
echo "go: downloading example.com/m v1.0.0" >&2""")
    done = clone.run("--sip")
    assert done.returncode == 0, done.stdout + done.stderr
    out = lines(done)
    assert all(line.startswith("[setup] ") for line in out), out
    assert len([line for line in out if line.startswith("[setup] livekit-server built in")]) == 1, out
    assert len([line for line in out if line.startswith("[setup] livekit-sip built in")]) == 1, out
    assert clone.server.is_file() and clone.sip.is_file()
    assert not list(clone.cache.glob("*.tmp.*")), "a build's temporary folder was left"
