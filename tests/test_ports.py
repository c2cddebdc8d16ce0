"""agent.testing.harness.free_port: ports outside the kernel's ephemeral range, never handed out twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.testing import harness


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_ports_come_from_below_the_ephemeral_range_and_never_twice() -> None:
    low, _ = _ephemeral_range()
    ports = [harness.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(p < low for p in ports), [p for p in ports if p >= low]


@pytest.mark.parametrize("lane", ["background", "background-2"])
def test_each_background_lane_draws_from_a_range_of_its_own(monkeypatch: pytest.MonkeyPatch, lane: str) -> None:
    monkeypatch.setenv("AGENT_TEST_LANE", lane)
    lo, hi = harness._PORT_RANGES[lane]
    assert all(lo <= harness.free_port() < hi for _ in range(20))
    ranges = sorted([*harness._PORT_RANGES.values(), harness._DEFAULT_PORT_RANGE])
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False)), f"lanes' port ranges overlap: {ranges}"
    monkeypatch.delenv("AGENT_TEST_LANE")
    lo, hi = harness._DEFAULT_PORT_RANGE
    assert all(lo <= harness.free_port() < hi for _ in range(20))


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_TEST_LANE", raising=False)  # a background lane draws from its own range
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        taken.listen()
        monkeypatch.setattr(harness, "_DEFAULT_PORT_RANGE", (port, port + 1))
        with pytest.raises(RuntimeError, match="no free TCP port"):
            harness.free_port()
