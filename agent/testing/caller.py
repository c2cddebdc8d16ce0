"""A simulated phone caller: a livekit Python SDK participant for room tests.

A :class:`Caller` joins a room, publishes one microphone track that behaves
like a real mic (a continuous 10 ms frame stream: silence, or whatever
:meth:`Caller.say` is speaking) and records every remote audio track with the
wall-clock arrival time of each frame, so tests can ask *who* was heard *when*.

WebRTC between local processes needs the network namespace of
:mod:`agent.testing.netns` (libwebrtc ignores loopback interfaces).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from livekit import rtc

__all__ = [
    "Caller",
    "Speakerphone",
    "DataMessage",
    "ReceivedFrame",
    "Recording",
    "Transcript",
    "load_wav",
    "speech_wav",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48_000  # what the caller publishes and records
FRAME_MS = 10
_FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
# Audio handed to the AudioSource ahead of the wall clock.  Enough to ride out
# event-loop jitter on a busy machine without the source running dry, small
# enough not to delay say() noticeably.
_MIC_LEAD_S = 0.06
# If the loop stalls for longer than this, drop the backlog instead of bursting it.
_MIC_MAX_BEHIND_S = 0.25
_DBFS_FLOOR = -120.0
_SPEAKER_CUSHION = 6  # frames the speakerphone buffers before it starts playing


# --------------------------------------------------------------------------- helpers

# The espeak-ng voice test callers speak with: of the voices tried, the one the
# local server's offline recognizer (PocketSphinx) understands best.
CALLER_VOICE = "en-us+f2"


def speech_wav(text: str, path: str, *, voice: str = CALLER_VOICE) -> str:
    """Synthesize ``text`` with espeak-ng into ``path`` (22.05 kHz mono WAV); returns ``path``."""
    try:
        subprocess.run(["espeak-ng", "-v", voice, "-w", path, "--", text], check=True, capture_output=True)
    except FileNotFoundError as exc:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"espeak-ng failed: {exc.stderr.decode(errors='replace')}") from exc
    return path


def load_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV as int16 mono (channels averaged) and its sample rate."""
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16  # sign-extend, keep 16 bits
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.int64) >> 16
    else:
        raise ValueError(f"{path}: unsupported sample width {width}")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return np.asarray(data, dtype=np.int16), rate


def _dbfs(sum_squares: float, n: int) -> float:
    if n == 0 or sum_squares <= 0.0:
        return _DBFS_FLOOR
    return max(_DBFS_FLOOR, 10.0 * math.log10(sum_squares / n / (32768.0 * 32768.0)))


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class ReceivedFrame:
    """One received audio frame; ``time`` is ``time.time()`` when it reached Python."""

    time: float
    identity: str
    track_sid: str
    pcm: np.ndarray  # int16 mono
    sum_squares: float

    @property
    def dbfs(self) -> float:
        return _dbfs(self.sum_squares, len(self.pcm))


