"""Callers that do what testers need, and assertions that read as specifications.

    caller = await room_caller()              # (the pytest plugin's fixture)
    await expect(caller).to_hear("AI", within=5)
    await caller.say("What time do you open on Sunday?")
    await expect(caller).to_hear("open 9 am", within=3)
    await caller.type("I'd like two lattes")
    call = await expect(caller).to_call_tool("place_order", item="latte")

What the caller heard is transcribed offline (agent/sound/recognizer.py), so
``to_hear`` asserts on the words that reached the caller's ears, not on text
the agent published. ``within`` counts from the end of the caller's last
action (joining, speaking, typing). A failure says what was heard and when,
and the plugin keeps the test's recording (both sides, as a WAV) and the
worker's log in the test's folder.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc

from ..errors import TranscriptionError
from ..realtime.journal import ToolCall
from ..sound.recognizer import Recognizer, normalize
from ..sound.resample import resample
from ..sound.wav import write_wav
from .caller import Caller, DataMessage, load_wav, speech_wav
from .lab import Backend, journal, tool_calls
from .recording import SAMPLE_RATE, Recording


@dataclass(frozen=True)
class Heard:
    """One stretch of the agent's speech as the caller heard it."""

    start: float  # wall time
    end: float
    text: str  # transcribed offline
    after_s: float = 0.0  # from the caller's last action to the start of this speech: the turn's latency

    def describe(self, since: float) -> str:
        return f"{self.start - since:+.2f}s to {self.end - since:+.2f}s: {self.text!r}"


