"""The callers' web page in headless Chromium (web/page, web/src bundled into
web/dist; driven through web/drive.mjs by agent.testing.browser): the page gets
its token from our standard endpoint through livekit-client's own
``TokenSource.endpoint``, is greeted, heard and answered with the browser's
audio processing on, and shows what the worker publishes: the agent's state,
both transcripts, tool calls, escalation and usage. Mute, a dropped network and
a refused token are shown as such. Screenshots at phone and desktop sizes are
kept in ``.cache/test-artifacts/web/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import web
from agent.sound.wav import write_wav
from agent.testing.browser import PROJECT_ROOT, Browser, BrowserError, missing_parts
from agent.testing.caller import load_wav, speech_wav
from agent.testing.harness import Testbed, room_name
from agent.testing.netns import SERVER_IP
from agent.testing.remote import IsolatedLink
from agent.token_endpoint import TokenPolicy

pytestmark = [pytest.mark.room]

ARTIFACTS = PROJECT_ROOT / ".cache" / "test-artifacts" / "web"
QUESTION = "What time does the coffee shop open on Sunday morning?"
ANSWER = r"open 9 am to 3 pm"
STATE = "window.callState"


@pytest.fixture(scope="module", autouse=True)
def browser_ready() -> None:
    missing = missing_parts()
    if missing:
        pytest.fail("the web page tests need: " + "; ".join(missing), pytrace=False)


def _mic_file(text: str, path: Path, *, lead_s: float, tail_s: float) -> Path:
    """What the browser's fake microphone plays: silence, the sentence, silence."""
    pcm, rate = load_wav(speech_wav(text, str(path.with_suffix(".speech.wav"))))
    silence = lambda s: np.zeros(int(s * rate), np.int16)  # noqa: E731
    write_wav(path, np.concatenate([silence(lead_s), pcm, silence(tail_s)]), rate)
    return path


def _policy(testbed: Testbed, **changes: Any) -> TokenPolicy:
    return replace(TokenPolicy(server_url=testbed.url, api_key=testbed.api_key, api_secret=testbed.api_secret), **changes)


@pytest.fixture
async def page_url(testbed: Testbed, serve_app: Callable[..., Awaitable[str]]) -> str:
    return await serve_app(web.make_app(_policy(testbed)))


def said_by_agent(state: dict[str, Any]) -> list[str]:
    return [t["text"] for t in state["transcripts"] if t["identity"] != state["identity"]]


def agent_said(pattern: str) -> str:
    """A page expression: the agent's final transcript matches ``pattern`` (case-insensitive)."""
    return f"{STATE}.transcripts.some(t => t.identity !== {STATE}.identity && /{pattern}/i.test(t.text))"


async def join(browser: Browser, url: str, *, timeout: float = 30) -> dict[str, Any]:
    await browser.goto(url)
    await browser.click("#join")
    await browser.wait_for(f"['connected', 'failed'].includes({STATE}.status)", timeout=timeout)
    state = await browser.state()
    assert state["status"] == "connected", state
    return state


async def greeted(browser: Browser, *, timeout: float = 30) -> None:
    """The greeting (an AI that says so) is heard, and the agent listens again."""
    await browser.wait_for(agent_said(r"\bAI\b"), timeout=timeout)
    await browser.wait_for(f"{STATE}.agentState === 'listening'", timeout=timeout)


def states_after(state: dict[str, Any], t: float) -> list[str]:
    """The agent's states after wall time ``t``, repeats folded."""
    seen: list[str] = []
    for name, at in state["agentStates"]:
        if at >= t and (not seen or seen[-1] != name):
            seen.append(name)
    return seen


