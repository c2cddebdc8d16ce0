"""A whole local deployment for room tests: livekit-server, realtime backend, worker.

:class:`Testbed` starts the three processes the way ``python -m agent up``
does, but with livekit-server bound to the veth address of the test network
namespace (see :mod:`agent.testing.netns`), a fresh API key pair, free ports
and logs in a folder of the test run. Callers join with :meth:`Testbed.caller`.
``stop()`` (or leaving the ``with`` block) stops every process group, also
when a test failed; the namespace itself kills anything left when it ends.

Usage in a user's own tests::

    with Testbed(tmp_path) as bed:
        async with bed.caller("room-1") as caller:
            await caller.wait_for_speech(timeout=10)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml
from livekit import api

from ..stack import ManagedProcess, Stack, load_server_config, write_server_config
from ..web import join_token
from .caller import Caller, Speakerphone
from .netns import SERVER_IP, inside_namespace
from .priority import LANE_IDLE

__all__ = [
    "INTRODUCTION",
    "INTRODUCTION_ANSWER",
    "NAME_ANSWER",
    "NAME_QUESTION",
    "Conversing",
    "Deployment",
    "ask_name",
    "running_testbed",
    "shipped_config_on_slot",
    "slot_ports",
    "LIVEKIT_PORT",
    "SLOTS",
    "FIRST_FREE_SLOT",
    "NotInNamespace",
    "Testbed",
    "TurnCounter",
    "free_port",
    "greeted",
    "introduce",
    "room_name",
    "wait_active_jobs",
    "wait_workers_ready",
    "worker_status",
]

LIVEKIT_PORT = 7880

# Slots of livekit-server ports in the test namespace, so that servers run side
# by side (the pytest lanes of scripts/lanes.sh): each module that starts
# its own server owns a slot, and each background lane's session testbed has
# one of its own (tests/conftest.py; the room lane's is slot 0).
SLOTS = {
    "harness": 1, "frontend": 2, "process-faults": 3, "rollover": 4,
    # A cluster of two nodes takes its slot and the next.
    "main-job": 5, "process-leaks": 6, "agent-dispatch": 7, "cluster": 8, "fleet-up": 11, "metrics": 14, "barge-in": 18,
    "background-testbed": 16, "telephony": 20, "sip-up": 21,
    # agent.testing's pytest plugin: its lab in the room lane (room_slot in pyproject.toml), in the
    # background lanes (tests/conftest.py), and the pytest sessions and scenario runs tests start
    "plugin": 22, "plugin-background": 23, "plugin-inner": 24,
    # the second background lane's session testbed and plugin lab
    "background-2-testbed": 25, "plugin-background-2": 26,
}  # fmt: skip
FIRST_FREE_SLOT = 27


def slot_ports(slot: int) -> tuple[int, int, tuple[int, int]]:
    """(signal port, RTC TCP port, RTC UDP range) of ``slot``: 7880 + 10 * slot,
    the next port, and 100 UDP ports from 50000 + 200 * slot."""
    if not 0 <= slot <= 70:  # the UDP range must stay below 65536
        raise ValueError(f"slot {slot} out of range 0-70")
    port = LIVEKIT_PORT + 10 * slot
    return port, port + 1, (50000 + 200 * slot, 50000 + 200 * slot + 99)


def shipped_config_on_slot(path: Path, slot: int) -> Path:
    """The project's livekit.yaml with the ports of ``slot``, bound inside the
    test namespace and with a STUN address there: for tests of ``up``, which
    runs the shipped config. Written to ``path``."""
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "livekit.yaml").read_text())
    port, tcp, (udp_start, udp_end) = slot_ports(slot)
    raw.update(port=port, bind_addresses=[SERVER_IP])
    raw["rtc"].update(tcp_port=tcp, port_range_start=udp_start, port_range_end=udp_end, stun_servers=[f"{SERVER_IP}:3478"])
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class NotInNamespace(RuntimeError):
    """Room tests were started outside a network namespace of their own."""

    def __init__(self) -> None:
        super().__init__(
            "room tests need a private network namespace (libwebrtc ignores loopback); run them with\n"
            "  python -m agent.testing.netns -- python -m pytest ...   (or scripts/test.sh)"
        )


# Where free_port() draws from: below the kernel's ephemeral range (32768 up
# on Linux), from which outgoing connections take local ports at any moment;
# each pytest lane of scripts/lanes.sh has a range of its own.
_PORT_RANGES = {"background": (26000, 29000), "background-2": (29000, 32000)}
_DEFAULT_PORT_RANGE = (20000, 26000)
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, and not handed out before by this process.

    Not the kernel's pick (bind to port 0): that comes from the ephemeral
    range, and in a fresh-clone run (2026-12-02) an outgoing connection took
    such a port in the moment between the pick and the bind of the worker it
    was for ("address already in use")."""
    low, high = _PORT_RANGES.get(os.environ.get("AGENT_TEST_LANE", ""), _DEFAULT_PORT_RANGE)
    start = random.randrange(low, high)
    for i in range(high - low):
        port = low + (start - low + i) % (high - low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {low}-{high - 1} on {host}")


class Deployment:
    """What every local deployment for tests has: one API key pair, a process
    stack with logs in ``workdir``, the realtime backend, and workers and
    callers pointed at a livekit-server URL. :class:`Testbed` (one server) and
    :class:`~agent.testing.cluster.Cluster` (several nodes) build on it."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        workdir: Path,
        *,
        realtime: bool = True,
        worker_env: dict[str, str] | None = None,
        realtime_env: dict[str, str] | None = None,
    ) -> None:
        if not inside_namespace():
            raise NotInNamespace()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.api_key = "APItest" + secrets.token_hex(4)
        self.api_secret = secrets.token_urlsafe(32)
        self.realtime_port = free_port()
        self.db_path = self.workdir / "agent.db"  # the workers' demo store and tool ledger
        self._want_realtime = realtime
        self._worker_env = worker_env or {}
        self._realtime_env = realtime_env or {}
        base_env = dict(os.environ)
        # Tests always use the local backend, whatever the developer's shell holds.
        base_env.pop("OPENAI_API_KEY", None)
        # In an idle-priority lane the system under test stays there, while callers
        # run at normal priority (see priority.py).
        self.stack = Stack(self.workdir / "logs", env=base_env, idle=LANE_IDLE)
        self.realtime: ManagedProcess | None = None

    def _server_config(self, slot: int, address: str) -> dict[str, Any]:
        """livekit.yaml of a test server on ``slot``'s ports, bound to ``address`` in the namespace."""
        port, tcp_port, (udp_start, udp_end) = slot_ports(slot)
        return {
            "port": port,
            "bind_addresses": [address],
            "rtc": {
                "tcp_port": tcp_port,
                "port_range_start": udp_start,
                "port_range_end": udp_end,
                "use_external_ip": False,
                "node_ip": address,
                # Without this the server hands clients public STUN servers.
                "stun_servers": [f"{address}:3478"],
                # Gather on this address only. The namespace holds several (both
                # veth ends, other nodes' addresses); each becomes a host candidate
                # rewritten to node_ip, and the duplicate ICE/TCP candidates left
                # pion's TCP mux handing a caller's connection to the one dropped:
                # no call over TCP ever connected, and a resumed call that
                # livekit-server moved to TCP (it does so after a short ICE
                # failure) was closed 5 s later.
                "ips": {"includes": [f"{address}/32"]},
            },
            "keys": {self.api_key: self.api_secret},
            "room": {"auto_create": True, "empty_timeout": 5, "departure_timeout": 2},
            "logging": {"level": "info"},
        }

    def _start_realtime(self) -> None:
        if self._want_realtime:
            self.realtime = self.stack.start_realtime("127.0.0.1", self.realtime_port, env=self._realtime_env)

    def _worker_environment(self, url: str, http_port: int, extra: dict[str, str]) -> dict[str, str]:
        return {
            "LIVEKIT_URL": url,
            "LIVEKIT_API_KEY": self.api_key,
            "LIVEKIT_API_SECRET": self.api_secret,
            "AGENT_REALTIME_BASE_URL": f"http://127.0.0.1:{self.realtime_port}/v1",
            "AGENT_HTTP_PORT": str(http_port),
            "AGENT_NUM_IDLE_PROCESSES": "2",
            # The CPU figure is about production hosts; on a 2-core test box that
            # also runs the server, the backend and the callers it crosses both the
            # worker's threshold and livekit-server's target load (0.7), and rooms
            # would get no agent at random. Test workers report their jobs only.
            "AGENT_LOAD_FROM_CPU": "false",
            "AGENT_PREFLIGHT_TIMEOUT": "10",
            "AGENT_DB_PATH": str(self.db_path),
            "AGENT_METRICS_HOST": "127.0.0.1",
            **self._worker_env,
            **extra,
        }

    def stop(self) -> None:
        self.stack.stop()

    def token(self, room: str, identity: str, *, agent_name: str | None = None) -> str:
        return join_token(self.api_key, self.api_secret, room, identity, name=identity, agent_name=agent_name)

    def _caller(self, url: str, room: str, identity: str, agent_name: str | None, **options: Any) -> Caller:
        return Caller(url, self.token(room, identity, agent_name=agent_name), identity=identity, **options)

    def _server_api(self, url: str) -> api.LiveKitAPI:
        return api.LiveKitAPI(url.replace("ws://", "http://", 1), self.api_key, self.api_secret)

    def logs(self, lines: int = 40) -> str:
        """The last lines of every process log, for failure messages."""
        return _tails(self.stack.processes, lines)

    def failure_logs(self, lines: int = 60) -> str:
        """What a failed test's report carries: first a digest of livekit-server's
        view of the participants (who joined, over which candidate pair, what they
        published, when the media path moved, why they left), then the tails of
        the process logs, the worker's first (it says what the agent did). CI
        output may be cut after a page, so what tells where audio went comes first.
        JSON lines as text, DEBUG records left out."""
        servers = [p for p in self.stack.processes if p.name.startswith("livekit") and not p.name.startswith("livekit-sip")]
        digest = "\n".join(f"--- {p.name}: participants ---\n{server_digest(p.log_text(), 15)}" for p in servers)
        procs = sorted(self.stack.processes, key=lambda p: not p.name.startswith("worker"))
        return (digest + "\n" if digest else "") + _tails(procs, lines, readable=True, skip_debug=True)


# livekit-server's log lines that say where a participant's media goes, and the
# fields of each worth a line in a failure report.
_DIGEST_MESSAGES = {
    "starting RTC session": ("room",),
    "participant active": ("connectionType", "publisherCandidates", "subscriberCandidates", "connectTime"),
    "mediaTrack published": ("kind", "trackID"),
    "ice reconnected or switched pair": ("transport",),
    "participant closing": ("reason", "isExpectedToResume"),
    "high cpu load": ("load",),
}


def server_digest(log: str, lines: int = 25) -> str:
    """The last ``lines`` of livekit-server's console ``log`` that say where
    participants' media went (see ``_DIGEST_MESSAGES``) and every warning or
    error but the data channels' close noise, a line each: time, participant,
    message and its telling fields (of ICE candidates, the selected ones)."""
    out: list[str] = []
    for row in log.splitlines():
        cols = row.split("\t")
        if len(cols) < 5:
            continue
        stamp, level, message = cols[0][11:23], cols[1], cols[4]
        if message not in _DIGEST_MESSAGES and (level not in ("WARN", "ERROR") or message == "error reading data channel"):
            continue
        try:
            fields = json.loads(cols[5]) if len(cols) > 5 else {}
        except ValueError:
            fields = {}
        shown = []
        for key in _DIGEST_MESSAGES.get(message, ("error",)):
            value = fields.get(key)
            if isinstance(value, list):  # ICE candidates: the selected pair only
                value = [str(c).split(" (resolved")[0] for c in value if "selected" in str(c)]
            if value not in (None, [], ""):
                shown.append(f"{key}={value}")
        who = fields.get("participant", "")
        out.append(f"{stamp} {level} {who} {message}" + (f" ({'; '.join(shown)})" if shown else ""))
    return "\n".join(out[-lines:]) or "(nothing)"


def _tails(procs: Iterable[ManagedProcess], lines: int, *, readable: bool = False, skip_debug: bool = False) -> str:
    """One "--- name (log) ---" section per process, with its log's last lines."""
    return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.tail(lines, readable=readable, skip_debug=skip_debug)}" for p in procs)