@dataclass
class RoomCaller:
    """A caller in a room (a :class:`~agent.testing.caller.Caller`) with a tester's verbs."""

    caller: Caller
    backends: list[Backend]  # the lab's realtime backends, whose journals say what the "model" did
    ear: Recognizer
    workdir: Path
    last_action: float = field(default_factory=time.time)
    said: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (start, pcm at SAMPLE_RATE) of each utterance
    heard_texts: list[Heard] = field(default_factory=list)
    rejoin_with: Callable[[str, str], Caller] | None = None  # (room, identity) -> a new caller
    earlier: list[Caller] = field(default_factory=list)
    _count: int = 0

    # ------------------------------------------------------------ acting

    async def say(self, text: str) -> None:
        """Speak ``text`` (synthesised with espeak-ng) into the microphone, in real time."""
        self._count += 1
        path = await asyncio.to_thread(speech_wav, text, str(self.workdir / f"said-{self._count}.wav"))
        await self.say_wav(path)

    async def say_wav(self, path: str | Path) -> None:
        pcm, rate = load_wav(path)
        started = time.time()
        await self.caller.say(pcm, rate)
        self.said.append((self.caller.spoken[-1][0] if self.caller.spoken else started, resample(pcm, rate, SAMPLE_RATE)))
        self.last_action = time.time()

    async def say_stream(self, chunks: AsyncIterable[np.ndarray], sample_rate: int) -> None:
        """Speak a live stream of int16 mono chunks as they arrive (Caller.say_stream)."""
        kept: list[np.ndarray] = []

        async def keeping() -> AsyncIterator[np.ndarray]:
            async for chunk in chunks:
                kept.append(np.asarray(chunk, np.int16))
                yield chunk

        started = time.time()
        await self.caller.say_stream(keeping(), sample_rate)
        if kept:  # what was said, as one utterance (a late stream's gaps are not in it)
            pcm = resample(np.concatenate(kept), sample_rate, SAMPLE_RATE)
            self.said.append((self.caller.spoken[-1][0] if self.caller.spoken else started, pcm))
        self.last_action = time.time()

    async def type(self, text: str) -> None:
        """Type ``text`` into the room chat."""
        await self.caller.send_chat(text)
        self.last_action = time.time()

    async def barge_in(self, text: str, *, within: float = 10.0) -> None:
        """Wait for the agent to speak, then talk over it."""
        await self.caller.wait_for_speech(after=self.last_action, timeout=within)
        await self.say(text)

    async def leave(self) -> None:
        await self.caller.leave()

    async def rejoin(self) -> None:
        """Leave (if still in) and join the same room again as the same identity,
        as a person who hangs up and calls back; what was heard before is kept in
        ``earlier`` (a list of the previous callers)."""
        old = self.caller
        await old.leave()
        if self.rejoin_with is None:
            raise RuntimeError("this caller was not made by room_caller; it cannot rejoin")
        self.caller = self.rejoin_with(old.room.name, old.identity)
        self.earlier.append(old)
        await self.caller.join()
        self.last_action = time.time()

    async def wait_for_attribute(self, name: str, value: str | None = None, *, within: float = 10.0) -> str:
        """The agent's (any remote participant's) attribute ``name`` (equal to ``value`` if given)."""

        def found() -> str | None:
            for p in self.caller.room.remote_participants.values():
                got = p.attributes.get(name)
                if got is not None and (value is None or got == value):
                    return got
            return None

        got = await self.caller.wait_until(found, within)
        if got is None:
            seen = {p.identity: dict(p.attributes) for p in self.caller.room.remote_participants.values()}
            raise AssertionError(f"no participant had attribute {name!r}" + (f" = {value!r}" if value else "") + f" within {within:g}s; attributes: {seen}")
        return got

    async def wait_for_data(self, topic: str, *, within: float = 10.0) -> DataMessage:
        """The first data message on ``topic`` since the caller's last action (half a second of slack)."""

        def found() -> DataMessage | None:
            return next((m for m in self.caller.data_messages if m.topic == topic and m.time >= self.last_action - 0.5), None)

        message = await self.caller.wait_until(found, within)
        if message is None:
            raise AssertionError(f"no data message on topic {topic!r} within {within:g}s; topics seen: {sorted({m.topic for m in self.caller.data_messages})}")
        return message

    @property
    def agents(self) -> list[rtc.RemoteParticipant]:
        """The agent participants in the caller's room."""
        return [p for p in self.caller.room.remote_participants.values() if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT]

    @property
    def agent(self) -> rtc.RemoteParticipant | None:
        return next(iter(self.agents), None)

    # ------------------------------------------------------------ hearing

    async def hear_next(self, *, within: float, after: float | None = None, quiet: float = 1.0, max_s: float = 30.0) -> Heard:
        """The agent's next stretch of speech: it starts within ``within`` s of ``after``
        (the last action), ends at ``quiet`` s of silence; transcribed offline."""
        since = self.last_action if after is None else after
        start = await self.caller.wait_for_speech(after=since, timeout=within)
        await self.caller.wait_for_quiet(quiet, timeout=max_s)
        end = time.time() - quiet
        frames = [f for f in self.caller.heard().frames if start - 0.1 <= f.time <= end + 0.1]
        pcm = Recording(frames).pcm()
        try:
            text = await self.ear.transcribe(pcm, SAMPLE_RATE)
        except TranscriptionError as e:
            text = f"<could not transcribe: {e}>"
        heard = Heard(start, end, text, start - since)
        self.heard_texts.append(heard)
        return heard

    def tool_calls(self, since: float = 0.0) -> list[ToolCall]:
        """The function calls the backends sent since ``since``, with the agent's outputs."""
        return tool_calls(self.backends, since)

    def journal(self, since: float = 0.0) -> list[dict[str, Any]]:
        return journal(self.backends, since)

    def talked_over(self) -> str | None:
        """If the agent answered while the caller's last sentence was still playing,
        how (else None): the backend ended a reply in the middle of it (the caller's
        sentence taken as several turns), or the agent's voice started over it."""
        if not self.said:
            return None
        start, pcm = self.said[-1]
        end = start + len(pcm) / SAMPLE_RATE
        entries = self.journal(start + 0.3)
        replies = [e for e in entries if e["kind"] == "response_done" and e["t"] <= end - 0.2]
        if replies:
            turns = [e["text"] for e in entries if e["kind"] == "transcript" and e["t"] <= end + 1.0]
            return (
                f"{len(replies)} repl{'y' if len(replies) == 1 else 'ies'} made during the caller's {end - start:.1f}s sentence, "
                f"the first {replies[0]['t'] - start:.2f}s into it; the sentence was taken as {len(turns)} turns: {turns}"
            )
        frames = [f for f in self.caller.heard().frames if start <= f.time <= end]
        segments = [(a, b) for a, b in Recording(frames).speech_segments() if a >= start + 0.3 and b - a >= 0.3]
        if not segments:
            return None
        a, b = segments[0]
        return f"its voice came from {a - start:.2f}s to {b - start:.2f}s into the caller's {end - start:.1f}s sentence"

    def transcripts(self, since: float = 0.0) -> list[str]:
        """What the agent published as text (lk.transcription) since ``since``."""
        me = self.caller.identity
        return [t.text for t in self.caller.transcripts if t.time >= since and t.identity != me]

    def save(self, path: Path) -> Path:
        """Both sides as a stereo WAV: left what the caller said, right what it heard."""
        heard = self.caller.heard()
        tracks: list[tuple[float, np.ndarray, int]] = [(start, pcm, 0) for start, pcm in self.said]
        if len(heard):
            first = heard.frames[0]
            tracks.append((first.time - len(first.pcm) / SAMPLE_RATE, heard.pcm(), 1))
        t0 = min((t for t, _, _ in tracks), default=time.time())
        placed = [(round((t - t0) * SAMPLE_RATE), pcm.astype(np.int32), ch) for t, pcm, ch in tracks]
        stereo = np.zeros((max((o + len(p) for o, p, _ in placed), default=1), 2), np.int32)
        for offset, pcm, channel in placed:
            stereo[offset : offset + len(pcm), channel] += pcm
        write_wav(path, np.clip(stereo, -32768, 32767).astype(np.int16), SAMPLE_RATE)
        return path


