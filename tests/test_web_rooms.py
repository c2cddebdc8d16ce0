"""The callers' web page in headless Chromium: a browser caller is greeted,
heard and answered, with the browser's own echo cancellation, noise
suppression and gain control on (web/page, driven by web/drive.mjs)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import web
from agent.sound.wav import write_wav
from agent.testing.caller import load_wav, speech_wav
from agent.testing.harness import Testbed, room_name

pytestmark = [pytest.mark.room]

DRIVER = web.ROOT / "drive.mjs"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser_ready() -> None:
    missing = [what for what, ok in [
        (f"{CHROMIUM} (scripts/setup.sh --browser installs it)", Path(CHROMIUM).exists()),
        ("node", shutil.which("node") is not None),
        ("web/node_modules (scripts/setup.sh runs npm ci)", (web.ROOT / "node_modules" / "playwright-core").is_dir()),
        ("livekit-client's browser bundle", web.CLIENT_BUNDLE.is_file()),
    ] if not ok]  # fmt: skip
    if missing:
        pytest.fail("the web page tests need: " + "; ".join(missing), pytrace=False)


def _mic_file(text: str, path: Path, *, lead_s: float, tail_s: float) -> Path:
    """What the browser's fake microphone plays: silence, the sentence, silence."""
    pcm, rate = load_wav(speech_wav(text, str(path.with_suffix(".speech.wav"))))
    silence = lambda s: np.zeros(int(s * rate), np.int16)  # noqa: E731
    write_wav(path, np.concatenate([silence(lead_s), pcm, silence(tail_s)]), rate)
    return path


async def _drive(page: str, until: str, *, wav: Path | None = None, chat: str | None = None, timeout_s: float = 60) -> dict[str, Any]:
    opts = {"page": page, "until": until, "timeoutS": timeout_s, "chromium": CHROMIUM}
    if wav is not None:
        opts["wav"] = str(wav)
    if chat is not None:
        opts["chat"] = chat
    proc = await asyncio.create_subprocess_exec(
        "node", str(DRIVER), json.dumps(opts), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s + 60)
    try:
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"the driver printed no result (exit {proc.returncode}):\n{out.decode()}\n{err.decode()}") from None
    result["exit"] = proc.returncode
    return result


@pytest.fixture
async def page_url(testbed: Testbed, serve_app: Any) -> str:
    return await serve_app(web.make_app(testbed.url, testbed.api_key, testbed.api_secret))


def _agent_said(result: dict[str, Any]) -> list[str]:
    state = result.get("state") or {}
    return [t["text"] for t in state.get("transcripts", []) if t["identity"] != state.get("identity")]


async def test_a_browser_caller_is_greeted_heard_and_answered(
    browser_ready: None, page_url: str, speech_dir: Path, testbed: Testbed
) -> None:
    wav = _mic_file("What time does the coffee shop open on Sunday morning?", speech_dir / "browser-q.wav", lead_s=5, tail_s=10)
    room = room_name("web")
    result = await _drive(f"{page_url}/?room={room}", r"open 9 am to 3 pm", wav=wav, timeout_s=60)
    state = result.get("state") or {}
    said = _agent_said(result)
    print(f"\n[browser caller] the agent said: {said}; receiver stats: {result.get('stats')}; page errors: {result['errors']}")
    assert result["heard"], f"{result}\n{testbed.logs()}"
    # The browser captured with its own audio processing on.
    mic = state["micSettings"]
    assert mic["echoCancellation"] and mic["noiseSuppression"] and mic["autoGainControl"], mic
    # It was greeted by an AI that says so, and heard the agent's audio, not only its text.
    assert "AI" in said[0], said
    assert state["agentAudio"] and state["agentIdentity"].startswith("agent-"), state
    stats = result["stats"] or {}
    assert stats.get("bytesReceived", 0) > 10_000 and stats.get("totalAudioEnergy", 0) > 0, stats
    assert result["errors"] == []


async def test_a_browser_caller_can_type_to_the_agent(browser_ready: None, page_url: str) -> None:
    room = room_name("web")
    result = await _drive(f"{page_url}/?room={room}", r"open 9 am to 3 pm", chat="When are you open on Sunday?", timeout_s=45)
    state = result.get("state") or {}
    assert result["heard"], state.get("transcripts")
    # The microphone of a caller who types is quiet (not Chromium's default beeps): no spoken turn.
    assert [t for t in state["transcripts"] if t["identity"] == state["identity"]] == [], state["transcripts"]


async def test_the_token_endpoint_refuses_a_bad_room_name(page_url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{page_url}/token", params={"room": "../etc"}) as bad:
            assert bad.status == 400
            assert "room" in await bad.text()
        async with http.get(f"{page_url}/token", params={"room": "lobby"}) as good:
            assert good.status == 200
            body = await good.json()
    assert body["room"] == "lobby" and body["identity"].startswith("web-") and body["token"].count(".") == 2
