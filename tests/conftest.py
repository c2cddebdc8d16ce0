"""Shared fixtures: one local deployment (livekit-server, realtime backend, worker)
for the room tests of a test session, started lazily by the first test that asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.testing.harness import NotInNamespace, Testbed

BRAIN_SCRIPT = Path(__file__).parent / "data" / "brain.yaml"


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    try:
        bed = Testbed(tmp_path_factory.mktemp("testbed"), realtime_env={"AGENT_BRAIN_SCRIPT": str(BRAIN_SCRIPT)})
    except NotInNamespace as e:
        pytest.fail(str(e), pytrace=False)
    bed.start()
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")
