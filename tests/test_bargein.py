"""The worker's barge-in decisions (agent/audio/bargein.py) and the far-end timeline's hold."""

from __future__ import annotations

import asyncio

import numpy as np
from livekit import rtc
from livekit.agents.voice import io

from agent.audio.bargein import BargeIn
from agent.audio.frontend import AudioFrontend, FrontendConfig, _Timeline
from agent.audio.tap import FarEndTap


class FakeOutput:
    def __init__(self) -> None:
        self.paused = False
        self.pause_generation = 0
        self.calls: list[str] = []

    def pause(self) -> None:
        if not self.paused:
            self.pause_generation += 1
        self.paused = True
        self.calls.append("pause")

    def resume(self) -> None:
        self.paused = False
        self.calls.append("resume")


def _make(speaking: bool = True, resume_s: float = 0.05) -> tuple[BargeIn, FakeOutput, list[bool]]:
    out = FakeOutput()
    state = [speaking]
    return BargeIn(out, lambda: state[0], resume_s=resume_s, loop=asyncio.get_running_loop()), out, state


async def test_an_onset_over_the_agent_pauses_it_at_once() -> None:
    b, out, _ = _make()
    b.on_onset()
    assert out.paused and out.calls == ["pause"] and b.pauses == 1


async def test_no_pause_when_the_agent_is_not_speaking() -> None:
    b, out, _ = _make(speaking=False)
    b.on_onset()
    assert not out.paused and out.calls == []


async def test_a_false_interruption_resumes_the_reply() -> None:
    b, out, _ = _make()
    b.on_onset()
    b.on_end()  # a cough: the caller is silent again, no turn from the backend
    await asyncio.sleep(0.1)
    assert out.calls == ["pause", "resume"] and b.resumed == 1


async def test_the_reply_stays_paused_while_the_caller_talks() -> None:
    b, out, _ = _make()
    b.on_onset()
    await asyncio.sleep(0.1)  # no end of speech yet: nothing resumes
    assert out.paused


async def test_a_confirmed_barge_in_does_not_resume() -> None:
    b, out, _ = _make()
    b.on_onset()
    b.on_confirmed()
    b.on_end()
    out.resume()  # livekit-agents interrupts the reply; the tap resumes the sink on the clear
    await asyncio.sleep(0.1)
    assert out.calls == ["pause", "resume"] and b.confirmed == 1 and b.resumed == 0 and len(b.lead_s) == 1


async def test_a_new_onset_before_the_resume_keeps_the_pause() -> None:
    b, out, _ = _make(resume_s=0.08)
    b.on_onset()
    b.on_end()
    await asyncio.sleep(0.04)
    b.on_onset()  # talking again: the resume timer is cancelled
    await asyncio.sleep(0.1)
    assert out.paused and out.calls == ["pause"]


async def test_a_confirmed_pause_is_never_resumed_here() -> None:
    b, out, _ = _make()
    b.on_onset()
    b.on_confirmed()  # the backend heard it: livekit-agents owns the pause (interrupt or resume)
    b.on_end()
    await asyncio.sleep(0.1)
    assert out.paused and out.calls == ["pause"] and b.resumed == 0


async def test_a_pause_it_did_not_make_is_left_alone() -> None:
    b, out, _ = _make()
    out.pause()  # livekit-agents paused on the backend's speech_started
    b.on_onset()
    b.on_end()
    b.on_confirmed()
    await asyncio.sleep(0.1)
    assert out.paused and out.calls == ["pause"] and b.pauses == 0 and b.confirmed == 0


async def test_a_resume_from_outside_ends_the_pause_of_ours() -> None:
    b, out, _ = _make()
    b.on_onset()
    out.resume()  # the reply was interrupted and the sink resumed on the clear
    b.on_end()
    await asyncio.sleep(0.1)
    assert out.calls == ["pause", "resume"] and b.resumed == 0
    out.pause()  # a later pause of livekit-agents' own ...
    b.on_end()
    await asyncio.sleep(0.1)
    assert out.paused  # ... is not resumed by the stale one of ours


def test_hold_moves_what_was_due_after_the_pause() -> None:
    tl = _Timeline(1000)
    tl.push(np.ones(1000, np.int16), now=0.0)  # plays 0.0-1.0 s
    tl.hold(0.5, 0.8)  # paused for 0.3 s at 0.5 s
    assert tl.read(0.5, 300).sum() == 0  # nothing played during the pause
    assert tl.read(0.8, 500).sum() == 500  # the rest plays after it
    assert abs(tl.end - 1.3) < 1e-9


class FakeSink(io.AudioOutput):
    def __init__(self) -> None:
        super().__init__(label="sink", capabilities=io.AudioOutputCapabilities(pause=True), sample_rate=24000)
        self.calls: list[str] = []

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)

    def flush(self) -> None:
        super().flush()

    def clear_buffer(self) -> None:
        self.calls.append("clear")

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")


def test_the_tap_can_pause_so_livekit_agents_pauses_on_the_backends_onset() -> None:
    # Declaring pause=False turned off livekit-agents' pause on speech_started (README, "Latency").
    now = [10.0]
    fe = AudioFrontend(FrontendConfig(), rate=24000, clock=lambda: now[0])
    sink = FakeSink()
    tap = FarEndTap(fe, sink)
    assert tap.can_pause
    tap.pause()
    tap.pause()  # already paused: no second pause
    assert sink.calls == ["pause"] and tap.paused and tap.pause_generation == 1
    tap.clear_buffer()  # the paused reply is interrupted: the sink plays again for the next one
    assert sink.calls == ["pause", "clear", "resume"] and not tap.paused
    tap.resume()  # not paused: nothing to do
    assert sink.calls == ["pause", "clear", "resume"]