class Recording:
    """Frames received from remote audio tracks (int16 mono), with arrival times.

    Several tracks (participants) may be in one recording; level analysis is
    done per track and merged on the wall clock, so ``speech_segments`` is the
    union of everybody's speech.
    """

    def __init__(self, frames: list[ReceivedFrame], sample_rate: int = SAMPLE_RATE) -> None:
        self.frames = frames
        self.sample_rate = sample_rate

    @classmethod
    def from_pcm(
        cls,
        pcm: np.ndarray,
        sample_rate: int,
        *,
        start_time: float = 0.0,
        identity: str = "",
        frame_ms: int = FRAME_MS,
    ) -> Recording:
        """Wrap plain audio (e.g. a source WAV) so it can be analysed the same way."""
        pcm = np.asarray(pcm, dtype=np.int16)
        step = max(1, sample_rate * frame_ms // 1000)
        frames = []
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            t = start_time + (i + len(chunk)) / sample_rate  # like arrival: end of the frame
            frames.append(ReceivedFrame(t, identity, "", chunk, _sum_squares(chunk)))
        return cls(frames, sample_rate)

    def identities(self) -> list[str]:
        return sorted({f.identity for f in self.frames})

    def filter(self, identity: str | None = None, *, after: float | None = None) -> Recording:
        return Recording(
            [
                f
                for f in self.frames
                if (identity is None or f.identity == identity) and (after is None or f.time > after)
            ],
            self.sample_rate,
        )

    @property
    def duration(self) -> float:
        """Seconds of audio, summed over tracks."""
        return sum(len(f.pcm) for f in self.frames) / self.sample_rate

    def _by_track(self) -> dict[str, list[ReceivedFrame]]:
        tracks: dict[str, list[ReceivedFrame]] = collections.defaultdict(list)
        for f in self.frames:
            tracks[f.identity + "/" + f.track_sid].append(f)
        return tracks

    def rms_dbfs_windows(self, window_ms: int = 20) -> list[tuple[float, float]]:
        """(wall time, dBFS) per window, time = start of the window's audio, sorted by time.

        A frame's audio is taken to end when it arrived; windows are whole frames.
        """
        need = max(1, self.sample_rate * window_ms // 1000)
        out: list[tuple[float, float]] = []
        for frames in self._by_track().values():
            start: float | None = None
            ss, n = 0.0, 0
            for f in frames:
                if start is None:
                    start = f.time - len(f.pcm) / self.sample_rate
                ss += f.sum_squares
                n += len(f.pcm)
                if n >= need:
                    out.append((start, _dbfs(ss, n)))
                    start, ss, n = None, 0.0, 0
            if start is not None and n > 0:
                out.append((start, _dbfs(ss, n)))
        out.sort()
        return out

    def speech_segments(
        self, threshold_dbfs: float = -40.0, min_silence_ms: int = 300, *, window_ms: int = 20
    ) -> list[tuple[float, float]]:
        """(start, end) wall times of speech: windows above ``threshold_dbfs``, with
        gaps shorter than ``min_silence_ms`` bridged."""
        window_s = window_ms / 1000
        gap_s = min_silence_ms / 1000
        segments: list[tuple[float, float]] = []
        for t, level in self.rms_dbfs_windows(window_ms):
            if level < threshold_dbfs:
                continue
            if segments and t - segments[-1][1] < gap_s:
                segments[-1] = (segments[-1][0], max(segments[-1][1], t + window_s))
            else:
                segments.append((t, t + window_s))
        return segments

    def first_speech(
        self,
        *,
        after: float | None = None,
        threshold_dbfs: float = -40.0,
        min_duration: float = 0.2,
        window_ms: int = 20,
    ) -> float | None:
        """Start time of the first run of windows, all above the threshold, lasting
        ``min_duration`` -- per track, windows starting after ``after``."""
        best: float | None = None
        window_s = window_ms / 1000
        for frames in self._by_track().values():
            run_start: float | None = None
            windows = Recording(frames, self.sample_rate).rms_dbfs_windows(window_ms)
            for t, level in windows:
                if (after is not None and t <= after) or level < threshold_dbfs:
                    run_start = None
                    continue
                if run_start is None:
                    run_start = t
                if t + window_s - run_start >= min_duration - 1e-9:
                    best = run_start if best is None else min(best, run_start)
                    break
        return best

    def max_dbfs(self) -> float:
        return max((f.dbfs for f in self.frames), default=_DBFS_FLOOR)

    def pcm(self) -> np.ndarray:
        """int16 mono; several tracks are mixed, each placed by its first frame's arrival."""
        tracks = self._by_track()
        if not tracks:
            return np.zeros(0, np.int16)
        if len(tracks) == 1:
            return np.concatenate([f.pcm for f in self.frames]).astype(np.int16)
        placed = []
        for frames in tracks.values():
            data = np.concatenate([f.pcm for f in frames]).astype(np.int32)
            placed.append((frames[0].time - len(frames[0].pcm) / self.sample_rate, data))
        t0 = min(t for t, _ in placed)
        offsets = [round((t - t0) * self.sample_rate) for t, _ in placed]
        mix = np.zeros(max(o + len(d) for o, (_, d) in zip(offsets, placed)), np.int32)
        for o, (_, d) in zip(offsets, placed):
            mix[o : o + len(d)] += d
        return np.clip(mix, -32768, 32767).astype(np.int16)

    def to_wav(self, path: str | Path) -> None:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            w.writeframes(self.pcm().astype("<i2").tobytes())

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return f"Recording({len(self.frames)} frames, {self.duration:.2f}s, from {self.identities()})"


def _sum_squares(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64)
    return float(np.dot(x, x))


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
class Speakerphone:
    """A caller without headphones: what it hears from participants whose identity
    starts with ``from_prefix`` comes back into its microphone, ``delay_s`` later
    and ``gain_db`` louder (negative: quieter)."""

    delay_s: float = 0.15
    gain_db: float = -6.0
    from_prefix: str = "agent-"


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
    are cancelled and awaited in :meth:`leave`.
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
        self.speakerphone = speakerphone
        # What the microphone track carries (a phone bridge at 8 kHz, a stereo
        # interface at 48 kHz...); everything inside stays 48 kHz mono.
        self.mic_rate = mic_rate
        self.mic_channels = mic_channels
        self._mic_resampler = None if mic_rate == SAMPLE_RATE else rtc.AudioResampler(SAMPLE_RATE, mic_rate, num_channels=1)
        # A noisy line: steady noise under everything the microphone sends, from the start.
        self.background_noise_dbfs = background_noise_dbfs
        self._noise_rng = np.random.default_rng(11)
        # The speakerphone's sound path: a speaker FIFO fed by the received stream and
        # played at the microphone's own 10 ms clock, then a fixed delay line. A
        # real device's echo path is fixed; it must not slip with arrival jitter.
        self._speaker: collections.deque[np.ndarray] = collections.deque()
        self._speaker_playing = False
        self._delay_line: collections.deque[np.ndarray] | None = None
        self.speaker_underruns = 0
        self.data_messages: list[DataMessage] = []
        self._text_atasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def room(self) -> rtc.Room:
        if self._room is None:
            raise RuntimeError("Caller.join() first")
        return self._room

    async def join(self) -> None:
        """Connect, publish the mic track (streaming silence) and record remote audio."""
        if self._room is not None:
            raise RuntimeError("Caller.join() called twice")
        room = self._room = rtc.Room()
        room.on("track_subscribed", self._on_track_subscribed)
        room.register_text_stream_handler(TOPIC_TRANSCRIPTION, self._on_transcription)
        room.on("data_received", self._on_data)
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
        if self._mic_task is None or self._closed:
            raise RuntimeError("Caller is not joined")
        if self._mic_task.done():
            self._mic_task.result()  # re-raise why the mic died
            raise RuntimeError("Caller's mic task has stopped")
        data = _resample(np.asarray(pcm), sample_rate)
        done: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Utterance(data, done))
        start, end = await done
        self.spoken.append((start, end))
        await asyncio.sleep(max(0.0, end - time.time()))

    async def say_wav(self, path: str | Path) -> None:
        pcm, rate = load_wav(path)
        await self.say(pcm, rate)

    def heard(self, identity: str | None = None) -> Recording:
        """Everything received so far (optionally from one participant only)."""
        return Recording(list(self._frames)).filter(identity)

    async def wait_for_audio(self, *, timeout: float, identity: str | None = None) -> float:
        """Wall time of the first audio frame received (silent or not): the agent has
        joined and published, whatever it says; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.heard(identity)
            if len(rec):
                return rec.frames[0].time
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.identity}: no audio track from {identity or 'anyone'} within {timeout}s")
            await asyncio.sleep(0.02)

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
        deadline = time.monotonic() + timeout
        while True:
            rec = self.heard(identity)
            if after is not None:
                rec = rec.filter(after=after)
            t = rec.first_speech(after=after, threshold_dbfs=threshold_dbfs, min_duration=min_duration)
            if t is not None:
                return t
            if time.monotonic() >= deadline:
                who = f"from {identity!r}" if identity else "from anyone"
                raise TimeoutError(
                    f"{self.identity}: no speech {who} above {threshold_dbfs} dBFS for "
                    f"{min_duration}s within {timeout}s"
                    + (f" after t={after:.3f}" if after is not None else "")
                    + f"; received {len(rec)} frames from {rec.identities()}, "
                    f"loudest {rec.max_dbfs():.1f} dBFS"
                )
            await asyncio.sleep(0.02)

    async def send_chat(self, text: str) -> None:
        """Type ``text`` into the room chat (``lk.chat``), as LiveKit's web components do."""
        await self.room.local_participant.send_text(text, topic=TOPIC_CHAT)

    async def wait_for_transcript(
        self, pattern: str, *, timeout: float, after: float | None = None, identity: str | None = None
    ) -> Transcript:
        """The first agent transcript matching the regex ``pattern`` (case-insensitive)."""
        regex = re.compile(pattern, re.IGNORECASE)
        deadline = time.monotonic() + timeout
        while True:
            for t in self.transcripts:
                if (after is None or t.time > after) and (identity is None or t.identity == identity) and regex.search(t.text):
                    return t
            if time.monotonic() >= deadline:
                seen = [t.text for t in self.transcripts if after is None or t.time > after]
                raise TimeoutError(f"{self.identity}: no transcript matching {pattern!r} within {timeout}s; saw {seen}")
            await asyncio.sleep(0.05)

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
            if time.time() - last_end >= quiet:
                return last_end
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.identity}: still hearing speech after {timeout}s (last ended {last_end:.3f})")
            await asyncio.sleep(0.05)

    async def leave(self) -> None:
        """Stop the mic and recorders, disconnect.  Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._mic_task, *self._recorders.values(), *self._text_atasks) if t is not None]
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
        task = asyncio.get_running_loop().create_task(
            self._record(track, participant.identity), name=f"caller-rec-{self.identity}<-{participant.identity}"
        )
        self._recorders[track.sid] = task

    def _on_data(self, packet: rtc.DataPacket) -> None:
        identity = packet.participant.identity if packet.participant else ""
        self.data_messages.append(DataMessage(time.time(), identity, packet.topic or "", bytes(packet.data)))

    def _on_transcription(self, reader: rtc.TextStreamReader, identity: str) -> None:
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._read_transcript(reader, identity), name=f"caller-text-{self.identity}")
        self._text_atasks.add(task)
        task.add_done_callback(self._text_atasks.discard)

    async def _read_transcript(self, reader: rtc.TextStreamReader, identity: str) -> None:
        text = await reader.read_all()
        attributes = dict(reader.info.attributes or {})
        self.transcripts.append(Transcript(time.time(), identity, text, attributes))

    async def _record(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        try:
            async for event in stream:
                pcm = np.frombuffer(event.frame.data, dtype=np.int16).copy()
                now = time.time()
                self._frames.append(ReceivedFrame(now, identity, track.sid or "", pcm, _sum_squares(pcm)))
                phone = self.speakerphone
                if phone is not None and identity.startswith(phone.from_prefix) and len(pcm) == _FRAME_SAMPLES:
                    self._speaker.append(pcm)
        finally:
            await stream.aclose()

    def _next_frame(self, due_wall: float) -> np.ndarray | None:
        """The next 10 ms of speech, or None for silence; settles finished utterances."""
        if not self._queue:
            return None
        u = self._queue[0]
        if u.start is None:
            u.start = due_wall
        chunk = u.pcm[u.pos : u.pos + _FRAME_SAMPLES]
        u.pos += _FRAME_SAMPLES
        if u.pos >= len(u.pcm):
            self._queue.popleft()
            if not u.done.done():
                u.done.set_result((u.start, due_wall + len(chunk) / SAMPLE_RATE))
        if len(chunk) < _FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(_FRAME_SAMPLES - len(chunk), np.int16)])
        return chunk

    def _mic_format(self, data: np.ndarray) -> rtc.AudioFrame | None:
        """10 ms of 48 kHz mono as the microphone track's format."""
        pcm = data
        if self._mic_resampler is not None:
            out = self._mic_resampler.push(bytearray(data.tobytes()))
            if not out:
                return None
            pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in out])
        if self.mic_channels > 1:
            pcm = np.repeat(pcm, self.mic_channels)  # interleaved: the same signal on every channel
        return rtc.AudioFrame(pcm.tobytes(), self.mic_rate, self.mic_channels, len(pcm) // self.mic_channels)

    def _noise_frame(self) -> np.ndarray:
        assert self.background_noise_dbfs is not None
        white = self._noise_rng.standard_normal(_FRAME_SAMPLES + 3)
        noise = np.convolve(white, np.ones(4) / 4, mode="valid")[:_FRAME_SAMPLES]  # fan/room rather than hiss
        return (noise / 0.5 * 32768 * 10 ** (self.background_noise_dbfs / 20)).astype(np.int32)

    def _next_echo(self, due_wall: float) -> np.ndarray | None:
        """The speakerphone's echo for the next 10 ms of microphone signal."""
        phone = self.speakerphone
        if phone is None:
            return None
        if self._delay_line is None:
            frames = max(1, round(phone.delay_s * 1000 / FRAME_MS))
            self._delay_line = collections.deque(np.zeros(_FRAME_SAMPLES, np.int16) for _ in range(frames))
        while len(self._speaker) > 20:  # the loop stalled: drop rather than fall behind for good
            self._speaker.popleft()
        if not self._speaker_playing and len(self._speaker) >= _SPEAKER_CUSHION:
            self._speaker_playing = True  # a jitter cushion, as a real player keeps
        if self._speaker_playing and self._speaker:
            played = self._speaker.popleft()
        else:
            if self._speaker_playing:
                self.speaker_underruns += 1
                self._speaker_playing = False
            played = np.zeros(_FRAME_SAMPLES, np.int16)
        self._delay_line.append(played)
        echo = self._delay_line.popleft()
        return (echo.astype(np.float64) * 10 ** (phone.gain_db / 20)).astype(np.int32)

    async def _mic_loop(self) -> None:
        """Feed the AudioSource one 10 ms frame at a time, paced by the wall clock.

        capture_frame() returns at once until the source's 1 s queue is full, so
        it cannot pace us; we keep ~_MIC_LEAD_S queued ahead of real time.
        """
        assert self._source is not None
        silence = np.zeros(_FRAME_SAMPLES, np.int16)
        frame_s = _FRAME_SAMPLES / SAMPLE_RATE
        t0 = time.monotonic()
        sent = 0
        try:
            while True:
                now = time.monotonic()
                behind = (now - t0) - sent * frame_s
                if behind > _MIC_MAX_BEHIND_S:  # stalled: drop the gap rather than burst it
                    sent += int(behind / frame_s)
                while sent * frame_s < (now - t0) + _MIC_LEAD_S:
                    due_wall = time.time() + (t0 + sent * frame_s - now)
                    chunk = self._next_frame(due_wall)
                    data = silence if chunk is None else chunk
                    echo = self._next_echo(due_wall)
                    if echo is not None:
                        data = np.clip(data.astype(np.int32) + echo, -32768, 32767).astype(np.int16)
                    if self.background_noise_dbfs is not None:
                        data = np.clip(data.astype(np.int32) + self._noise_frame(), -32768, 32767).astype(np.int16)
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


def _resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    if pcm.ndim != 1:
        raise ValueError("say() wants mono audio (a 1-D int16 array)")
    pcm = pcm.astype(np.int16, copy=False)
    if rate == SAMPLE_RATE or len(pcm) == 0:
        return pcm
    resampler = rtc.AudioResampler(rate, SAMPLE_RATE, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH)
    frames = resampler.push(bytearray(pcm.tobytes())) + resampler.flush()
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames]).astype(np.int16)
