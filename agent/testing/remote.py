"""A caller in its own network namespace, whose network a test can cut.

Inside the test namespace (see :mod:`agent.testing.netns`) every process shares
one network, so cutting "the caller's network" would cut the agent's too.
:class:`IsolatedLink` makes a second namespace joined to the first by a veth
pair (``10.78.N.2`` inside, routed point to point; the test side's end has
no address: see :class:`IsolatedLink`); :class:`RemoteCaller` runs a
:class:`~agent.testing.caller.Caller` there, in a child process driven by JSON
lines on stdin/stdout. ``link.down()`` / ``link.up()`` pull the cable.

The child is this module run as ``python -m agent.testing.remote``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .netns import ip

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class IsolatedLink:
    """A network namespace behind one veth pair that can be taken down and up.

    The test namespace's end of the pair has no address, only a route to the
    inside address (and the inside a default route onto the pair): every WebRTC
    agent in the test namespace gathers each local address as an ICE host
    candidate, and one of them (livekit-sip, in another lane of the suite) once
    chose the test side's 10.78.1.1 for its media, which died when this link
    went down ("network is unreachable"). Without an address it cannot be chosen.
    """

    index: int = 1

    @property
    def name(self) -> str:
        return f"callerns{self.index}"

    @property
    def host_if(self) -> str:
        return f"vc{self.index}h"

    @property
    def inner_ip(self) -> str:
        return f"10.78.{self.index}.2"

    @property
    def inner_if(self) -> str:
        return f"vc{self.index}i"

    def create(self) -> IsolatedLink:
        ip("netns", "add", self.name)
        try:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if)
            ip("link", "set", self.inner_if, "netns", self.name)
            for cmd in (
                ("addr", "add", f"{self.inner_ip}/32", "dev", self.inner_if),
                ("link", "set", self.inner_if, "up"),
                ("link", "set", "lo", "up"),
            ):
                ip("netns", "exec", self.name, "ip", *cmd)
            self.up()
        except Exception:
            self.delete()
            raise
        return self

    def down(self) -> None:
        ip("link", "set", self.host_if, "down")

    def up(self) -> None:
        # A link taken down loses its routes: they are set again each time. Both
        # ends answer ARP for their own namespace's addresses (the default), so
        # device routes are all a point-to-point pair needs.
        ip("link", "set", self.host_if, "up")
        ip("route", "replace", self.inner_ip, "dev", self.host_if)
        ip("netns", "exec", self.name, "ip", "route", "replace", "default", "dev", self.inner_if)

    def block_udp(self) -> None:
        """Drop every UDP datagram the namespace sends, as a firewall that lets
        only TCP out does: WebRTC must then use livekit-server's ICE/TCP candidate.
        (nftables: the kernel here has no tc classifiers; iptables is not installed.)"""
        for rule in (
            ("add", "table", "inet", "callerfw"),
            ("add", "chain", "inet", "callerfw", "out", "{ type filter hook output priority 0; policy accept; }"),
            ("add", "rule", "inet", "callerfw", "out", "meta", "l4proto", "udp", "drop"),
        ):
            ip("netns", "exec", self.name, "nft", *rule)

    def reaches(self, host: str, port: int) -> bool:
        """Can a TCP connection from inside the namespace reach ``host:port`` within 1 s?"""
        probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()"
        done = subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", probe], capture_output=True)
        return done.returncode == 0

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __enter__(self) -> IsolatedLink:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()


class RemoteError(RuntimeError):
    """A command failed in the remote caller (the message says why)."""


class RemoteCaller:
    """Drives a Caller running in ``link``'s namespace. Every method mirrors
    the Caller method of the same name; times are wall-clock seconds."""

    def __init__(self, link: IsolatedLink, url: str, token: str) -> None:
        self._link = link
        self._url = url
        self._token = token
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self._link.name, sys.executable, "-m", "agent.testing.remote",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(_PROJECT_ROOT),
        )  # fmt: skip
        await self._call("join", url=self._url, token=self._token)

    async def _call(self, method: str, **kwargs: Any) -> Any:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise RemoteError("the remote caller is not running")
        async with self._lock:
            proc.stdin.write((json.dumps({"method": method, "args": kwargs}) + "\n").encode())
            await proc.stdin.drain()
            line = await proc.stdout.readline()
        if not line:
            raise RemoteError(f"the remote caller exited (code {await proc.wait()}) during {method}")
        answer = json.loads(line)
        if "error" in answer:
            raise RemoteError(f"{method}: {answer['error']}")
        return answer.get("result")

    async def send_chat(self, text: str) -> None:
        await self._call("send_chat", text=text)

    async def wait_for_transcript(self, pattern: str, *, timeout: float, after: float | None = None) -> dict[str, Any]:
        found: dict[str, Any] = await self._call("wait_for_transcript", pattern=pattern, timeout=timeout, after=after)
        return found

    async def wait_for_speech(self, *, timeout: float, after: float | None = None) -> float:
        return float(await self._call("wait_for_speech", timeout=timeout, after=after))

    async def wait_for_quiet(self, quiet: float = 1.0, *, timeout: float) -> float:
        return float(await self._call("wait_for_quiet", quiet=quiet, timeout=timeout))

    async def state(self) -> dict[str, Any]:
        """Connection events so far and the remote participants' identities."""
        state: dict[str, Any] = await self._call("state")
        return state

    async def leave(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.returncode is None:
                await asyncio.wait_for(self._call("leave"), 15)
        except (TimeoutError, RemoteError):
            pass
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            self._proc = None

    async def __aenter__(self) -> RemoteCaller:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()


# ---- the child process ------------------------------------------------------
async def _child() -> None:
    from .caller import Caller

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    caller: Caller | None = None
    events: list[tuple[str, float]] = []

    def reply(payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        cmd = json.loads(line)
        method, args = cmd["method"], cmd.get("args", {})
        try:
            if method == "join":
                caller = Caller(args["url"], args["token"])
                await caller.join()
                for name in ("reconnecting", "reconnected", "disconnected"):
                    caller.room.on(name, lambda *_a, _n=name: events.append((_n, time.time())))
                result: Any = caller.identity
            elif caller is None:
                raise RuntimeError("join first")
            elif method == "send_chat":
                await caller.send_chat(args["text"])
                result = None
            elif method == "wait_for_transcript":
                t = await caller.wait_for_transcript(args["pattern"], timeout=args["timeout"], after=args.get("after"))
                result = {"text": t.text, "time": t.time, "identity": t.identity}
            elif method == "wait_for_speech":
                result = await caller.wait_for_speech(timeout=args["timeout"], after=args.get("after"))
            elif method == "wait_for_quiet":
                result = await caller.wait_for_quiet(args["quiet"], timeout=args["timeout"])
            elif method == "state":
                result = {
                    "events": events,
                    "remote": sorted(caller.room.remote_participants),
                    "connected": caller.room.isconnected(),
                }
            elif method == "leave":
                await caller.leave()
                reply({"result": None})
                return
            else:
                raise RuntimeError(f"unknown method {method!r}")
        except Exception as e:  # reported to the test, which raises it there
            reply({"error": f"{type(e).__name__}: {e}"})
            continue
        reply({"result": result})
    if caller is not None:
        await caller.leave()


if __name__ == "__main__":
    asyncio.run(_child())
