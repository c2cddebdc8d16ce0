"""`python -m agent dispatch`: arguments are checked before anything is sent,
and each bad input ends in one clear `error:` line (exit code 2).

The rules on room names are livekit-server v1.13.5's (see agent.agent_dispatch).
The round trip against a real server is in test_agent_dispatch_rooms.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from agent.agent_dispatch import MAX_ROOM_NAME_BYTES, DispatchClient, check_metadata, check_room_name
from agent.errors import LiveKitUnavailable, RequestError
from agent.testing.harness import free_port

SECRET = "s" * 40  # livekit-api warns about secrets under 32 bytes


class TestRoomName:
    def test_an_ordinary_name_is_accepted(self) -> None:
        assert check_room_name("support-42") == "support-42"

    def test_the_empty_name_is_refused(self) -> None:
        with pytest.raises(RequestError, match="empty"):
            check_room_name("")

    def test_a_name_of_exactly_the_server_limit_is_accepted(self) -> None:
        check_room_name("r" * MAX_ROOM_NAME_BYTES)

    def test_one_byte_over_the_server_limit_is_refused(self) -> None:
        with pytest.raises(RequestError, match="257 bytes"):
            check_room_name("r" * (MAX_ROOM_NAME_BYTES + 1))

    def test_the_limit_counts_utf8_bytes_not_characters(self) -> None:
        # 86 characters of 3 bytes each: 258 bytes, as the server's Go len() counts them.
        with pytest.raises(RequestError, match="258 bytes"):
            check_room_name("\u20ac" * 86)


class TestMetadata:
    @pytest.mark.parametrize("raw", ['{"topic": "billing"}', "[1, 2]", '"text"', "3"])
    def test_json_is_passed_on_unchanged(self, raw: str) -> None:
        assert check_metadata(raw) == raw

    @pytest.mark.parametrize("raw", ["{bad", "topic=billing", "{'single': 'quotes'}"])
    def test_anything_else_is_refused(self, raw: str) -> None:
        with pytest.raises(RequestError, match="not JSON"):
            check_metadata(raw)


# ----------------------------------------------------------------- nothing is sent


@pytest.fixture
async def counting_server(serve_app: Callable[[web.Application], Awaitable[str]]) -> tuple[str, list[str]]:
    """An HTTP listener that records every request path (and answers 500):
    the proof that a refused command sent nothing."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"code": "internal", "msg": "not a livekit-server"}, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return await serve_app(app), seen


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create("", "agent-x"),
        lambda c: c.create("r" * 300, "agent-x"),
        lambda c: c.create("room", "agent-x", "{bad"),
        lambda c: c.list(""),
        lambda c: c.delete("", "AD_123"),
        lambda c: c.delete("room", ""),
    ],
    ids=["create-empty-room", "create-long-room", "create-bad-metadata", "list-empty-room", "delete-empty-room", "delete-empty-id"],
)
async def test_a_refused_request_sends_nothing(
    counting_server: tuple[str, list[str]], call: Callable[[DispatchClient], Awaitable[object]]
) -> None:
    url, seen = counting_server
    client = DispatchClient(url, "APIkey", SECRET)
    with pytest.raises(RequestError):
        await call(client)
    assert seen == []


async def test_a_valid_request_does_reach_the_server(counting_server: tuple[str, list[str]]) -> None:
    # The other side of the test above: the listener does see what is sent.
    url, seen = counting_server
    with pytest.raises(Exception, match="refused the request"):
        await DispatchClient(url, "APIkey", SECRET).create("room", "agent-x", '{"a": 1}')
    assert seen == ["/twirp/livekit.AgentDispatchService/CreateDispatch"]


async def test_an_unreachable_server_is_one_error_of_our_tree() -> None:
    client = DispatchClient(f"ws://127.0.0.1:{free_port()}", "APIkey", SECRET, timeout=2)
    with pytest.raises(LiveKitUnavailable, match="cannot reach livekit-server"):
        await client.list("room")


# ----------------------------------------------------------------- the command line


async def run_agent(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AGENT_", "OPENAI_"))}
    full_env.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args, env=full_env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_error_line(code: int, err: str, needle: str) -> None:
    assert code == 2, f"exit {code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["dispatch", "--room", ""], "the room name is empty"),
        (["dispatch", "--room", "r" * 257], "more than livekit-server's 256"),
        (["dispatch", "--room", "room", "--metadata", "{bad"], "--metadata is not JSON"),
        (["dispatch", "list", "--room", ""], "the room name is empty"),
        (["dispatch", "delete", "--room", "", "--id", "AD_1"], "the room name is empty"),
    ],
    ids=["empty-room", "long-room", "bad-metadata", "list-empty-room", "delete-empty-room"],
)
async def test_bad_arguments_are_one_error_and_nothing_is_sent(
    args: list[str], needle: str, counting_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, seen = counting_server
    code, _, err = await run_agent(*args, env={"LIVEKIT_URL": url, "LIVEKIT_API_KEY": "APIkey", "LIVEKIT_API_SECRET": SECRET}, cwd=tmp_path)
    assert_one_error_line(code, err, needle)
    assert seen == []


async def test_missing_credentials_name_the_variables(tmp_path: Path) -> None:
    # An empty working directory: no .env, no livekit.yaml to take keys from.
    code, _, err = await run_agent("dispatch", "--room", "room", env={}, cwd=tmp_path)
    assert_one_error_line(code, err, "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set")


async def test_an_unreachable_server_is_one_error(tmp_path: Path) -> None:
    env = {"LIVEKIT_URL": f"ws://127.0.0.1:{free_port()}", "LIVEKIT_API_KEY": "APIkey", "LIVEKIT_API_SECRET": SECRET}
    code, _, err = await run_agent("dispatch", "list", "--room", "room", env=env, cwd=tmp_path)
    assert_one_error_line(code, err, "cannot reach livekit-server")


async def test_a_missing_argument_is_argparse_usage(tmp_path: Path) -> None:
    code, _, err = await run_agent("dispatch", "delete", "--room", "room", env={}, cwd=tmp_path)
    assert code == 2 and "--id" in err and "Traceback" not in err
