"""Command 1, `python -m agent up`: starts livekit-server, the local realtime
server and the worker, prints how to join, and Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent.stack import livekit_server_binary, livekit_sip_binary
from agent.testing.caller import Caller
from agent.testing.cluster import _add_address, _address
from agent.testing.harness import SLOTS, free_port, room_name, shipped_config_on_slot
from agent.testing.netns import SERVER_IP
from agent.testing.telephony import Phone, voiced_segments

# In the background lane (scripts/lanes.sh): `up` starts many processes at once,
# which at the idle CPU priority cannot delay the audio of the room lane.
pytestmark = [pytest.mark.room, pytest.mark.background]

ROOT = Path(__file__).resolve().parents[1]


def _up_env(tmp_path: Path, slot: int) -> dict[str, str]:
    """A clean environment for `up`: the shipped livekit.yaml on ``slot``'s ports, free ports for the rest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AGENT_", "OPENAI_"))}
    env.update(
        AGENT_LIVEKIT_CONFIG=str(shipped_config_on_slot(tmp_path / "livekit.yaml", slot)),
        AGENT_LOCAL_REALTIME_PORT=str(free_port()),
        AGENT_HTTP_PORT=str(free_port()),  # a fleet's workers take it and the next ones
        AGENT_WEB_PORT=str(free_port()),
        AGENT_CACHE_DIR=str(tmp_path / "cache"),
        LIVEKIT_SERVER_BIN=str(livekit_server_binary()),
    )
    return env


def _start_up(env: dict[str, str], argv: list[str], out_path: Path) -> subprocess.Popen[bytes]:
    with out_path.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "up", *argv], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _ready(proc: subprocess.Popen[bytes], out_path: Path, timeout: float) -> str:
    """`up`'s output once it printed its ready line."""
    deadline = time.monotonic() + timeout
    while "ready." not in out_path.read_text():
        assert proc.poll() is None, f"`up` exited early:\n{out_path.read_text()}"
        assert time.monotonic() < deadline, f"`up` not ready:\n{out_path.read_text()}"
        time.sleep(0.2)
    return out_path.read_text()


def _ctrl_c_stops_everything(proc: subprocess.Popen[bytes], out_path: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to `up`'s process group): it exits 0, and no process whose
    command line names ``tmp_path`` (configs, logs, the cache) is left."""
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0, out_path.read_text()
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"a process of `up` survived Ctrl-C: {left.stdout}"


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def test_up_runs_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    env = _up_env(tmp_path, SLOTS["main-job"])
    room = room_name("up")
    out_path = tmp_path / "up.out"
    proc = _start_up(env, ["--room", room], out_path)
    try:
        text = _ready(proc, out_path, timeout=90)
        url = re.search(r"server URL: (\S+)", text).group(1)  # type: ignore[union-attr]
        token = re.search(r"token:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        async with Caller(url, token) as caller:
            await caller.wait_for_speech(timeout=20, min_duration=0.3)
        # ...and the callers' web page, its bundled script and LiveKit's standard token endpoint.
        page = re.search(r"in a browser: (\S+)", text).group(1)  # type: ignore[union-attr]
        base = page.split("?")[0]
        with urllib.request.urlopen(page, timeout=5) as r:
            assert "AI voice agent" in r.read().decode()
        with urllib.request.urlopen(base + "app.js", timeout=5) as r:
            assert r.status == 200 and len(r.read()) > 100_000  # livekit-client bundled in
        ask = urllib.request.Request(base + "token", data=b'{"room_name": "demo"}', headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(ask, timeout=5) as r:
            granted = json.loads(r.read())
            assert r.status == 201 and granted["room_name"] == "demo" and granted["server_url"] == url
        # Ctrl-C reaches the whole foreground process group in a terminal.
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, out_path.read_text()
        assert "[up] stopping" in out_path.read_text()
        children = subprocess.run(["pgrep", "-f", str(env["AGENT_LIVEKIT_CONFIG"])], capture_output=True, text=True)
        assert children.stdout.strip() == "", "livekit-server survived Ctrl-C"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def test_up_runs_a_two_node_cluster_with_three_workers(tmp_path: Path) -> None:
    """`up --nodes 2 --workers 3`: Redis, two livekit-server nodes sharing it,
    three workers spread over the nodes; a caller of the second node is greeted."""
    env = _up_env(tmp_path, SLOTS["fleet-up"])
    room = room_name("fleet")
    out_path = tmp_path / "up.out"
    proc = _start_up(env, ["--room", room, "--nodes", "2", "--workers", "3", "--redis-port", str(free_port())], out_path)
    try:
        text = _ready(proc, out_path, timeout=120)
        ports = [int(p) for p in re.findall(r"livekit-server with \S+ on port (\d+)", text)]
        assert len(ports) == 2 and "cluster of 2 nodes" in text, text
        workers = re.findall(r"starting worker \d+ \(registers with (\S+),", text)
        assert sorted(workers) == sorted([f"ws://{SERVER_IP}:{ports[0]}"] * 2 + [f"ws://{SERVER_IP}:{ports[1]}"]), text
        token = re.search(r"token:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        async with Caller(f"ws://{SERVER_IP}:{ports[1]}", token) as caller:
            await caller.wait_for_speech(timeout=30, min_duration=0.3)
        _ctrl_c_stops_everything(proc, out_path, tmp_path)
    finally:
        _kill(proc)


async def test_up_with_agent_sip_answers_a_phone_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """`AGENT_SIP=1 up`: Redis, livekit-server in its Redis mode, livekit-sip and
    the worker; after `sip setup`, a SIP phone (baresip) calls and is greeted."""
    env = _up_env(tmp_path, SLOTS["sip-up"])
    sip_port = free_port()
    env.update(LIVEKIT_SIP_BIN=str(livekit_sip_binary()), AGENT_SIP="1", AGENT_SIP_ADDRESS=SERVER_IP, AGENT_SIP_PORT=str(sip_port), AGENT_SIP_RTP_PORTS="36000-36099")
    out_path = tmp_path / "up.out"
    proc = _start_up(env, ["--redis-port", str(free_port())], out_path)
    try:
        text = _ready(proc, out_path, timeout=120)
        assert "for livekit-server and livekit-sip" in text and f"livekit-sip on {SERVER_IP}:{sip_port}" in text, text
        assert f"Phone calls: livekit-sip at sip:{SERVER_IP}:{sip_port}" in text, text
        url = re.search(r"server URL:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        phone_address = _address(70)
        _add_address(phone_address)
        setup = subprocess.run(
            [sys.executable, "-m", "agent", "sip", "setup", "--number", "+15550177", "--allow", phone_address],
            env={**env, "LIVEKIT_URL": url}, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert setup.returncode == 0 and "created inbound trunk" in setup.stdout, setup.stdout + setup.stderr
        with Phone(tmp_path / "phone", address=phone_address, logs=tmp_path) as phone:
            phone.dial(f"sip:+15550177@{SERVER_IP}:{sip_port}")
            phone.wait_event("CALL_ESTABLISHED", timeout=20)
            deadline = time.monotonic() + 15
            while not voiced_segments(phone.heard(), level_dbfs=-40.0):
                assert time.monotonic() < deadline, f"no greeting at the phone:\n{out_path.read_text()}"
                time.sleep(0.1)
            phone.hang_up()
        _ctrl_c_stops_everything(proc, out_path, tmp_path)  # livekit-sip's config is under its logs there too
    finally:
        _kill(proc)
