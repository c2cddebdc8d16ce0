"""`python -m agent dispatch` against a real livekit-server, and a named worker
(`AGENT_NAME=concierge`) that joins only the rooms it is dispatched to. Its
logs are JSON lines (`AGENT_LOG_FORMAT=json`) with the room, job and caller.

A testbed of its own (slot "agent-dispatch"): its worker has a name, the
session testbed's has none.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit import api

from agent.testing.harness import SLOTS, Testbed, greeted, room_name, running_testbed

pytestmark = [pytest.mark.room, pytest.mark.background]

AGENT_NAME = "concierge"
DISPATCH_ID = re.compile(r"^(AD_\w+)  room=(\S+)  agent=(\S+)  jobs=(\d+)  metadata=(.*)$")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with running_testbed(
        tmp_path_factory.mktemp("agent-dispatch"), slot=SLOTS["agent-dispatch"], worker_env={"AGENT_NAME": AGENT_NAME, "AGENT_LOG_FORMAT": "json"},
        realtime_env={"AGENT_BRAIN_SCRIPT": str(Path(__file__).parent / "data" / "brain.yaml")},
    ) as testbed:  # fmt: skip
        yield testbed


async def run_dispatch(bed: Testbed, *args: str) -> tuple[int, str, str]:
    """Run `python -m agent dispatch ARGS` with the testbed's credentials: exit code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AGENT_", "OPENAI_"))}
    env.update({"LIVEKIT_URL": bed.url, "LIVEKIT_API_KEY": bed.api_key, "LIVEKIT_API_SECRET": bed.api_secret})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "dispatch", *args, env=env, cwd=bed.workdir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def dispatch_cli(bed: Testbed, *args: str) -> list[str]:
    """`python -m agent dispatch ARGS`, which must succeed; its output lines."""
    code, out, err = await run_dispatch(bed, *args)
    assert code == 0, f"dispatch {args} exited {code}:\n{err}"
    return out.splitlines()


async def test_create_list_delete_round_trip(bed: Testbed) -> None:
    # To an agent name no worker has: the dispatch exists, and no job runs for it.
    room = room_name("dispatch")
    # The room first, kept open for the test: a room a dispatch creates closes after the
    # testbed's empty timeout (5 s), which four CLI runs in the background lane can outlast.
    async with bed.server_api() as lk:
        await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=120))
    try:
        created = await dispatch_cli(bed, "--room", room, "--agent-name", "nobody-here", "--metadata", '{"topic": "billing"}')
        assert len(created) == 1 and (m := DISPATCH_ID.match(created[0])), created
        dispatch_id = m.group(1)
        assert m.group(2, 3, 5) == (room, "nobody-here", '{"topic": "billing"}')

        # livekit-server gives every new room a dispatch of its own for unnamed
        # workers: the list shows both.
        listed = dispatches(await dispatch_cli(bed, "list", "--room", room))
        assert listed == {dispatch_id: "nobody-here", **{i: a for i, a in listed.items() if a == "(unnamed)"}}, listed
        assert len(listed) == 2, listed

        deleted = await dispatch_cli(bed, "delete", "--room", room, "--id", dispatch_id)
        assert deleted[0].startswith(f"deleted {dispatch_id}"), deleted
        assert dispatch_id not in dispatches(await dispatch_cli(bed, "list", "--room", room))
    finally:
        async with bed.server_api() as lk:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["list", "--room", "never-made"], "has no room 'never-made'"),
        (["delete", "--room", "never-made", "--id", "AD_nope"], "has no room 'never-made' with dispatch 'AD_nope'"),
    ],
    ids=["list-unknown-room", "delete-unknown-dispatch"],
)
async def test_what_the_server_does_not_have_is_one_error(bed: Testbed, args: list[str], needle: str) -> None:
    code, out, err = await run_dispatch(bed, *args)
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (code, out, err)


def dispatches(lines: list[str]) -> dict[str, str]:
    """``dispatch list`` output: {id: agent}."""
    matches = [DISPATCH_ID.match(line) for line in lines]
    assert all(matches), lines
    return {m.group(1): m.group(3) for m in matches if m}


async def test_a_named_agent_joins_only_where_dispatched(bed: Testbed) -> None:
    plain, dispatched = room_name("plain"), room_name("dispatched")
    async with bed.caller(plain, "caller-plain") as alone, bed.caller(dispatched, "caller-dispatched") as served:
        lines = await dispatch_cli(bed, "--room", dispatched, "--agent-name", AGENT_NAME)
        await greeted(served, timeout=20)
        assert len(await bed.agents_in(dispatched)) == 1
        ours = [line for line in await dispatch_cli(bed, "list", "--room", dispatched) if line.split()[0] == lines[0].split()[0]]
        assert len(ours) == 1 and " jobs=1 " in ours[0], ours
        # The other room has had a caller all along: longer than a dispatch takes
        # to be served (above) and than the re-dispatcher's grace, and no agent came,
        # because nothing was dispatched there.
        await asyncio.sleep(6.0)
        assert await bed.agents_in(plain) == []
        assert not [i for i in alone.heard().identities() if i.startswith("agent-")]


async def test_job_log_lines_carry_room_job_and_participant(bed: Testbed) -> None:
    room = room_name("logged")
    async with bed.caller(room, "caller-logged") as caller:
        await dispatch_cli(bed, "--room", room, "--agent-name", AGENT_NAME)
        await greeted(caller, timeout=20)
    assert bed.worker is not None
    # The job's last line: it ends when the caller leaves.
    await asyncio.to_thread(bed.worker.wait_for_log, f"session closed in room {room}", 20)
    lines = [json.loads(line) for line in bed.worker.log_text().splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("room") == room]
    assert ours, f"no JSON line names room {room}:\n{bed.logs()}"
    assert len({line.get("job_id") for line in ours}) == 1 and ours[0]["job_id"].startswith("AJ_"), ours
    # Known once the session is linked to the caller: from then on, on every line of the job.
    linked = [line for line in ours if "participant" in line]
    assert linked and {line["participant"] for line in linked} == {"caller-logged"}, ours