class Testbed(Deployment):
    """livekit-server + realtime backend + worker, started for tests.

    ``worker_env`` and ``realtime_env`` add or override environment variables
    of those processes (e.g. ``AGENT_BRAIN_SCRIPT``, ``AGENT_GREETING``).
    ``slot`` picks a separate set of livekit-server ports, so that several
    testbeds can run side by side (:func:`slot_ports`; slot 0 = 7880,
    7881/tcp, 50000-50099/udp).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        worker: bool = True,
        realtime: bool = True,
        worker_env: dict[str, str] | None = None,
        realtime_env: dict[str, str] | None = None,
        slot: int = 0,
    ) -> None:
        super().__init__(workdir, realtime=realtime, worker_env=worker_env, realtime_env=realtime_env)
        self._slot = slot
        self.livekit_port = slot_ports(slot)[0]
        self.url = f"ws://{SERVER_IP}:{self.livekit_port}"
        self.http_port = free_port()
        self.metrics_ports: dict[str, int] = {}  # each started worker's AGENT_METRICS_PORT, by name
        self._want_worker = worker
        self.livekit: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Testbed:
        try:
            config = write_server_config(self.workdir / "livekit.yaml", self._server_config(self._slot, SERVER_IP))
            self.livekit = self.stack.start_livekit(config)
            self._start_realtime()
            if self._want_worker:
                self.worker = self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def restart_livekit(self, *, kill: bool = True) -> ManagedProcess:
        """Kill livekit-server (SIGKILL by default: a crash) and start it again, same config."""
        assert self.livekit is not None, "start() first"
        self.livekit.stop(timeout=0 if kill else 10, sig=signal.SIGKILL if kill else signal.SIGTERM)
        self.stack.processes.remove(self.livekit)
        self.livekit = self.stack.start_livekit(load_server_config(self.workdir / "livekit.yaml"), name="livekit-restarted")
        return self.livekit

    def worker_environment(self, **extra: str) -> dict[str, str]:
        return self._worker_environment(self.url, self.http_port, extra)

    def start_worker(self, *, name: str = "worker", wait_registered: bool = True, **extra: str) -> ManagedProcess:
        """Start a worker; each gets a metrics port of its own (``metrics_ports[name]``) unless ``extra`` sets one."""
        extra.setdefault("AGENT_METRICS_PORT", str(free_port()))
        self.metrics_ports[name] = int(extra["AGENT_METRICS_PORT"])
        return self.stack.start_worker(
            env=self.worker_environment(**extra), name=name, wait_registered=wait_registered
        )

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ callers

    def server_api(self) -> api.LiveKitAPI:
        """A server API client (rooms, dispatch); the caller closes it (``async with``)."""
        return self._server_api(self.url)

    def caller(
        self,
        room: str,
        identity: str = "caller",
        *,
        agent_name: str | None = None,
        speakerphone: Speakerphone | None = None,
        background_noise_dbfs: float | None = None,
        mic_rate: int = 48_000,
        mic_channels: int = 1,
    ) -> Caller:
        return self._caller(
            self.url, room, identity, agent_name, speakerphone=speakerphone,
            background_noise_dbfs=background_noise_dbfs, mic_rate=mic_rate, mic_channels=mic_channels,
        )  # fmt: skip

    async def agents_in(self, room: str) -> list[str]:
        """Identities of the agents livekit-server lists in ``room``; none when the
        room does not exist (yet, or any more: a restarted server has none). Any
        other refusal is raised, so that a check of "no agent" cannot pass on it."""
        async with self.server_api() as lk:
            try:
                people = (await lk.room.list_participants(api.ListParticipantsRequest(room=room))).participants
            except api.TwirpError as e:
                if e.code != "not_found":
                    raise
                return []
        return [p.identity for p in people if p.kind == api.ParticipantInfo.Kind.AGENT]

    async def wait_agent_in(self, room: str, timeout: float) -> float:
        """Wait until an agent is listed in ``room``; seconds it took. A server still
        starting (connection refused or dropped) counts as no agent yet."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(OSError, asyncio.TimeoutError, aiohttp.ClientError):
                if await self.agents_in(room):
                    return time.monotonic() - t0
            await asyncio.sleep(0.2)
        raise TimeoutError(f"no agent in {room} after {timeout}s\n{self.logs(30)}")

    # ------------------------------------------------------------------ worker state

    def worker_status(self) -> dict[str, Any]:
        """The worker's ``GET /worker`` (see :func:`worker_status`)."""
        return worker_status(self.http_port)

    async def wait_active_jobs(self, count: int, timeout: float) -> float:
        """Wait until the worker runs exactly ``count`` jobs; seconds it took."""
        return await wait_active_jobs(self.http_port, count, timeout)

    def metrics(self, worker: str = "worker") -> dict[str, float]:
        """One scrape of a worker's Prometheus endpoint: ``{'name{label="v",...}': value}``
        (labels sorted; a series without labels is its bare name)."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_ports[worker]}/metrics", timeout=5) as r:
            text = r.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples

    def job_pid(self, room: str) -> int:
        """The process id of the worker's job for ``room`` (from its log)."""
        assert self.worker is not None
        for line in self.worker.log_text().splitlines():
            if line.startswith("{") and f"joining room {room}" in line:
                return int(json.loads(line)["pid"])
        raise AssertionError(f"no job process found for room {room}")

