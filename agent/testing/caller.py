"""A simulated phone caller: a livekit Python SDK participant for room tests.

A :class:`Caller` joins a room, publishes one microphone track that behaves
like a real mic (a continuous 10 ms frame stream: silence, or whatever
:meth:`Caller.say` is speaking) and records every remote audio track with the
wall-clock arrival time of each frame, so tests can ask *who* was heard *when*.
What it heard is analysed by :mod:`agent.testing.recording`; what its
microphone picks up besides its voice (a speakerphone's echo, a noisy line)
comes from :mod:`agent.testing.acoustics`.

WebRTC between local processes needs the network namespace of
:mod:`agent.testing.netns` (libwebrtc ignores loopback interfaces).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np
from livekit import rtc

from ..sound.espeak import speak_wav
from ..sound.stream_clock import StreamClock
from ..sound.wav import read_mono as load_wav
from .acoustics import MicAcoustics, Speakerphone
from .priority import caller_joined, caller_left
from .recording import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, ReceivedFrame, Recording, sum_squares

__all__ = [
    "CALLER_VOICE",
    "FRAME_MS",
    "SAMPLE_RATE",
    "Caller",
    "Speakerphone",
    "DataMessage",
    "ReceivedFrame",
    "Recording",
    "Transcript",
    "load_wav",
    "signal_only",
    "speech_wav",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
# Audio handed to the AudioSource ahead of the wall clock.  Enough to ride out
# event-loop jitter on a busy machine without the source running dry, small
# enough not to delay say() noticeably.
_MIC_LEAD_S = 0.06
# If the loop stalls for longer than this, drop the backlog instead of bursting it.
_MIC_MAX_BEHIND_S = 0.25

# The espeak-ng voice test callers speak with: of the voices tried, the one the
# local server's offline recognizer (PocketSphinx) understands best.
CALLER_VOICE = "en-us+f2"


def speech_wav(text: str, path: str, *, voice: str = CALLER_VOICE) -> str:
    """Synthesize ``text`` with espeak-ng into ``path`` (22.05 kHz mono WAV); returns ``path``."""
    return speak_wav(text, path, voice=voice)


# --------------------------------------------------------------------------- caller


@dataclass(frozen=True)
class Transcript:
    """One finished text stream on ``lk.transcription`` (what the agent said, as text)."""

    time: float  # when the stream finished
    identity: str
    text: str
    attributes: dict[str, str]


TOPIC_CHAT = "lk.chat"
TOPIC_TRANSCRIPTION = "lk.transcription"


@dataclass(frozen=True)
class DataMessage:
    """A data packet received in the room."""

    time: float
    identity: str
    topic: str
    payload: bytes


@dataclass
class _Utterance:
    pcm: np.ndarray  # int16 mono at SAMPLE_RATE
    done: asyncio.Future[tuple[float, float]]
    pos: int = 0
    start: float | None = None  # wall time its first frame is due to play


class Caller:
    """A simulated caller: publishes a mic track and records what it hears.

    Owns all its tasks (mic pump, one recorder per remote audio track); they
    are cancelled and awaited in :meth:`leave`. Its ``wait_for_*`` methods
    wake when audio or a transcript arrives (or, for quiet, when the quiet
    could be complete), not on a polling clock.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        identity: str = "caller",
        speakerphone: Speakerphone | None = None,
        background_noise_dbfs: float | None = None,
        mic_rate: int = SAMPLE_RATE,
        mic_channels: int = 1,
    ) -> None:
        self.url = url
        self.identity = identity  # a label; the token decides the identity in the room
        self.joined_at: float | None = None
        self.spoken: list[tuple[float, float]] = []  # (start, end) wall times of each say()
        self._token = token
        self._room: rtc.Room | None = None
        self._source: rtc.AudioSource | None = None
        self._frames: list[ReceivedFrame] = []
        self._queue: collections.deque[_Utterance] = collections.deque()
        self._mic_task: asyncio.Task[None] | None = None
        self._recorders: dict[str, asyncio.Task[None]] = {}  # track sid -> task
        self.transcripts: list[Transcript] = []
        # (wall time, what): remote tracks published, subscribed, failed to subscribe
        self.track_events: list[tuple[float, str]] = []
        self.speakerphone = speakerphone
        # What the microphone track carries (a phone bridge at 8 kHz, a stereo
        # interface at 48 kHz...); everything inside stays 48 kHz mono.
        self.mic_rate = mic_rate
        self.mic_channels = mic_channels
        self._mic_resampler = None if mic_rate == SAMPLE_RATE else rtc.AudioResampler(SAMPLE_RATE, mic_rate, num_channels=1)
        # A noisy line: steady noise under everything the microphone sends, from the start.
        self.background_noise_dbfs = background_noise_dbfs
        self._acoustics = MicAcoustics(speakerphone, background_noise_dbfs)
        # Notified whenever a frame, a transcript or a data message arrives, or
        # attributes change: what the waits wait on.
        self._arrivals = asyncio.Condition()
        self.data_messages: list[DataMessage] = []
        self._event_atasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._raised = False  # counted by caller_joined(), until _lower()

    @property
    def speaker_underruns(self) -> int:
        """How often the speakerphone's speaker ran dry mid-stream (its echo path slipped)."""
        return self._acoustics.speaker_underruns

    @property
    def room(self) -> rtc.Room:
        if self._room is None:
            raise RuntimeError("Caller.join() first")
        return self._room

    async def join(self) -> None:
        """Connect, publish the mic track (streaming silence) and record remote audio."""
        if self._room is not None:
            raise RuntimeError("Caller.join() called twice")
        # In an idle-priority lane the caller's side runs at normal priority while
        # it is joined: a starved caller lost audio the agent did send (see priority.py).
        caller_joined()
        self._raised = True
        try:
            await self._connect()
        except BaseException:
            self._lower()
            raise

    async def _connect(self) -> None:
        room = self._room = rtc.Room()
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("track_published", self._on_track_published)
        room.on("track_subscription_failed", self._on_subscription_failed)
        room.register_text_stream_handler(TOPIC_TRANSCRIPTION, self._on_transcription)
        room.on("data_received", self._on_data)
        room.on("participant_attributes_changed", lambda *_: self._wake())
        await room.connect(self.url, self._token, rtc.RoomOptions(auto_subscribe=True))
        self.joined_at = time.time()
        self.identity = room.local_participant.identity
        for participant in room.remote_participants.values():  # subscribed before we listened
            for pub in participant.track_publications.values():
                if pub.track is not None:
                    self._on_track_subscribed(pub.track, pub, participant)
        self._source = rtc.AudioSource(self.mic_rate, self.mic_channels, queue_size_ms=1000)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        self._mic_task = asyncio.create_task(self._mic_loop(), name=f"caller-mic-{self.identity}")
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )

    async def say(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Speak int16 mono ``pcm`` into the mic, in real time; returns when it has played.

        Utterances queue behind each other; between them the mic sends silence.
        """
        self._check_mic()
        start, end = await self._enqueue(_resample(np.asarray(pcm), sample_rate))
        self.spoken.append((start, end))
        await asyncio.sleep(max(0.0, end - time.time()))

    async def say_stream(self, chunks: AsyncIterable[np.ndarray], sample_rate: int) -> None:
        """Speak a live stream: int16 mono chunks as they come (from a socket, a
        generator, another process), each played once it has arrived and what came
        before it has played; where the stream runs late the mic sends silence.
        Returns when the stream has ended and played; ``spoken`` gets one
        (start, end) for the whole stream."""
        self._check_mic()
        resampler = None
        if sample_rate != SAMPLE_RATE:
            resampler = rtc.AudioResampler(sample_rate, SAMPLE_RATE, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH)
        queued: list[asyncio.Future[tuple[float, float]]] = []
        carry = np.zeros(0, np.int16)

        def queue(pcm: np.ndarray, *, last: bool = False) -> None:
            # Whole 10 ms frames only: the mic pads an utterance's last frame with
            # silence, which at every chunk's end put a click of zeros into the
            # words (the backend's recognizer then misheard them: ci5, ci7).
            nonlocal carry
            pcm = np.concatenate([carry, pcm])
            whole = len(pcm) if last else len(pcm) - len(pcm) % FRAME_SAMPLES
            carry = pcm[whole:]
            if whole:
                queued.append(self._enqueue(pcm[:whole]))

        async for chunk in chunks:
            pcm = _mono_int16(chunk)
            queue(pcm if resampler is None else _frames_pcm(resampler.push(bytearray(pcm.tobytes()))))
        queue(np.zeros(0, np.int16) if resampler is None else _frames_pcm(resampler.flush()), last=True)
        if not queued:
            return
        played = await asyncio.gather(*queued)
        start, end = played[0][0], played[-1][1]
        self.spoken.append((start, end))
        await asyncio.sleep(max(0.0, end - time.time()))

    def _check_mic(self) -> None:
        if self._mic_task is None or self._closed:
            raise RuntimeError("Caller is not joined")
        if self._mic_task.done():
            self._mic_task.result()  # re-raise why the mic died
            raise RuntimeError("Caller's mic task has stopped")

    def _enqueue(self, data: np.ndarray) -> asyncio.Future[tuple[float, float]]:
        """Queue 48 kHz mono ``data`` behind what the mic has yet to play; the
        future gives the wall times its first frame and its end play at."""
        done: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Utterance(data, done))
        return done

    async def say_wav(self, path: str | Path) -> None:
        pcm, rate = load_wav(path)
        await self.say(pcm, rate)

    def heard(self, identity: str | None = None) -> Recording:
        """Everything received so far (optionally from one participant only)."""
        return Recording(list(self._frames)).filter(identity)

    async def wait_until(self, found: Callable[[], _T | None], timeout: float) -> _T | None:
        """``found()``'s first value that is not None, asked again each time audio, a
        transcript or a data message arrives or a participant's attributes change;
        None if there is none within ``timeout`` s."""
        async with self._arrivals:
            try:
                async with asyncio.timeout(timeout):
                    while (value := found()) is None:
                        await self._arrivals.wait()
                    return value
            except TimeoutError:
                return found()

    async def _arrived(self) -> None:
        async with self._arrivals:
            self._arrivals.notify_all()

    async def wait_for_audio(self, *, timeout: float, identity: str | None = None) -> float:
        """Wall time of the first audio frame received (silent or not): the agent has
        joined and published, whatever it says; TimeoutError otherwise."""

        def first_frame() -> float | None:
            rec = self.heard(identity)
            return rec.frames[0].time if len(rec) else None

        t = await self.wait_until(first_frame, timeout)
        if t is None:
            raise TimeoutError(f"{self.identity}: no audio track from {identity or 'anyone'} within {timeout}s")
        return t

    async def wait_for_speech(
        self,
        *,
        after: float | None = None,
        timeout: float,
        threshold_dbfs: float = -40.0,
        min_duration: float = 0.2,
        identity: str | None = None,
    ) -> float:
        """Wall time at which received audio first stayed above ``threshold_dbfs`` for
        ``min_duration`` s (starting later than ``after``); TimeoutError otherwise."""

        def received() -> Recording:
            # Asked at every arrival: only the frames after ``after`` are looked at. A
            # bisection finds where they start: arrival times grow, but per track
            # (two tracks' frames may interleave a little out of order, hence the
            # second of margin; the filter is exact).
            start = 0 if after is None else bisect.bisect_right(self._frames, after - 1.0, key=lambda f: f.time)
            return Recording([f for f in self._frames[start:] if (identity is None or f.identity == identity) and (after is None or f.time > after)])

        def speech_start() -> float | None:
            return received().first_speech(after=after, threshold_dbfs=threshold_dbfs, min_duration=min_duration)

        began = time.time()
        t = await self.wait_until(speech_start, timeout)
        if t is None:
            rec = received()
            who = f"from {identity!r}" if identity else "from anyone"
            span = f" (arrived {rec.frames[0].time - began:+.1f} s to {rec.frames[-1].time - began:+.1f} s of the wait)" if len(rec) else ""
            # What the agent's transcripts say it said meanwhile tells a reply
            # never made from one made and lost on the way.
            said = [f"{x.time - began:+.1f} s {x.text[:60]!r}" for x in self.transcripts if x.time >= began - 1.0]
            tracks = [f"{t - began:+.1f} s {what}" for t, what in self.track_events]
            raise TimeoutError(
                f"{self.identity}: no speech {who} above {threshold_dbfs} dBFS for "
                f"{min_duration}s within {timeout}s"
                + (f" after t={after:.3f}" if after is not None else "")
                + f"; received {len(rec)} frames{span} from {rec.identities()}, "
                f"loudest {rec.max_dbfs():.1f} dBFS; transcripts meanwhile: {said or 'none'}; tracks: {tracks or 'none'}"
            )
        return t

    async def send_chat(self, text: str) -> None:
        """Type ``text`` into the room chat (``lk.chat``), as LiveKit's web components do."""
        await self.room.local_participant.send_text(text, topic=TOPIC_CHAT)

    async def wait_for_transcript(
        self, pattern: str, *, timeout: float, after: float | None = None, identity: str | None = None
    ) -> Transcript:
        """The first agent transcript matching the regex ``pattern`` (case-insensitive)."""
        regex = re.compile(pattern, re.IGNORECASE)

        def matching() -> Transcript | None:
            for t in self.transcripts:
                if (after is None or t.time > after) and (identity is None or t.identity == identity) and regex.search(t.text):
                    return t
            return None

        found = await self.wait_until(matching, timeout)
        if found is None:
            seen = [t.text for t in self.transcripts if after is None or t.time > after]
            raise TimeoutError(f"{self.identity}: no transcript matching {pattern!r} within {timeout}s; saw {seen}")
        return found

    async def wait_for_quiet(
        self,
        quiet: float = 1.0,
        *,
        timeout: float,
        threshold_dbfs: float = -40.0,
        identity: str | None = None,
    ) -> float:
        """Wait until nothing above ``threshold_dbfs`` was heard for ``quiet`` seconds;
        returns the wall time the last speech ended (or when the wait began)."""
        began = time.time()
        deadline = time.monotonic() + timeout
        while True:
            segments = self.heard(identity).speech_segments(threshold_dbfs)
            last_end = segments[-1][1] if segments else began
            still = quiet - (time.time() - last_end)  # seconds of quiet still needed
            if still <= 0:
                return last_end
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.identity}: still hearing speech after {timeout}s (last ended {last_end:.3f})")
            # Quiet is the passage of time without speech: nothing that arrives
            # before then can complete it, so sleep until it could be complete
            # (or the deadline), then look again at what was heard meanwhile.
            await asyncio.sleep(min(still, left))

    async def leave(self) -> None:
        """Stop the mic and recorders, disconnect.  Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            tasks = [t for t in (self._mic_task, *self._recorders.values(), *self._event_atasks) if t is not None]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks)  # a CancelledError aimed at *us* still propagates
            for t in tasks:
                if not t.cancelled() and t.exception() is not None:
                    logger.error("caller %s: task %s failed", self.identity, t.get_name(), exc_info=t.exception())
            while self._queue:
                u = self._queue.popleft()
                if not u.done.done():
                    u.done.set_exception(RuntimeError("Caller left before this was said"))
            if self._room is not None:
                await self._room.disconnect()
            if self._source is not None:
                await self._source.aclose()
        finally:
            self._lower()

    def _lower(self) -> None:
        if self._raised:
            self._raised = False
            caller_left()

    async def __aenter__(self) -> Caller:
        await self.join()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()

    # ----------------------------------------------------------------- internals

    def _on_track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if self._closed or track.kind != rtc.TrackKind.KIND_AUDIO or track.sid in self._recorders:
            return
        self.track_events.append((time.time(), f"subscribed {participant.identity}/{track.sid}"))
        task = asyncio.get_running_loop().create_task(
            self._record(track, participant.identity), name=f"caller-rec-{self.identity}<-{participant.identity}"
        )
        self._recorders[track.sid] = task

    def _on_track_published(self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        self.track_events.append((time.time(), f"published {participant.identity}/{publication.sid}"))

    def _on_subscription_failed(self, participant: rtc.RemoteParticipant, track_sid: str, error: str) -> None:
        # The SDK gives up on a track whose publication it did not learn of in
        # time; what the track carried meanwhile is never heard.
        logger.warning("%s: subscription to %s/%s failed: %s", self.identity, participant.identity, track_sid, error)
        self.track_events.append((time.time(), f"subscription to {participant.identity}/{track_sid} failed: {error}"))
        self._wake()

    def _on_data(self, packet: rtc.DataPacket) -> None:
        identity = packet.participant.identity if packet.participant else ""
        self.data_messages.append(DataMessage(time.time(), identity, packet.topic or "", bytes(packet.data)))
        self._wake()

    def _wake(self) -> None:
        """Wake the waits from a room event delivered synchronously (data, attributes)."""
        self._spawn(self._arrived(), "wake")

    def _on_transcription(self, reader: rtc.TextStreamReader, identity: str) -> None:
        self._spawn(self._read_transcript(reader, identity), "text")

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """A short task of this caller's, awaited by leave()."""
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=f"caller-{what}-{self.identity}")
        self._event_atasks.add(task)
        task.add_done_callback(self._event_atasks.discard)

    async def _read_transcript(self, reader: rtc.TextStreamReader, identity: str) -> None:
        text = await reader.read_all()
        await self._transcribed(Transcript(time.time(), identity, text, dict(reader.info.attributes or {})))

    async def _transcribed(self, transcript: Transcript) -> None:
        self.transcripts.append(transcript)
        await self._arrived()

    async def _record(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        # A frame's time is its arrival, told from the track's sample count: this
        # process can stall (a background lane runs at idle priority) and then
        # handles the frames that queued up in a burst, which stamped "now" would
        # all arrive at once (a greeting heard so never lasted 0.2 s).
        clock = StreamClock(SAMPLE_RATE)
        try:
            async for event in stream:
                pcm = np.frombuffer(event.frame.data, dtype=np.int16).copy()
                await self._receive(identity, track.sid or "", pcm, at=clock.stamp(len(pcm), time.time()))
        finally:
            await stream.aclose()

    async def _receive(self, identity: str, track_sid: str, pcm: np.ndarray, *, at: float | None = None) -> None:
        """One frame from a remote track, arrived at ``at`` (default now): recorded,
        played on the speakerphone, waits woken."""
        self._frames.append(ReceivedFrame(time.time() if at is None else at, identity, track_sid, pcm, sum_squares(pcm)))
        self._acoustics.heard(identity, pcm)
        await self._arrived()

    def _next_frame(self, due_wall: float) -> np.ndarray | None:
        """The next 10 ms of speech, or None for silence; settles finished utterances."""
        if not self._queue:
            return None
        u = self._queue[0]
        if u.start is None:
            u.start = due_wall
        chunk = u.pcm[u.pos : u.pos + FRAME_SAMPLES]
        u.pos += FRAME_SAMPLES
        if u.pos >= len(u.pcm):
            self._queue.popleft()
            if not u.done.done():
                u.done.set_result((u.start, due_wall + len(chunk) / SAMPLE_RATE))
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), np.int16)])
        return chunk

    def _mic_format(self, data: np.ndarray) -> rtc.AudioFrame | None:
        """10 ms of 48 kHz mono as the microphone track's format."""
        pcm = data
        if self._mic_resampler is not None:
            out = self._mic_resampler.push(bytearray(data.tobytes()))
            if not out:
                return None
            pcm = _frames_pcm(out)
        if self.mic_channels > 1:
            pcm = np.repeat(pcm, self.mic_channels)  # interleaved: the same signal on every channel
        return rtc.AudioFrame(pcm.tobytes(), self.mic_rate, self.mic_channels, len(pcm) // self.mic_channels)

    async def _mic_loop(self) -> None:
        """Feed the AudioSource one 10 ms frame at a time, paced by the wall clock.

        capture_frame() returns at once until the source's 1 s queue is full, so
        it cannot pace us; we keep ~_MIC_LEAD_S queued ahead of real time.
        """
        assert self._source is not None
        silence = np.zeros(FRAME_SAMPLES, np.int16)
        frame_s = FRAME_SAMPLES / SAMPLE_RATE
        t0 = time.monotonic()
        sent = 0
        try:
            while True:
                now = time.monotonic()
                behind = (now - t0) - sent * frame_s
                if behind > _MIC_MAX_BEHIND_S:  # stalled: drop the gap rather than burst it
                    gap = int(behind / frame_s)
                    self._acoustics.skip(gap)  # the room's sound went on meanwhile
                    sent += gap
                while sent * frame_s < (now - t0) + _MIC_LEAD_S:
                    due_wall = time.time() + (t0 + sent * frame_s - now)
                    chunk = self._next_frame(due_wall)
                    data = self._acoustics.pick_up(silence if chunk is None else chunk)
                    frame = self._mic_format(data)
                    if frame is not None:
                        await self._source.capture_frame(frame)
                    sent += 1
                    now = time.monotonic()
                await asyncio.sleep(max(0.001, t0 + sent * frame_s - _MIC_LEAD_S - time.monotonic()))
        except Exception as exc:
            for u in self._queue:
                if not u.done.done():
                    u.done.set_exception(exc)
            raise


@asynccontextmanager
async def signal_only(url: str, token: str) -> AsyncIterator[None]:
    """A participant that joins a room's signalling and never connects its
    media, for as long as the block runs: what a caller whose network lets no
    WebRTC through looks like, or one who hung up while their SDK was rejoining
    a restarted server. livekit-server lists it as joined, never active.

    A bare signal WebSocket (livekit-server's ``/rtc``); it returns once the
    server has answered the join."""
    query = {"access_token": token, "protocol": "16", "sdk": "python", "auto_subscribe": "1"}
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/rtc", params=query) as ws:
        joined = await ws.receive(timeout=10)
        if joined.type != aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"livekit-server refused the join: {joined.type.name} {joined.data!r}")
        yield


def _mono_int16(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError("say() wants mono audio (a 1-D int16 array)")
    return pcm.astype(np.int16, copy=False)


def _frames_pcm(frames: list[rtc.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, np.int16)
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames]).astype(np.int16)


def _resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    pcm = _mono_int16(pcm)
    if rate == SAMPLE_RATE or len(pcm) == 0:
        return pcm
    resampler = rtc.AudioResampler(rate, SAMPLE_RATE, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH)
    return _frames_pcm(resampler.push(bytearray(pcm.tobytes())) + resampler.flush())