async def test_a_browser_caller_is_greeted_heard_and_answered_and_sees_the_agent_work(
    page_url: str, speech_dir: Path, testbed: Testbed
) -> None:
    wav = _mic_file(QUESTION, speech_dir / "browser-q.wav", lead_s=6, tail_s=10)
    async with Browser(mic_wav=wav) as browser:
        state = await join(browser, f"{page_url}/?room={room_name('web')}")
        # The token came from livekit-client's own endpoint token source: the room
        # of the page's URL, a server-chosen identity, our server's URL.
        assert state["room"].startswith("web-") and state["identity"].startswith("caller-"), state
        assert state["serverUrl"] == testbed.url
        # The browser captures with its own audio processing on.
        mic = state["micSettings"]
        assert mic["echoCancellation"] and mic["noiseSuppression"] and mic["autoGainControl"], mic
        await greeted(browser)
        spoken_from = (await browser.state())["agentStates"][-1][1]
        await browser.wait_for(agent_said(ANSWER), timeout=40)
        await browser.wait_for(f"{STATE}.agentState === 'listening'", timeout=20)
        state = await browser.state()
        stats = await browser.evaluate("window.callStats()")

        # Keyboard: from Hang up, Tab walks the controls in reading order.
        await browser.evaluate("document.getElementById('leave').focus()")
        order = ["leave"]
        for _ in range(4):
            await browser.key("Tab")
            order.append(await browser.evaluate("document.activeElement.id"))
        unnamed = await browser.evaluate(
            "[...document.querySelectorAll('button, select, input, meter')]"
            ".filter(el => !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim())).map(el => el.id)"
        )
        lines_of_caller = await browser.evaluate("document.querySelectorAll('#transcript li.you').length")
        errors = await browser.errors()

    print(f"\n[browser caller] agent said {said_by_agent(state)}; states {states_after(state, 0)}; "
          f"level peaks {state['peaks']}; receiver stats {stats}")  # fmt: skip
    assert "AI" in said_by_agent(state)[0]
    assert state["agentAudio"] and state["agentIdentity"].startswith("agent-"), state
    assert stats["bytesReceived"] > 10_000 and stats["totalAudioEnergy"] > 0, stats
    # The caller's spoken question is shown as the caller's final transcript, before the answer.
    mine = [t for t in state["transcripts"] if t["identity"] == state["identity"]]
    assert len(mine) == 1 and "open" in mine[0]["text"].lower(), state["transcripts"]
    # Its interim version was shown first, then replaced in place by the final one.
    assert [t for t in state["interims"] if t["identity"] == state["identity"] and t["time"] <= mine[0]["time"]], state["interims"]
    assert lines_of_caller == 1, lines_of_caller
    # Around the question the agent listened, thought, spoke, and listened again.
    around = states_after(state, spoken_from)
    assert around[:1] == ["listening"] and around[-1] == "listening", around
    assert "thinking" in around and "speaking" in around and around.index("thinking") < around.index("speaking"), around
    # Both sides' live levels moved.
    assert state["peaks"]["you"] > 0.3 and state["peaks"]["agent"] > 0.3, state["peaks"]
    assert order == ["leave", "mute", "mic", "text", "send"], order
    assert unnamed == [], unnamed
    assert errors == []


@pytest.mark.background  # typed turns, waits on the page with generous bounds, times nothing a caller hears
async def test_a_typed_order_shows_the_tool_call_its_outcome_the_usage_and_the_end_of_the_call(page_url: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with Browser() as browser:
        await join(browser, f"{page_url}/?room={room_name('web')}")
        await greeted(browser)
        await browser.fill("#text", "I'd like two lattes")
        await browser.press("#text", "Enter")
        await browser.wait_for(f"{STATE}.tools.some(t => t.name === 'place_order' && t.status === 'done')", timeout=30)
        await browser.wait_for(agent_said(r"order number \d+ is placed"), timeout=30)
        await browser.wait_for(f"{STATE}.usage && {STATE}.usage.responses >= 2", timeout=20)
        await browser.fill("#text", "Can I speak to a person please?")
        await browser.click("#send")
        await browser.wait_for(f"{STATE}.escalated !== null", timeout=30)
        await browser.wait_for(f"{STATE}.agentState === 'listening'", timeout=20)
        shots = []
        for label, width, height in (("phone", 360, 780), ("desktop", 1280, 900)):
            await browser.viewport(width, height)
            overflow = await browser.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow}px wider than a {width}px screen"
            shots.append(await browser.screenshot(ARTIFACTS / f"call-{label}-{width}px.png"))
        tools_text = await browser.evaluate("document.getElementById('tools').innerText")
        usage_text = await browser.evaluate("document.getElementById('usage').innerText")
        escalation_text = await browser.evaluate("document.getElementById('escalation').innerText")
        errors = await browser.errors()  # before the agent ends the call (livekit-client logs the closed data channels)
        await browser.fill("#text", "Thanks, goodbye")
        await browser.click("#send")
        await browser.wait_for(f"{STATE}.status === 'disconnected'", timeout=30)
        state = await browser.state()
        closing = [e for e in (await browser.errors())[len(errors):] if e.startswith("pageerror")]

    print(f"\n[browser caller] tools: {tools_text!r}; usage: {usage_text!r}; screenshots: {[str(s) for s in shots]}")
    order = next(t for t in state["tools"] if t["name"] == "place_order")
    assert order["arguments"] == {"item": "latte", "quantity": 2} or order["arguments"] == {"item": "latte", "quantity": "two"}, order
    assert "order number" in order["output"].lower(), order
    assert "place_order(item: latte" in tools_text and "done" in tools_text
    assert any(t["name"] == "escalate_to_human" and t["status"] == "done" for t in state["tools"]), state["tools"]
    assert "person" in escalation_text.lower(), escalation_text
    assert state["usage"]["cost_usd"] > 0 and state["usage"]["audio_out_min"] > 0, state["usage"]
    assert "$" in usage_text and "min spoken" in usage_text
    assert any(t["name"] == "end_call" for t in state["tools"]), state["tools"]
    assert state["notices"][-1:] == ["The agent ended the call."], state["notices"]
    # A caller who only types sits in a quiet room: no spoken turn of theirs.
    assert [t for t in state["transcripts"] if t["identity"] == state["identity"]] == [], state["transcripts"]
    assert all(s.stat().st_size > 10_000 for s in shots)
    assert errors == [] and closing == [], (errors, closing)