class Expectation:
    def __init__(self, caller: RoomCaller) -> None:
        self.caller = caller

    async def to_hear(self, pattern: str, *, within: float = 5.0, quiet: float = 1.0) -> Heard:
        """The agent's next speech starts within ``within`` s of the caller's last
        action and its words (heard, transcribed offline) match ``pattern``: a regex,
        or words, compared lower case without punctuation."""
        c = self.caller
        since = c.last_action
        early = c.talked_over()
        if early is not None:
            raise AssertionError(
                f"expected to hear {pattern!r} after the caller finished, but the agent spoke before the caller finished: "
                f"{early}" + _context(c, since)
            )
        try:
            heard = await c.hear_next(within=within, after=since, quiet=quiet)
        except TimeoutError:
            raise AssertionError(
                f"expected to hear {pattern!r} within {within:g}s of the caller's last action, but heard no speech"
                + _context(c, since)
            ) from None
        if not _matches(pattern, heard.text):
            raise AssertionError(f"expected to hear {pattern!r} within {within:g}s; heard {heard.describe(since)}" + _context(c, since))
        c.last_action = heard.end  # the next expectation counts from the end of this speech
        return heard

    async def to_be_silent(self, for_s: float) -> None:
        """No speech reaches the caller for ``for_s`` s from now."""
        c = self.caller
        since = time.time()
        try:
            start = await c.caller.wait_for_speech(after=since, timeout=for_s)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence for {for_s:g}s, but the agent spoke {start - since:.2f}s in" + _context(c, since))

    async def to_call_tool(self, name: str, *, within: float = 10.0, **arguments: Any) -> ToolCall:
        """The backend's journal shows a call of ``name`` after the caller's last action,
        with these arguments (others may be there too) and an output from the agent."""
        c = self.caller
        since = c.last_action - 1.0
        deadline = time.monotonic() + within
        while True:
            calls = c.tool_calls(since)
            for call in calls:
                if call.name == name and isinstance(call.arguments, dict) and all(call.arguments.get(k) == v for k, v in arguments.items()):
                    if call.output is not None:
                        return call
            if time.monotonic() > deadline:
                made = [f"{k.name}({k.arguments}) -> {k.output!r}" for k in calls] or ["none"]
                raise AssertionError(f"expected a call of {name}({arguments}) within {within:g}s; calls made: {'; '.join(made)}" + _context(c, since))
            await asyncio.sleep(0.1)


    def to_have_one_agent(self) -> None:
        """Exactly one agent participant is in the caller's room."""
        agents = [p.identity for p in self.caller.agents]
        if len(agents) != 1:
            raise AssertionError(f"expected one agent in the room, found {len(agents)}: {agents}")

    def to_have_cut_no_reply_short(self) -> None:
        """No reply of the agent was cancelled or cut off by the backend since the caller joined
        (a barge-in the caller made counts: use it where the caller never talks over the agent)."""
        c = self.caller
        joined = c.caller.joined_at or 0.0
        cut = [e for e in c.journal(joined) if e["kind"] == "response_done" and e["status"] != "completed"]
        if cut:
            raise AssertionError(
                f"{len(cut)} repl{'y was' if len(cut) == 1 else 'ies were'} cut short: "
                + "; ".join(f"{e['response_id']} {e['status']} at {e['t'] - joined:+.2f}s" for e in cut)
                + _context(c, joined)
            )


def expect(caller: RoomCaller) -> Expectation:
    return Expectation(caller)


SIMILAR = 0.8  # share of a phrase's letters that must be heard, in order


def _matches(pattern: str, heard: str) -> bool:
    """A regex (anything with its special characters) must match. Plain words must be
    heard in order, letter for letter but for one in five: an offline recognizer
    mishears now and then, often across a word boundary ("at eight" as "a gate")."""
    if not pattern.strip():
        return False
    if re.search(pattern, heard, re.IGNORECASE):
        return True
    if re.search(r"[\\^$.|?*+()\[\]{}]", pattern):
        return False
    want, got = normalize(pattern).replace(" ", ""), normalize(heard).replace(" ", "")
    if not want:
        return False
    matcher = difflib.SequenceMatcher(a=want, b=got, autojunk=False)
    # runs of three letters or more: single letters in common are chance
    found = sum(block.size for block in matcher.get_matching_blocks() if block.size >= 3)
    return found >= SIMILAR * len(want)


def _context(c: RoomCaller, since: float) -> str:
    heard = [h.describe(since) for h in c.heard_texts if h.end >= since - 30] or ["nothing"]
    said_as_text = c.transcripts(since - 1.0)
    return (
        f"\n  heard (transcribed offline, times from the last action): {'; '.join(heard)}"
        f"\n  the agent's own transcripts since: {said_as_text}"
    )
