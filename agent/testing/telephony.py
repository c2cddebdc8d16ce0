"""Phone calls for room tests: LiveKit's SIP service beside a cluster, and a
SIP phone (Debian's baresip) in the test namespace.

LiveKit SIP needs livekit-server in its Redis mode (the two talk through
Redis), so a :class:`Telephony` is a one-node :class:`~agent.testing.cluster.Cluster`
plus ``livekit-sip`` on an address of its own (10.77.0.31); each
:class:`Phone` takes another (10.77.0.41, ...) and is a real SIP user agent:
it sends G.711 from a WAV file, records what it hears, sends DTMF (RFC 4733)
and reports its calls' events through baresip's ``ctrl_tcp`` interface.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from ..stack import ManagedProcess, SipServiceConfig
from .cluster import Cluster, _add_address, _address
from .harness import free_port

__all__ = ["Phone", "Telephony", "phone_speech", "voiced_segments"]

SIP_PORT = 5060
PHONE_RATE = 8000  # G.711


class Telephony(Cluster):
    """Redis, one livekit-server node, livekit-sip and the realtime backend;
    workers with :meth:`start_worker`, phones with :meth:`phone`."""

    def __init__(self, workdir: Path, *, slot: int, **options: Any) -> None:
        super().__init__(workdir, nodes=1, slot=slot, **options)
        self.sip_address = _address(30)
        self.sip_port = SIP_PORT + slot  # telephony testbeds of other slots share the address
        self.sip_rtp_ports = (30000 + 200 * slot, 30000 + 200 * slot + 199)
        self.sip: ManagedProcess | None = None
        self._phones = 0

    def start(self) -> Telephony:
        super().start()
        try:
            _add_address(self.sip_address)
            self.start_sip()
        except BaseException:
            self.stop()
            raise
        return self

    def start_sip(self) -> ManagedProcess:
        node = self.nodes[0]
        config = SipServiceConfig.write(
            self.workdir / "sip.yaml", api_key=self.api_key, api_secret=self.api_secret, ws_url=node.url,
            redis=f"{self.redis_address}:{self.redis_port}", address=self.sip_address, sip_port=self.sip_port,
            rtp_ports=self.sip_rtp_ports, health_port=free_port(),
        )  # fmt: skip
        restarts = sum(1 for p in self.stack.processes if p.name.startswith("sip"))
        self.sip = self.stack.start_sip(config, name="sip" + (f"-{restarts}" if restarts else ""))
        return self.sip

    @property
    def sip_uri_host(self) -> str:
        return f"{self.sip_address}:{self.sip_port}"

    def phone(self, name: str = "phone", *, address: str | None = None, **options: Any) -> Phone:
        """A new phone (not started: use it as a context manager), on an
        address of its own: 10.77.0.40, .41, ... unless ``address`` is given."""
        if address is None:
            self._phones += 1
            address = _address(39 + self._phones)
        _add_address(address)
        return Phone(self.workdir / name, address=address, name=name, logs=self.stack.log_dir, **options)

    def __enter__(self) -> Telephony:
        return self.start()


class Phone:
    """baresip as a phone: ``dial``, ``send_digits``, ``hang_up``, ``heard``.

    ``speech`` is the WAV it sends once a call is up (8 kHz mono 16-bit; it
    sends silence after it). What it receives is written by baresip's
    ``sndfile`` module to ``dump-*-dec.wav`` in its folder.

    ``answer`` is what it does with a call that comes in: ``auto`` answers at
    once, ``manual`` lets it ring (no one picks up), ``busy`` rejects it with
    486 (baresip sends its own reason phrase, "Rejected").

    ``loopback`` makes it a speakerphone at its loudest: its microphone hears
    its speaker, and what it receives it sends back at once, at full level
    (baresip's ``aubridge``: the player feeds the source of the same name,
    20 ms frames), instead of ``speech``.
    """

    def __init__(
        self, workdir: Path, *, address: str, name: str = "phone", logs: Path | None = None, speech: Path | None = None,
        user: str = "phone", password: str = "", sip_port: int = 5070, answer: str = "auto", loopback: bool = False,
    ) -> None:  # fmt: skip
        self.loopback = loopback
        if answer not in ("auto", "manual", "busy"):
            raise ValueError(f"answer={answer!r}: auto, manual or busy")
        self.answer = answer
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.name = name
        self.user = user
        self.password = password
        self.sip_port = sip_port
        self.speech = speech
        self.ctrl_port = free_port()
        self.log_path = (logs or self.workdir) / f"{name}.log"
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._responses: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._sock: socket.socket | None = None
        self.process: ManagedProcess | None = None

    # ------------------------------------------------------------------ lifecycle

    def _write_config(self) -> None:
        silence = self.workdir / "silence.wav"
        _write_wav(silence, np.zeros(PHONE_RATE * 120, dtype=np.int16))
        source = self.speech or silence
        bridge = f"loop-{self.name}" if self.loopback else "phone"
        lines = [
            "poll_method epoll",
            f"sip_listen {self.address}:{self.sip_port}",
            f"rtp_ports {40000 + (self.ctrl_port % 100) * 50}-{40000 + (self.ctrl_port % 100) * 50 + 49}",
            f"audio_source aubridge,{bridge}" if self.loopback else f"audio_source aufile,{source}",
            f"audio_player aubridge,{bridge}",
            "audio_alert aubridge,alert",
            f"ausrc_srate {PHONE_RATE}",
            f"auplay_srate {PHONE_RATE}",
            "ausrc_channels 1",
            "auplay_channels 1",
            "module_path /usr/lib/baresip/modules",
            "module account.so",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
            "module sndfile.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            f"snd_path {self.workdir}",
            "ringback_disabled yes",
        ]
        (self.workdir / "config").write_text("\n".join(lines) + "\n")
        mode = "auto" if self.answer == "auto" else "manual"
        account = f"<sip:{self.user}@{self.address}:{self.sip_port}>;regint=0;answermode={mode}"
        if self.password:
            account += f";auth_user={self.user};auth_pass={self.password}"
        (self.workdir / "accounts").write_text(account + "\n")
        (self.workdir / "contacts").write_text("")

    def start(self, timeout: float = 10.0) -> Phone:
        self._write_config()
        self.process = ManagedProcess(
            self.name, ["baresip", "-f", str(self.workdir)], env={"HOME": str(self.workdir), "PATH": "/usr/bin:/bin"}, log_path=self.log_path
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if not self.process.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"baresip did not open its control port:\n{self.process.tail()}") from None
                time.sleep(0.05)
        self._sock.settimeout(None)
        threading.Thread(target=self._read, name=f"{self.name}-events", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.process is not None:
            self.process.stop(timeout=3)

    def __enter__(self) -> Phone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ control

    def _read(self) -> None:
        buffer = b""
        sock = self._sock
        while sock is not None:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while True:  # netstrings: "<length>:<json>,"
                colon = buffer.find(b":")
                if colon < 0 or not buffer[:colon].isdigit():
                    break
                size = int(buffer[:colon])
                if len(buffer) < colon + 1 + size + 1:
                    break
                message = json.loads(buffer[colon + 1 : colon + 1 + size])
                buffer = buffer[colon + 1 + size + 1 :]
                if self.answer == "busy" and message.get("type") == "CALL_INCOMING":
                    # baresip's hangup of a ringing call rejects it with the code given, and
                    # a reason phrase of its own (sent from this thread without waiting for
                    # the answer: this is the thread that reads answers)
                    self._send("hangup", "486", token="busy")
                with self._lock:
                    if message.get("event"):
                        self.events.append((time.time(), message))
                    else:
                        self._responses.append(message)
                    self._lock.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        assert self._sock is not None, "start() first"
        token = f"t{time.monotonic_ns()}"
        self._send(command, params, token=token)
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for response in self._responses:
                    if response.get("token") == token:
                        self._responses.remove(response)
                        return response
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no answer to {command} {params}")
                self._lock.wait(left)

    def _send(self, command: str, params: str, *, token: str) -> None:
        assert self._sock is not None, "start() first"
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(b"%d:%s," % (len(body), body))

    def wait_event(self, kind: str, *, timeout: float, after: float = 0.0) -> tuple[float, dict[str, Any]]:
        """The first event of type ``kind`` (e.g. ``CALL_ESTABLISHED``) since ``after``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for at, event in self.events:
                    if at >= after and event.get("type") == kind:
                        return at, event
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [e.get("type") for _, e in self.events]
                    tail = self.process.tail() if self.process else ""
                    raise TimeoutError(f"{self.name}: no {kind} within {timeout}s (events: {seen})\n{tail}")
                self._lock.wait(left)

    def dial(self, uri: str) -> dict[str, Any]:
        return self.command("dial", uri)

    def send_digits(self, digits: str) -> None:
        for digit in digits:
            self.command("sndcode", digit)
            time.sleep(0.25)

    def hang_up(self) -> dict[str, Any]:
        return self.command("hangup")

    # ------------------------------------------------------------------ audio

    def heard(self) -> np.ndarray:
        """What the phone received so far, as 8 kHz int16 (the decoder's output)."""
        dumps = sorted(self.workdir.glob("dump-*-dec.wav"))
        if not dumps:
            return np.zeros(0, dtype=np.int16)
        raw = dumps[-1].read_bytes()[44:]  # the header is finished only when the call ends
        return np.frombuffer(raw[: len(raw) // 2 * 2], dtype=np.int16)


def _write_wav(path: Path, pcm: np.ndarray, rate: int = PHONE_RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())


def voiced_segments(pcm: np.ndarray, rate: int = PHONE_RATE, *, level_dbfs: float = -40.0, min_silence_s: float = 0.3) -> list[tuple[float, float]]:
    """(start, end) in seconds from the start of ``pcm`` of each stretch louder
    than ``level_dbfs`` (20 ms windows), gaps shorter than ``min_silence_s`` bridged."""
    n = rate // 50
    if len(pcm) < n:
        return []
    windows = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    levels = 10 * np.log10(np.maximum((windows * windows).mean(axis=1), 1e-12) / (32768.0 * 32768.0))
    segments: list[tuple[float, float]] = []
    for i in np.flatnonzero(levels > level_dbfs):
        start, end = i * 0.02, (i + 1) * 0.02
        if segments and start - segments[-1][1] < min_silence_s:
            segments[-1] = (segments[-1][0], end)
        else:
            segments.append((start, end))
    return segments


def phone_speech(wav: Path, path: Path, *, lead_s: float, tail_s: float = 60.0) -> tuple[Path, float, float]:
    """A WAV for a phone to send: ``lead_s`` of silence, ``wav`` at 8 kHz
    (sox resamples it), then ``tail_s`` of silence. Returns the path and where
    the speech's voiced part starts and ends in it (seconds)."""
    narrow_path = path.with_suffix(".8k.wav")
    subprocess.run(["sox", str(wav), "-r", str(PHONE_RATE), "-c", "1", "-b", "16", str(narrow_path)], check=True, capture_output=True)
    with wave.open(str(narrow_path)) as w:
        narrow = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    voiced = voiced_segments(narrow, level_dbfs=-45.0)
    assert voiced, f"no speech in {wav}"
    lead = np.zeros(int(lead_s * PHONE_RATE), dtype=np.int16)
    _write_wav(path, np.concatenate([lead, narrow, np.zeros(int(tail_s * PHONE_RATE), dtype=np.int16)]))
    return path, lead_s + voiced[0][0], lead_s + voiced[-1][1]