async def test_mute_stops_the_callers_audio_reaching_the_agent(page_url: str, speech_dir: Path) -> None:
    wav = _mic_file(QUESTION, speech_dir / "browser-muted-q.wav", lead_s=4, tail_s=4)
    async with Browser(mic_wav=wav) as browser:
        await join(browser, f"{page_url}/?room={room_name('web')}")
        await browser.click("#mute")  # before the question starts, 4 s into the microphone
        assert await browser.evaluate("document.getElementById('mute').getAttribute('aria-pressed')") == "true"
        await greeted(browser)
        muted_at = await browser.evaluate("Date.now() / 1000")
        # The question plays into the muted microphone (4 s lead + ~3 s sentence), then 6 s more.
        await browser.wait_for(f"Date.now() / 1000 > {muted_at} + 10", timeout=20)
        state = await browser.state()
        errors = await browser.errors()
    assert state["muted"] is True
    assert [t for t in state["transcripts"] if t["identity"] == state["identity"]] == [], state["transcripts"]
    assert not any("9 am" in t for t in said_by_agent(state)), said_by_agent(state)
    assert states_after(state, muted_at) in ([], ["listening"]), state["agentStates"]
    assert errors == []


@pytest.mark.background  # waits on the network and the page, times nothing a caller hears
async def test_a_dropped_connection_shows_reconnecting_then_connected_and_the_call_goes_on(
    testbed: Testbed, serve_app: Callable[..., Awaitable[str]]
) -> None:
    url = await serve_app(web.make_app(_policy(testbed)), host=SERVER_IP)
    port = int(testbed.url.rsplit(":", 1)[1])
    with IsolatedLink(index=3) as link:
        async with Browser(netns=link.name, secure_origins=(url,)) as browser:
            await join(browser, f"{url}/?room={room_name('web')}")
            await greeted(browser)
            link.down()
            try:
                assert not link.reaches(SERVER_IP, port)
                await browser.wait_for(f"{STATE}.status === 'reconnecting'", timeout=25)
            finally:
                link.up()
            try:
                await browser.wait_for(f"{STATE}.status === 'connected'", timeout=30)
            except BrowserError as e:  # what the page went through says where the recovery stopped
                seen = await browser.state()
                raise BrowserError(f"{e}; the page's statuses {seen.get('statuses')}, its errors {await browser.errors()}") from None
            status_text = await browser.evaluate("document.getElementById('status').innerText")
            await browser.fill("#text", "When are you open on Sunday?")
            await browser.click("#send")
            await browser.wait_for(agent_said(ANSWER), timeout=30)
            state = await browser.state()
            errors = await browser.errors()
    statuses = [s for s, _ in state["statuses"]]
    print(f"\n[browser caller] statuses {statuses}")
    assert statuses[-2:] == ["reconnecting", "connected"], statuses
    assert status_text == "Connected"
    # livekit-client logs the cut signal connection as console errors, and Chromium each
    # request the outage failed (net::ERR_INTERNET_DISCONNECTED, ERR_NETWORK_CHANGED,
    # ERR_ADDRESS_UNREACHABLE: which one depends on the moment); nothing else may fail
    network = ("signal", "ws closed", "websocket", "net::err_")
    assert [e for e in errors if e.startswith("pageerror") or not any(w in e.lower() for w in network)] == [], errors


@pytest.mark.background  # waits on the network and the page, times nothing a caller hears
async def test_a_refused_token_is_shown_clearly(testbed: Testbed, serve_app: Callable[..., Awaitable[str]]) -> None:
    url = await serve_app(web.make_app(_policy(testbed, shared_secret="only-for-our-login")))
    async with Browser() as browser:
        await browser.goto(f"{url}/?room={room_name('web')}")
        await browser.click("#join")
        await browser.wait_for(f"{STATE}.status === 'failed'", timeout=20)
        notice = await browser.evaluate("document.getElementById('notice').innerText")
        visible = await browser.evaluate("!document.getElementById('notice').hidden")
        join_enabled = await browser.evaluate("!document.getElementById('join').disabled")
    assert visible and "would not let you join" in notice and "401" in notice, notice
    assert join_enabled
