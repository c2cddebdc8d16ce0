"""A headless Chromium caller: the callers' page (or any page) driven from a test.

Chromium is the Debian package, driven by playwright-core through
``web/drive.mjs`` (JSON lines on its stdin and stdout). The fake microphone
plays a WAV file once, from when the page opens it. With ``netns`` the browser
runs in that network namespace (an :class:`~agent.testing.remote.IsolatedLink`),
so a test can pull its cable.

    async with Browser(mic_wav=path) as browser:
        await browser.goto(f"{page_url}/?room=demo")
        await browser.click("#join")
        await browser.wait_for("window.callState.status === 'connected'")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import SetupError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DRIVER = PROJECT_ROOT / "web" / "drive.mjs"
CHROMIUM = "/usr/bin/chromium"


class BrowserError(AssertionError):
    """What the page or the driver refused; the message names the operation."""


def missing_parts(chromium: str = CHROMIUM) -> list[str]:
    """What the browser tests need and this machine lacks (scripts/setup.sh --browser installs it)."""
    return [what for what, ok in [
        (f"{chromium} (scripts/setup.sh --browser installs it)", Path(chromium).exists()),
        ("node", shutil.which("node") is not None),
        ("web/node_modules (scripts/setup.sh runs npm ci)", (DRIVER.parent / "node_modules" / "playwright-core").is_dir()),
        ("web/dist/app.js (scripts/setup.sh bundles the page)", (DRIVER.parent / "dist" / "app.js").is_file()),
    ] if not ok]  # fmt: skip


class Browser:
    def __init__(
        self, *, mic_wav: Path | str | None = None, netns: str | None = None, secure_origins: tuple[str, ...] = (),
        chromium: str = CHROMIUM,
    ) -> None:  # fmt: skip
        """``secure_origins``: plain-HTTP origins other than loopback to treat as
        secure (a page gets the microphone only in a secure context)."""
        self.mic_wav = str(mic_wav) if mic_wav is not None else None
        self.netns = netns
        self.secure_origins = secure_origins
        self.chromium = chromium
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._stderr: list[str] = []
        self._stderr_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        missing = missing_parts(self.chromium)
        if missing:
            raise SetupError("the browser tests need: " + "; ".join(missing), hint="run scripts/setup.sh --browser")
        opts: dict[str, Any] = {"chromium": self.chromium, "secureOrigins": list(self.secure_origins)}
        if self.mic_wav:
            opts["wav"] = self.mic_wav
        cmd = ["node", str(DRIVER), json.dumps(opts)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self._proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )  # fmt: skip
        self._stderr_task = asyncio.create_task(self._read_stderr())
        ready = await self._read(timeout=60)
        if not ready.get("ready"):
            await self.aclose()
            raise BrowserError(f"Chromium did not start: {ready.get('error')}\n{self.stderr}")
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        await self.aclose()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr[-50:])

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        async for line in self._proc.stderr:
            self._stderr.append(line.decode(errors="replace"))

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
        if not line:
            raise BrowserError(f"the browser driver exited (code {await self._proc.wait()}):\n{self.stderr}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def call(self, op: str, *, timeout: float = 30.0, **args: Any) -> Any:
        """Run one driver operation; its value, or BrowserError with the driver's message."""
        assert self._proc is not None and self._proc.stdin is not None, "use the browser inside `async with`"
        msg_id = next(self._ids)
        self._proc.stdin.write((json.dumps({"id": msg_id, "op": op, **args}) + "\n").encode())
        await self._proc.stdin.drain()
        reply = await self._read(timeout)
        if reply.get("id") != msg_id:
            raise BrowserError(f"{op}: the driver answered out of turn: {reply}")
        if not reply.get("ok"):
            raise BrowserError(f"{op} {args}: {reply.get('error')}")
        return reply.get("value")

    # ------------------------------------------------------------ operations

    async def goto(self, url: str) -> None:
        await self.call("goto", url=url)

    async def click(self, selector: str) -> None:
        await self.call("click", selector=selector)

    async def fill(self, selector: str, text: str) -> None:
        await self.call("fill", selector=selector, text=text)

    async def press(self, selector: str, key: str) -> None:
        await self.call("press", selector=selector, key=key)

    async def key(self, key: str) -> None:
        """Press a key (e.g. "Tab") on whatever has the focus."""
        await self.call("key", key=key)

    async def evaluate(self, expr: str, *, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        return await self.call("eval", expr=expr, timeout=timeout)

    async def state(self) -> dict[str, Any]:
        """The callers' page's ``window.callState``."""
        value: dict[str, Any] = await self.evaluate("window.callState")
        return value

    async def wait_for(self, expr: str, *, timeout: float = 30.0) -> None:
        """Until the expression is truthy in the page; BrowserError naming it after ``timeout``."""
        try:
            await self.call("waitFor", expr=expr, timeoutS=timeout, timeout=timeout + 10)
        except BrowserError as e:
            raise BrowserError(f"waited {timeout:g}s for `{expr}`: {e}") from None

    async def viewport(self, width: int, height: int) -> None:
        await self.call("viewport", width=width, height=height)

    async def screenshot(self, path: Path | str, *, full_page: bool = True) -> Path:
        await self.call("screenshot", path=str(path), fullPage=full_page)
        return Path(path)

    async def errors(self) -> list[str]:
        """The page's errors and console errors so far."""
        value: list[str] = await self.call("errors")
        return value

    async def aclose(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.returncode is None and proc.stdin is not None:
            try:
                proc.stdin.write(b'{"op": "close"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            await asyncio.gather(self._stderr_task, return_exceptions=True)
