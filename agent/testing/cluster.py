"""A LiveKit cluster for room tests: Redis, several livekit-server nodes, workers.

LiveKit's own distributed design, nothing of ours in between: every node is
given the same Redis, a room lives on one node, and a participant who connects
to another node is relayed to it (the signal over Redis, the media straight to
the room's node at its ``node_ip``). A worker registers with one node and is
offered jobs for rooms on any node. Each node and Redis bind an address of
their own in the test namespace (added to the namespace's ``v0`` on start),
so the nodes are told apart as machines would be.

Usage::

    with Cluster(tmp_path, nodes=2, slot=SLOTS["cluster"]) as cluster:
        cluster.start_worker(node=1, name="worker-b")
        async with cluster.caller("room-1", node=0) as caller:   # served via node B's worker
            await caller.wait_for_speech(timeout=20)
"""

from __future__ import annotations

import ipaddress
import signal
import subprocess
from pathlib import Path
from typing import Any

from livekit import api

from ..stack import ManagedProcess, cluster_node_config, write_server_config
from .caller import Caller
from .harness import Deployment, free_port, wait_active_jobs, worker_status
from .netns import SERVER_IP, ip

__all__ = ["Cluster", "Node"]

REDIS_PORT = 6379
_NAMESPACE_DEVICE = "v0"  # the server end of the namespace's veth pair (agent.testing.netns)


def _address(offset: int) -> str:
    """An address in the namespace's /24, ``offset`` past SERVER_IP."""
    return str(ipaddress.ip_address(SERVER_IP) + offset)


class Node:
    """One livekit-server of a cluster: its address, ports and process."""

    def __init__(self, index: int, address: str, config: dict[str, Any]) -> None:
        self.index = index
        self.address = address
        self.config = config
        self.port: int = config["port"]
        self.prometheus_port: int = config["prometheus"]["port"]  # livekit-server's own metrics
        self.url = f"ws://{address}:{self.port}"
        self.process: ManagedProcess | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.prometheus_port}/metrics"


class Cluster(Deployment):
    """Redis + ``nodes`` livekit-server nodes + the realtime backend; workers
    are started per node with :meth:`start_worker`.

    Nodes get the addresses 10.77.0.11, .12, ... and Redis 10.77.0.10; node
    ``i`` uses the ports of ``slot`` (:func:`~agent.testing.harness.slot_ports`)
    shifted as :func:`agent.stack.cluster_node_config` says, so a cluster of
    two takes the ports of two slots.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        nodes: int = 2,
        slot: int,
        realtime: bool = True,
        worker_env: dict[str, str] | None = None,
        realtime_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, realtime=realtime, worker_env=worker_env, realtime_env=realtime_env)
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.redis_address = _address(9)
        self.redis_port = REDIS_PORT + slot  # clusters of different slots share the addresses, never a port
        self.nodes = []
        for i in range(nodes):
            address = _address(10 + i)
            one_node = self._server_config(slot, address)
            config = cluster_node_config(one_node, index=i, redis_address=f"{self.redis_address}:{self.redis_port}", address=address)
            self.nodes.append(Node(i, address, config))
        self.redis: ManagedProcess | None = None
        self.workers: dict[str, ManagedProcess] = {}
        self.worker_http_ports: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Cluster:
        try:
            for address in [self.redis_address, *(n.address for n in self.nodes)]:
                _add_address(address)
            self._start_redis()
            for node in self.nodes:
                self.start_node(node.index)
            self._start_realtime()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        self.redis = self.stack.start_redis(self.redis_address, self.redis_port, workdir=self.workdir)

    def start_node(self, index: int) -> ManagedProcess:
        """Start node ``index`` (again, after :meth:`kill_node`)."""
        node = self.nodes[index]
        if node.process is not None and node.process.alive():
            raise RuntimeError(f"node {index} is running")
        config = write_server_config(self.workdir / f"livekit-node{index}.yaml", node.config)
        restarts = sum(1 for p in self.stack.processes if p.name.startswith(f"livekit-node{index}"))
        node.process = self.stack.start_livekit(config, name=f"livekit-node{index}" + (f"-{restarts}" if restarts else ""))
        return node.process

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``: a machine lost, no goodbye to anyone."""
        node = self.nodes[index]
        assert node.process is not None, "node not started"
        node.process.stop(timeout=0, sig=signal.SIGKILL)

    def start_worker(self, *, node: int, name: str, wait_registered: bool = True, **extra: str) -> ManagedProcess:
        """A worker registered with node ``node`` (its LIVEKIT_URL), named ``name``."""
        if name in self.workers:
            raise ValueError(f"a worker named {name!r} exists")
        http_port = free_port()
        env = self._worker_environment(self.nodes[node].url, http_port, extra)
        proc = self.stack.start_worker(env=env, name=name, wait_registered=wait_registered)
        self.workers[name] = proc
        self.worker_http_ports[name] = http_port
        return proc

    def worker_status(self, name: str) -> dict[str, Any]:
        """Worker ``name``'s ``GET /worker`` (active jobs, load)."""
        return worker_status(self.worker_http_ports[name])

    async def wait_active_jobs(self, name: str, count: int, timeout: float) -> float:
        return await wait_active_jobs(self.worker_http_ports[name], count, timeout)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ callers

    def caller(self, room: str, identity: str = "caller", *, node: int = 0, agent_name: str | None = None, **options: Any) -> Caller:
        """A caller who connects through node ``node``."""
        return self._caller(self.nodes[node].url, room, identity, agent_name, **options)

    def server_api(self, node: int = 0) -> api.LiveKitAPI:
        """A server API client on node ``node`` (any node answers for the whole cluster)."""
        return self._server_api(self.nodes[node].url)


def _add_address(address: str) -> None:
    """Give the namespace's server end one more address (idempotent)."""
    shown = subprocess.run(["ip", "-o", "addr", "show", "dev", _NAMESPACE_DEVICE], capture_output=True, text=True).stdout
    if f" {address}/" not in shown:
        ip("addr", "add", f"{address}/24", "dev", _NAMESPACE_DEVICE)
