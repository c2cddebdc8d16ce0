"""The worker's Prometheus endpoint (``AGENT_METRICS_PORT``) and its multiprocess directory.

:func:`start` runs in the worker's main process before livekit-agents takes
over. It binds the port first, so that a port already taken is one clear
error before anything else has started; then it makes a fresh directory for
this worker's job processes and puts it in ``PROMETHEUS_MULTIPROC_DIR``,
which the job processes inherit (livekit-agents starts its forkserver, or
spawns, only later, inside ``AgentServer.run``). A scrape sums the job
processes' files (``MultiProcessCollector``, less the worker's families)
and adds the main process's own families (:data:`agent.metrics.WORKER`);
see :mod:`agent.metrics` for why the two are kept apart.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .errors import ConfigError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class Endpoint:
    host: str
    port: int
    directory: str
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        if os.environ.get(MULTIPROC_ENV) == self.directory:
            del os.environ[MULTIPROC_ENV]
        shutil.rmtree(self.directory, ignore_errors=True)


class _Worker:
    """The main process's families, as one collector of the scrape registry."""

    def collect(self) -> Iterable[Any]:
        from .metrics import WORKER

        return WORKER.collect()


class _JobProcesses:
    """The job processes' files, summed, less the worker's families.

    A job process imports agent.metrics too, so the worker's unlabelled
    families exist there, at zero, in its files; the worker's own count is
    the one in :data:`agent.metrics.WORKER`.
    """

    def __init__(self, directory: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        from .metrics import WORKER

        self._files = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        self._worker_names = {family.name for family in WORKER.collect()}

    def collect(self) -> Iterable[Any]:
        families = self._files.collect()  # type: ignore[no-untyped-call]
        return [family for family in families if family.name not in self._worker_names]


def start(settings: Settings) -> Endpoint | None:
    """Serve ``/metrics`` on ``AGENT_METRICS_HOST:AGENT_METRICS_PORT`` (None when the port is 0)."""
    if settings.metrics_port == 0:
        return None
    if os.environ.get(MULTIPROC_ENV):
        if "prometheus_client" in sys.modules:
            # prometheus-client chose multiprocess mode for this process at import: its
            # counts would go to files under a directory livekit-agents empties at start.
            raise ConfigError(
                f"{MULTIPROC_ENV} is set in the worker's environment",
                hint="unset it: the worker makes a fresh directory for its job processes itself",
            )
        del os.environ[MULTIPROC_ENV]  # not imported yet: this process counts in memory, as it must
    from prometheus_client import CollectorRegistry, start_http_server

    directory = tempfile.mkdtemp(prefix="agent-metrics-")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_JobProcesses(directory))
    registry.register(_Worker())
    try:
        server, thread = start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    except OSError as e:
        shutil.rmtree(directory, ignore_errors=True)
        raise ConfigError(
            f"AGENT_METRICS_PORT={settings.metrics_port}: cannot listen on {settings.metrics_host}:{settings.metrics_port}: "
            f"{e.strerror or e}",
            hint="another process has that port: choose another, or 0 for no metrics endpoint",
        ) from None
    os.environ[MULTIPROC_ENV] = directory
    endpoint = Endpoint(settings.metrics_host, int(server.server_address[1]), directory, server, thread)
    atexit.register(shutil.rmtree, directory, True)
    return endpoint
