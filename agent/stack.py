"""The local stack: livekit-server, the realtime backend and the worker as child processes.

Used by ``python -m agent up`` (the main job) and by ``agent.testing``
(room tests). Each child runs in its own process group, so a Ctrl-C in
the terminal reaches only us and we stop the children in order: worker,
backend, server. If we die without stopping them (SIGKILL, a crash), the
kernel kills them (``agent.parent_death``), and each of them sees to its
own children. Every wait has a deadline and says what it waited for.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import logs
from .config import Settings
from .errors import ServerConfigError, SetupError
from .parent_death import dying_with_parent, from_lasting_thread

LIVEKIT_VERSION = "v1.13.5"
SIP_VERSION = "v1.8.0"  # livekit-sip: the newest release the Go module proxy serves here (scripts/setup.sh)
MIN_SECRET_LEN = 32


def cache_dir(settings: Settings | None = None) -> Path:
    """Where livekit-server is built and `up` keeps its logs (AGENT_CACHE_DIR)."""
    settings = settings or Settings.from_env()
    return Path(settings.cache_dir) if settings.cache_dir else Path.home() / ".cache" / "agent-worker"


def _built_binary(given: str | None, built: Path, *, what: str, variable: str, how: str) -> Path:
    """``given`` (a setting naming a binary of the user's own), else ``built``, if it is an executable."""
    path = Path(given) if given else built
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SetupError(f"{what} binary not found at {path}", hint=f"run scripts/setup.sh{how}, or set {variable}")
    return path


def livekit_server_binary(settings: Settings | None = None) -> Path:
    """The livekit-server binary: LIVEKIT_SERVER_BIN, else the one scripts/setup.sh builds."""
    settings = settings or Settings.from_env()
    built = cache_dir(settings) / f"livekit-server-{LIVEKIT_VERSION}" / "server"
    return _built_binary(
        settings.livekit_server_bin, built, what="livekit-server", variable="LIVEKIT_SERVER_BIN", how=" (it builds livekit-server with `go install`)"
    )


def livekit_sip_binary(settings: Settings | None = None) -> Path:
    """LiveKit's SIP service: LIVEKIT_SIP_BIN, else the one scripts/setup.sh --sip builds."""
    settings = settings or Settings.from_env()
    built = cache_dir(settings) / f"livekit-sip-{SIP_VERSION}" / "livekit-sip"
    return _built_binary(settings.livekit_sip_bin, built, what="livekit-sip", variable="LIVEKIT_SIP_BIN", how=" --sip (it builds livekit-sip from source)")


@dataclass(frozen=True)
class SipServiceConfig:
    """livekit-sip's config file, as we write it: it joins rooms on ``ws_url``
    and talks to livekit-server through the same Redis."""

    path: Path
    address: str  # where it listens for SIP (UDP and TCP) and RTP
    sip_port: int
    rtp_ports: tuple[int, int]
    health_port: int

    @classmethod
    def write(
        cls, path: Path, *, api_key: str, api_secret: str, ws_url: str, redis: str, address: str,
        sip_port: int = 5060, rtp_ports: tuple[int, int] = (10000, 10100), health_port: int = 8081,
        max_cpu_utilization: float = 1.0,
    ) -> SipServiceConfig:  # fmt: skip
        """``max_cpu_utilization``: livekit-sip refuses calls ("cpu exhausted") while
        the whole host's CPU is busier than this (its default, 0.9, is for a host
        of its own). Here it shares the host with livekit-server, the backend and
        the workers, and a busy 2-core box crossed 0.9 and had every outbound call
        refused (a fresh-clone test run, 2026-12-07): 1.0 never refuses."""
        raw = {
            "api_key": api_key,
            "api_secret": api_secret,
            "ws_url": ws_url,
            "redis": {"address": redis},
            "sip_port": sip_port,
            "rtp_port": f"{rtp_ports[0]}-{rtp_ports[1]}",
            "health_port": health_port,
            "listen_ip": address,
            "nat_1_to_1_ip": address,  # what it announces in SDP and Contact: never a lookup of a public address
            "max_cpu_utilization": max_cpu_utilization,
            "logging": {"level": "info"},
        }
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return cls(path, address, sip_port, rtp_ports, health_port)


@dataclass(frozen=True)
class ServerConfig:
    """What we need to know of a livekit.yaml."""

    path: Path
    port: int
    bind_addresses: tuple[str, ...]
    keys: dict[str, str]
    raw: dict[str, Any] = field(repr=False)

    @property
    def api_key(self) -> str:
        return next(iter(self.keys))

    @property
    def api_secret(self) -> str:
        return self.keys[self.api_key]

    def url(self, host: str | None = None) -> str:
        if host is None:
            bind = self.bind_addresses[0] if self.bind_addresses else "127.0.0.1"
            host = "127.0.0.1" if bind in ("0.0.0.0", "", "::") else bind
        return f"ws://{host}:{self.port}"


def load_server_config(path: str | Path) -> ServerConfig:
    """Read and check livekit.yaml; every problem is one ServerConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ServerConfigError(f"{p}: livekit.yaml not found", hint="set AGENT_LIVEKIT_CONFIG or run from the project folder")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ServerConfigError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    except OSError as e:
        raise ServerConfigError(f"{p}: cannot read: {e.strerror}") from None
    if not isinstance(data, dict):
        raise ServerConfigError(f"{p}: expected a mapping of settings at the top level")
    keys = data.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise ServerConfigError(f"{p}: needs a `keys:` mapping of API key -> secret")
    for key, secret in keys.items():
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LEN:
            raise ServerConfigError(
                f"{p}: the secret of key {key!r} must be a string of at least {MIN_SECRET_LEN} characters"
            )
    port = data.get("port", 7880)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ServerConfigError(f"{p}: `port` must be a TCP port number, got {port!r}")
    bind = data.get("bind_addresses") or ["0.0.0.0"]
    return ServerConfig(p, port, tuple(str(b) for b in bind), {str(k): v for k, v in keys.items()}, data)


def write_server_config(path: Path, raw: dict[str, Any]) -> ServerConfig:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_server_config(path)


def cluster_node_config(base: dict[str, Any], *, index: int, redis_address: str, address: str | None = None) -> dict[str, Any]:
    """livekit.yaml of node ``index`` of a cluster, made from one node's ``base``.

    LiveKit's multi-node mode: every node is given the same Redis (rooms are
    placed on nodes and participants routed to them through it). Node
    ``index`` takes the base ports plus ``10 * index`` (signal, RTC TCP,
    Prometheus at signal + 2) and the ``index``-th UDP range after the base
    one: livekit-server binds its RTC ports on every address, so nodes on one
    machine need ports of their own even with addresses of their own
    (``address``: the node's bind address and ``node_ip``).
    """
    raw = yaml.safe_load(yaml.safe_dump(base))  # a deep copy
    rtc = raw.setdefault("rtc", {})
    raw["port"] = int(raw.get("port", 7880)) + 10 * index
    rtc["tcp_port"] = int(rtc.get("tcp_port", 7881)) + 10 * index
    start, end = int(rtc.get("port_range_start", 50000)), int(rtc.get("port_range_end", 50100))
    width = end - start + 1
    rtc["port_range_start"], rtc["port_range_end"] = start + index * width, end + index * width
    if address is not None:
        raw["bind_addresses"] = [address]
        rtc["node_ip"] = address
    raw["redis"] = {"address": redis_address}
    raw["prometheus"] = {"port": raw["port"] + 2}  # livekit-server's own metrics
    return dict(raw)


def free_local_port() -> int:
    """A TCP port no one listens on now (the kernel's choice), for a service's private port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ManagedProcess:
    """A child process with a log file, its own process group and an orderly stop."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path | None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log_file = open(log_path, "ab") if log_path else None
        # The kernel's parent-death signal follows the thread that started the
        # child: it is started from one that lives as long as this process.
        log_file = self._log_file
        self.proc = from_lasting_thread(
            lambda: subprocess.Popen(
                dying_with_parent(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file if log_file else None,
                stderr=subprocess.STDOUT if log_file else None,
                start_new_session=True,
            )
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 20, *, readable: bool = False, skip_debug: bool = False) -> str:
        """The last ``lines`` lines of the log; ``readable``: JSON lines as text
        (agent.logs.readable); ``skip_debug``: DEBUG records left out first."""
        rows = self.log_text().splitlines()
        if skip_debug:
            rows = [r for r in rows if '"level": "DEBUG"' not in r and " DEBUG " not in r[:40]]
        rows = rows[-lines:]
        return "\n".join(map(logs.readable, rows) if readable else rows)

    def send_signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the group, wait, then SIGKILL whatever is left."""
        if self.alive():
            self.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.proc.wait(5)
        # Job processes of the worker live in the same group: make sure none survive.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before logging {needle!r}:\n{self.tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not log {needle!r} within {timeout}s:\n{self.tail()}")

    def wait_for_port(self, host: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(host, port, 0.2):
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before listening on {host}:{port}:\n{self.tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on {host}:{port} within {timeout}s:\n{self.tail()}")


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class Stack:
    """Starts and stops the processes of one local deployment."""

    def __init__(self, log_dir: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None, idle: bool = False) -> None:
        """``idle``: every process runs at the idle CPU priority (``chrt --idle``),
        whatever the thread that starts it runs at (the test harness's lanes)."""
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.processes: list[ManagedProcess] = []
        self.idle = idle

    def _argv(self, argv: list[str]) -> list[str]:
        return ["chrt", "--idle", "0", *argv] if self.idle else argv

    def spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None, log: bool = True) -> ManagedProcess:
        proc_env = {**self.base_env, **(env or {})}
        proc = ManagedProcess(name, self._argv(argv), env=proc_env, log_path=self.log_dir / f"{name}.log" if log else None, cwd=self.cwd)
        self.processes.append(proc)
        return proc

    def start_livekit(self, config: ServerConfig, *, timeout: float = 15.0, name: str = "livekit") -> ManagedProcess:
        binary = livekit_server_binary()
        host = "127.0.0.1" if config.bind_addresses[0] in ("0.0.0.0", "", "::") else config.bind_addresses[0]
        if port_open(host, config.port, 0.2):
            raise SetupError(f"port {config.port} on {host} is already taken", hint="stop the other livekit-server or change `port` in livekit.yaml")
        # livekit-server reads LIVEKIT_* variables of its own (LIVEKIT_CONFIG is a
        # YAML *body* there, LIVEKIT_KEYS overrides keys): give it none of ours.
        env = {k: v for k, v in self.base_env.items() if not k.startswith("LIVEKIT_")}
        proc = ManagedProcess(name, self._argv([str(binary), "--config", str(config.path)]), env=env, log_path=self.log_dir / f"{name}.log", cwd=self.cwd)
        self.processes.append(proc)
        proc.wait_for_port(host, config.port, timeout)
        return proc

    def start_redis(self, host: str, port: int, *, workdir: Path, timeout: float = 10.0, name: str = "redis") -> ManagedProcess:
        """Debian's redis-server for a LiveKit cluster: nothing saved to disk."""
        if port_open(host, port, 0.2):
            raise SetupError(f"port {port} on {host} is already taken", hint="stop the other redis-server or pick another port")
        argv = [
            "redis-server", "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir),
            # Protected mode (no password set) refuses clients from other addresses,
            # and the nodes of a cluster are on other addresses.
            "--protected-mode", "no",
        ]  # fmt: skip
        try:
            proc = self.spawn(name, argv)
        except FileNotFoundError:
            raise SetupError("redis-server not found", hint="run scripts/setup.sh (it installs Debian's redis-server)") from None
        proc.wait_for_port(host, port, timeout)
        return proc

    def start_sip(self, config: SipServiceConfig, *, timeout: float = 20.0, name: str = "sip") -> ManagedProcess:
        """livekit-sip with ``config``; ready when its health port answers."""
        binary = livekit_sip_binary()
        if port_open(config.address, config.health_port, 0.2):
            raise SetupError(f"port {config.health_port} on {config.address} is already taken", hint="stop the other livekit-sip")
        # It reads LIVEKIT_* variables as settings of its own: give it none of ours.
        env = {k: v for k, v in self.base_env.items() if not k.startswith("LIVEKIT_")}
        proc = ManagedProcess(name, self._argv([str(binary), "--config", str(config.path)]), env=env, log_path=self.log_dir / f"{name}.log", cwd=self.cwd)
        self.processes.append(proc)
        proc.wait_for_port(config.address, config.health_port, timeout)
        return proc

    def start_realtime(self, host: str, port: int, *, env: dict[str, str] | None = None, timeout: float = 20.0, name: str = "realtime") -> ManagedProcess:
        if port_open(host, port, 0.2):
            raise SetupError(f"port {port} on {host} is already taken", hint="set AGENT_LOCAL_REALTIME_PORT to a free port")
        proc = self.spawn(name, python_module("agent", "realtime-server", "--host", host, "--port", str(port)), env=env)
        proc.wait_for_port(host, port, timeout)
        return proc

    def start_worker(self, *, env: dict[str, str], mode: str = "start", wait_registered: bool = True, timeout: float = 60.0, name: str = "worker") -> ManagedProcess:
        proc = self.spawn(name, python_module("agent", mode), env=env)
        if wait_registered:
            proc.wait_for_log("registered worker", timeout)
        return proc

    def start_web(self, host: str, port: int, *, env: dict[str, str], timeout: float = 20.0, name: str = "web") -> str:
        """The callers' web page (``python -m agent web``); returns its URL."""
        if port_open(host, port, 0.2):
            raise SetupError(f"port {port} on {host} is already taken", hint="set AGENT_WEB_PORT to a free port")
        proc = self.spawn(name, python_module("agent", "web"), env={**env, "AGENT_WEB_HOST": host, "AGENT_WEB_PORT": str(port)})
        proc.wait_for_port(host, port, timeout)
        return f"http://{host}:{port}/"

    def stop(self) -> None:
        """Stop in reverse start order; never raises."""
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as e:  # a stop must not hide the other stops
                print(f"warning: stopping {proc.name} failed: {e}", file=sys.stderr)
        self.processes.clear()