def wait_workers_ready(workers: Iterable[ManagedProcess], timeout: float = 90.0) -> None:
    """Wait until each worker registered and has a job process ready.

    Start workers with ``wait_registered=False`` and then wait here: each start
    is seconds of imports, so started together they are ready sooner. A job
    starts only in a ready job process; under CPU load the first one took 29 s
    after the worker registered, longer than a test waits for a greeting.
    """
    for proc in workers:
        proc.wait_for_log("registered worker", timeout=timeout)
        proc.wait_for_log("process initialized", timeout=timeout)


def worker_status(http_port: int) -> dict[str, Any]:
    """A worker's ``GET /worker`` (livekit-agents) on its HTTP port: ``active_jobs``, ``worker_load``...

    Protobuf JSON leaves out zero values, so a missing count means 0.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/worker", timeout=2) as r:
        data: dict[str, Any] = json.load(r)
    data.setdefault("active_jobs", 0)
    data.setdefault("worker_load", 0.0)
    return data


async def wait_active_jobs(http_port: int, count: int, timeout: float) -> float:
    """Wait until the worker on ``http_port`` runs exactly ``count`` jobs; seconds it took."""
    t0 = time.monotonic()
    last: dict[str, Any] = {}
    while time.monotonic() - t0 < timeout:
        last = await asyncio.to_thread(worker_status, http_port)
        if last["active_jobs"] == count:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    raise TimeoutError(f"worker on port {http_port} still reports {last} after {timeout}s (wanted active_jobs={count})")


@contextlib.contextmanager
def running_testbed(workdir: Path, **options: Any) -> Iterator[Testbed]:
    """A started :class:`Testbed` for a pytest fixture (``options`` as Testbed's),
    stopped when the block ends. Outside a network namespace the test fails at
    once, saying how to run it, rather than erroring in every test."""
    import pytest  # only the fixtures' caller needs it

    try:
        bed = Testbed(workdir, **options)
    except NotInNamespace as e:
        pytest.fail(str(e), pytrace=False)
    with bed:
        yield bed


class TurnCounter:
    """Counts the realtime server's logged turn starts from now on."""

    def __init__(self, bed: Testbed, *, new_sessions_only: bool = False) -> None:
        assert bed.realtime is not None
        self._proc = bed.realtime
        self._offset = len(self._proc.log_text())
        self._new_sessions_only = new_sessions_only  # not the tail of a previous call

    def lines(self) -> list[str]:
        lines = self._proc.log_text()[self._offset :].splitlines()
        if self._new_sessions_only:
            opened = {m.group(1) for line in lines if (m := re.search(r"session (\S+) opened", line))}
            lines = [line for line in lines if (m := re.search(r"session (\S+?):? ", line)) is None or m.group(1) in opened]
        return lines

    def turns(self) -> int:
        return sum(1 for line in self.lines() if re.search(r"session \S+: speech started", line))

    def cancelled(self) -> int:
        return sum(1 for line in self.lines() if "response cancelled (turn_detected)" in line)


# ---------------------------------------------------------------------- call steps
# The steps most room tests begin with, in one place so that they read alike.

# What a caller says to be remembered, and the demo brain's answer to it
# (tests/data/brain.yaml): the state a test can later ask about.
INTRODUCTION = "Hi, my name is Alice"
INTRODUCTION_ANSWER = r"nice to meet you, alice"
NAME_QUESTION = "What is my name?"
NAME_ANSWER = r"your name is alice"


def room_name(prefix: str) -> str:
    """A fresh room name, so that tests sharing a testbed never meet in a room."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Conversing(Protocol):
    """What the call steps need of a caller: :class:`Caller` and the
    :class:`~agent.testing.remote.RemoteCaller` in another namespace both have it."""

    async def send_chat(self, text: str) -> None: ...

    async def wait_for_speech(self, *, timeout: float, after: float | None = None) -> float: ...

    async def wait_for_transcript(self, pattern: str, *, timeout: float, after: float | None = None) -> Any: ...

    async def wait_for_quiet(self, quiet: float = 1.0, *, timeout: float) -> float: ...


async def greeted(caller: Conversing, *, timeout: float = 20.0, quiet: float = 1.0, quiet_timeout: float = 20.0, **speech: float) -> float:
    """Wait out the agent's greeting to a joined ``caller``: its speech starts
    within ``timeout`` s (``speech``: ``threshold_dbfs``, ``min_duration`` of
    :meth:`Caller.wait_for_speech`), then ``quiet`` s pass without speech.
    Returns the wall time the greeting started."""
    started = await caller.wait_for_speech(timeout=timeout, **speech)
    await caller.wait_for_quiet(quiet, timeout=quiet_timeout)
    return started


async def introduce(caller: Conversing, *, timeout: float = 20.0) -> Any:
    """The caller types :data:`INTRODUCTION`; waits for the agent's answer to end.
    Returns the answer's transcript."""
    await caller.send_chat(INTRODUCTION)
    said = await caller.wait_for_transcript(INTRODUCTION_ANSWER, timeout=timeout)
    await caller.wait_for_quiet(1.0, timeout=20)
    return said


async def ask_name(caller: Conversing, *, after: float | None = None, timeout: float = 20.0) -> Any:
    """The caller asks what its name is; returns the agent's answer (a transcript
    later than ``after``, by default later than the question)."""
    asked = time.time()
    await caller.send_chat(NAME_QUESTION)
    return await caller.wait_for_transcript(NAME_ANSWER, timeout=timeout, after=asked if after is None else after)
