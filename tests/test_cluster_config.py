"""A cluster's livekit-server nodes (agent.stack.cluster_node_config, Stack.start_redis):
the ports each node takes, and what an operator sees when Redis is not there."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.errors import SetupError
from agent.stack import Stack, cluster_node_config, livekit_server_binary, write_server_config
from agent.testing.harness import free_port

BASE = {"port": 7880, "rtc": {"tcp_port": 7881, "port_range_start": 50000, "port_range_end": 50099}, "keys": {"k": "s" * 32}}


def test_nodes_on_one_machine_take_ports_of_their_own() -> None:
    nodes = [cluster_node_config(BASE, index=i, redis_address="127.0.0.1:6379") for i in range(3)]
    assert [n["port"] for n in nodes] == [7880, 7890, 7900]
    assert [n["rtc"]["tcp_port"] for n in nodes] == [7881, 7891, 7901]
    assert [(n["rtc"]["port_range_start"], n["rtc"]["port_range_end"]) for n in nodes] == [(50000, 50099), (50100, 50199), (50200, 50299)]
    assert [n["prometheus"]["port"] for n in nodes] == [7882, 7892, 7902]
    assert all(n["redis"] == {"address": "127.0.0.1:6379"} for n in nodes)
    assert BASE["port"] == 7880 and "redis" not in BASE, "the base config must not be changed"


def test_a_node_on_an_address_of_its_own_binds_it_and_offers_it_to_clients() -> None:
    node = cluster_node_config(BASE, index=1, redis_address="10.77.0.10:6379", address="10.77.0.12")
    assert node["bind_addresses"] == ["10.77.0.12"] and node["rtc"]["node_ip"] == "10.77.0.12"
    assert node["port"] == 7890  # livekit-server binds its RTC ports on every address: still ports of its own


def test_a_node_whose_redis_is_not_there_fails_with_the_reason(tmp_path: Path) -> None:
    livekit_server_binary()  # set-up built it; a missing binary is its own clear error
    port = free_port()
    raw = {**BASE, "port": port, "bind_addresses": ["127.0.0.1"], "rtc": {**BASE["rtc"], "tcp_port": free_port()}}
    config = write_server_config(tmp_path / "node.yaml", cluster_node_config(raw, index=0, redis_address=f"127.0.0.1:{free_port()}"))
    stack = Stack(tmp_path / "logs")
    try:
        with pytest.raises(RuntimeError, match="unable to connect to redis"):
            stack.start_livekit(config)
    finally:
        stack.stop()


def test_redis_on_a_port_already_taken_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = Stack(tmp_path / "logs")
        try:
            with pytest.raises(SetupError, match="already taken"):
                stack.start_redis("127.0.0.1", taken.getsockname()[1], workdir=tmp_path)
            assert stack.processes == [], "nothing half-started"
        finally:
            stack.stop()
