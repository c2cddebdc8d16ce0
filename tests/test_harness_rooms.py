"""The room-test harness itself: a real livekit-server and two real WebRTC callers.

Run inside a network namespace (libwebrtc ignores loopback):

    cd /work/main && python -m agent.testing.netns -- python -m pytest -x -q tests/test_harness_rooms.py
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.testing.caller import Caller, Recording, load_wav, make_token, speech_wav
from agent.testing.netns import SERVER_IP, inside_namespace

pytestmark = [pytest.mark.asyncio, pytest.mark.room]

SERVER_BIN = Path(
    os.environ.get(
        "LIVEKIT_SERVER_BIN",
        str(Path.home() / ".cache/agent-worker/livekit-server-v1.13.5/server"),
    )
)
PORT = 7880
HOW_TO_RUN = (
    "room tests need a private network namespace (libwebrtc ignores loopback); run:\n"
    f"  cd /work/main && {sys.executable} -m agent.testing.netns -- "
    f"{sys.executable} -m pytest -x -q tests/test_harness_rooms.py"
)


@dataclass(frozen=True)
class LiveKit:
    url: str
    api_key: str
    api_secret: str
    log: Path

    def token(self, room: str, identity: str) -> str:
        return make_token(self.api_key, self.api_secret, room, identity)


def _wait_listening(proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"livekit-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection((SERVER_IP, PORT), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"livekit-server not listening on {SERVER_IP}:{PORT} after {timeout}s")


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKit]:
    if not inside_namespace():
        pytest.fail(HOW_TO_RUN, pytrace=False)
    if not SERVER_BIN.exists():
        pytest.fail(f"livekit-server binary not found at {SERVER_BIN} (set LIVEKIT_SERVER_BIN)", pytrace=False)
    d = tmp_path_factory.mktemp("livekit")
    key, secret = "APItest" + secrets.token_hex(4), secrets.token_urlsafe(32)
    config = d / "livekit.yaml"
    config.write_text(
        f"port: {PORT}\n"
        f"bind_addresses: [{SERVER_IP}]\n"
        "rtc:\n"
        "  tcp_port: 7881\n"
        "  port_range_start: 50000\n"
        "  port_range_end: 50100\n"
        "  use_external_ip: false\n"
        f"  node_ip: {SERVER_IP}\n"
        f"  stun_servers: ['{SERVER_IP}:3478']\n"  # keeps public STUN servers away from clients
        f"keys:\n  {key}: {secret}\n"
        "room:\n  auto_create: true\n"
        "logging:\n  level: info\n"
    )
    log = d / "livekit-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(SERVER_BIN), "--config", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, log)
        yield LiveKit(f"ws://{SERVER_IP}:{PORT}", key, secret, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def sentence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "sentence.wav"
    return Path(speech_wav("The quick brown fox jumps over the lazy dog, twice on Sundays.", str(path)))


async def _wait_hearing(listener: Caller, identity: str, timeout: float = 15.0) -> float:
    """Wait until ``listener`` receives audio frames from ``identity``; time of the first one."""
    deadline = time.monotonic() + timeout
    while not (rec := listener.heard(identity)).frames:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{listener.identity} received no audio from {identity} in {timeout}s")
        await asyncio.sleep(0.01)
    return rec.frames[0].time


async def test_two_callers_hear_each_other(livekit: LiveKit, sentence: Path) -> None:
    room = f"harness-{uuid.uuid4().hex[:8]}"
    bob = Caller(livekit.url, livekit.token(room, "bob"), identity="bob")
    alice = Caller(livekit.url, livekit.token(room, "alice"), identity="alice")
    try:
        await bob.join()
        t_join = time.time()
        await alice.join()
        assert alice.joined_at is not None
        first_at_bob = await _wait_hearing(bob, "alice")
        first_at_alice = await _wait_hearing(alice, "bob")
        print(
            f"\n[latency] alice join() call -> connected: {alice.joined_at - t_join:.3f}s; "
            f"alice connected -> first audio frame at bob: {first_at_bob - alice.joined_at:.3f}s; "
            f"alice connected -> first frame from bob at alice: {first_at_alice - alice.joined_at:.3f}s"
        )

        pcm, rate = load_wav(sentence)
        expected = sum(e - s for s, e in Recording.from_pcm(pcm, rate).speech_segments())
        before = time.time()
        await alice.say(pcm, rate)
        said_start, said_end = alice.spoken[-1]
        heard_at = await bob.wait_for_speech(after=before, timeout=10)
        await asyncio.sleep(1.0)  # let the tail arrive, plus trailing silence

        segments = bob.heard("alice").filter(after=before).speech_segments()
        total = sum(e - s for s, e in segments)
        assert segments, f"bob heard no speech from alice: {bob.heard('alice')}"
        print(
            f"[speech] source {expected:.2f}s ({len(pcm) / rate:.2f}s file); bob heard {total:.2f}s "
            f"in {len(segments)} segment(s); mouth->ear {segments[0][0] - said_start:.3f}s "
            f"(first loud window; wait_for_speech said {heard_at - said_start:.3f}s)"
        )
        assert abs(total - expected) <= 0.3 * expected, (segments, expected)
        assert said_start - 0.1 <= segments[0][0] <= said_start + 1.0, (segments[0], said_start)
        assert segments[-1][1] <= said_end + 1.0, (segments[-1], said_end)

        from_bob = alice.heard("bob")
        assert from_bob.duration > 1.0, "alice should be receiving bob's (silent) mic"
        assert from_bob.speech_segments() == [], "bob never spoke, yet alice heard speech from him"
        assert bob.heard("bob").frames == [] and alice.heard("alice").frames == []
    finally:
        await alice.leave()
        await bob.leave()
        await alice.leave()  # idempotent


async def test_wait_for_speech_times_out_in_silence(livekit: LiveKit) -> None:
    room = f"harness-{uuid.uuid4().hex[:8]}"
    async with Caller(livekit.url, livekit.token(room, "carol"), identity="carol") as carol, Caller(
        livekit.url, livekit.token(room, "dave"), identity="dave"
    ) as dave:
        await _wait_hearing(carol, "dave")
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="no speech"):
            await carol.wait_for_speech(timeout=1.5)
        assert 1.4 <= time.monotonic() - t0 < 3.0
        assert dave.heard().speech_segments() == []
