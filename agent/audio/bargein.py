"""Barge-in in the worker: the agent stops at the caller's first words, not at the backend's.

With a realtime model, livekit-agents stops the agent only when the backend's
turn detection says the caller started (``input_audio_buffer.speech_started``);
its own VAD-driven interruption is off while the model detects turns. That
costs a network round trip and the backend's onset rule (OpenAI's server VAD:
a few hundred ms). Here Silero VAD (``livekit-plugins-silero``, its model in
the wheel) listens to the caller's audio *after* the front-end, so the agent's
echo is already cancelled, and at an onset during an agent reply the playout
is paused at once. Then:

- the backend's turn event confirms it: the pause is livekit-agents' from
  then on. Since the output can pause (:class:`agent.audio.tap.FarEndTap`),
  livekit-agents answers the backend's ``speech_started`` by pausing too, and
  then interrupts the reply (a final transcript or the turn's commit) or
  resumes it (its false-interruption timeout); the worker never resumes a
  pause the backend confirmed, so the agent is never heard over the caller;
- none comes within ``resume_s`` of the caller falling silent (a cough, a
  knock, "mhm"): the reply resumes where it stopped, as livekit-agents'
  false-interruption handling does for pipelines.

A pause the worker did not make (livekit-agents' own) is never resumed here.

:class:`BargeIn` is the decision logic (clock and timers only, unit-tested);
:class:`Listener` feeds it a VAD stream's events; ``agent/session.py`` wires
both to the session and the output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from livekit import rtc

log = logging.getLogger("agent.bargein")


class Pausable(Protocol):
    paused: bool
    pause_generation: int  # counts the pauses that took effect (a paused output's pause() is none)

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class BargeIn:
    """Pause the agent at the caller's onset; resume unless the backend confirms the turn.

    ``interruptible()`` says whether an agent reply is playing that the caller may
    interrupt."""

    def __init__(
        self,
        output: Pausable,
        interruptible: Callable[[], bool],
        *,
        resume_s: float,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._output = output
        self._interruptible = interruptible
        self._resume_s = resume_s
        self._loop = loop
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._paused_at: float | None = None
        self._ours: int | None = None  # the output's pause_generation of a pause of ours, not yet confirmed
        self.pauses = 0  # onsets that paused the agent
        self.resumed = 0  # ... that were false: the reply went on
        self.confirmed = 0  # ... that the backend confirmed
        self.lead_s: list[float] = []  # how long before the backend's confirmation the agent stopped

    @property
    def holding(self) -> bool:
        """A pause of ours, awaiting the backend's confirmation or a resume."""
        return self._output.paused and self._ours == self._output.pause_generation

    def on_onset(self) -> None:
        """The worker's VAD heard the caller start."""
        self._cancel_timer()
        if self._output.paused or not self._interruptible():
            return
        self._output.pause()
        self._paused_at = self._clock()
        self._ours = self._output.pause_generation
        self.pauses += 1
        log.info("caller's onset over the agent: playout paused")

    def on_end(self) -> None:
        """The worker's VAD heard the caller fall silent."""
        if self.holding:
            self._arm(self._resume_s, "false interruption: no turn from the backend, reply resumed")

    def on_confirmed(self) -> None:
        """The backend's turn detection says the caller started: the pause is livekit-agents' now."""
        if not self.holding:
            return
        self._cancel_timer()
        self._ours = None
        self.confirmed += 1
        if self._paused_at is not None:
            self.lead_s.append(self._clock() - self._paused_at)

    def _arm(self, delay: float, why: str) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(delay, self._resume, why)

    def _resume(self, why: str) -> None:
        self._timer = None
        if not self.holding:
            return  # interrupted meanwhile: the output resumed itself on the clear
        self._ours = None
        self._output.resume()
        self.resumed += 1
        log.info("%s", why)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._cancel_timer()


def load_vad(threshold: float, min_speech_ms: int) -> Any:
    """Silero VAD with the barge-in settings (``AGENT_BARGE_IN_*``): onsets only
    matter here, so the silence it waits for before an end is short."""
    from livekit.plugins import silero

    return silero.VAD.load(
        min_speech_duration=min_speech_ms / 1000,
        min_silence_duration=0.3,
        prefix_padding_duration=0.0,
        activation_threshold=threshold,
        sample_rate=16000,
    )


class Listener:
    """Feeds the cleaned caller audio to a VAD stream and its events to :class:`BargeIn`."""

    def __init__(self, vad: Any, barge_in: BargeIn) -> None:
        from livekit.agents import vad as agents_vad

        self._types = agents_vad.VADEventType
        self._stream = vad.stream()
        self._barge_in = barge_in
        self._task = asyncio.create_task(self._run(), name="barge_in_vad")

    def push(self, frame: rtc.AudioFrame) -> None:
        self._stream.push_frame(frame)

    async def _run(self) -> None:
        try:
            async for ev in self._stream:
                if ev.type == self._types.START_OF_SPEECH:
                    self._barge_in.on_onset()
                elif ev.type == self._types.END_OF_SPEECH:
                    self._barge_in.on_end()
        except Exception:
            # Barge-in is an accelerator: without it the backend's turn events still stop the agent.
            log.exception("the barge-in VAD failed; the backend's turn detection alone stops the agent from now on")

    async def aclose(self) -> None:
        self._barge_in.close()
        await self._stream.aclose()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
