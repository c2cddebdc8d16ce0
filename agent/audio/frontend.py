"""The audio front-end between a caller's microphone and the realtime model.

LiveKit's WebRTC audio processing (``rtc.AudioProcessingModule``: echo
cancellation, noise suppression, high-pass filter, gain control) on 10 ms
frames, with the agent's own output as the echo canceller's far end.

It knows frames and clocks, not rooms: the session feeds it what the agent
plays (:meth:`AudioFrontend.push_far`) and what the caller sends
(:meth:`AudioFrontend.process_near`); the timestamps are the caller's.

What makes it work in a room (measured, see shared/DESIGN.md):

- **Where the echo is.** The echo of what the agent plays comes back through
  the caller's speaker and microphone and two network legs, 250-450 ms later,
  and the lag shifts by tens of ms at each agent turn as jitter buffers
  re-buffer. The APM's own delay estimator cannot reach that far, so we keep
  the far end on a timeline of its play times, estimate the lag by
  cross-correlating microphone and far end, and feed the APM the far end
  ``LEAD_S`` ahead of its echo, where its estimator does well.
- **A fresh canceller per agent turn.** A converged canceller lets the onset
  of a turn through when the path has moved; a new one converges in a few
  frames from the start of the turn.
- **No gain control after the canceller** by default: it lifts the residual
  echo back over the turn detector's threshold.
- **A residual echo suppressor after the canceller** holds what it leaks
  (onsets, a moved path) under the turn detector, judged against an echo
  return loss learned from the microphone and the reference alone
  (:class:`EchoReturnLoss`), so it works even where the canceller does not.
- **A fresh noise suppressor after a dropout** (:class:`Dropouts`). A
  suppressor that hears a noisy line drop out (the receiver's jitter buffer
  ran dry under load and its concealment faded to nothing) takes the silence
  for the line's noise floor and passes the noise for seconds afterwards,
  over the turn detector's threshold; a fresh one converges on the line in
  a few frames.
- **No canceller where there is no echo** (:attr:`AudioFrontend.echo_free`).
  Most callers' echo is cancelled before it reaches us (browsers, mobile
  apps, headsets). A WebRTC canceller fed a loud reference and no echo
  still suppresses the near end for its first seconds (measured: a caller
  barging in 1 s into an agent turn passed in 1% of frames, and the turn
  detector heard them 0.8 s late, against 0.25 s without the front-end).
  Once the learned echo return loss says the loudest echo would stay under
  ``INAUDIBLE_ECHO_DBFS``, the canceller is fed silence instead of the
  reference and is no longer renewed per turn. Echo that appears later (the
  caller puts the headset down) is found by the lag estimator's correlation
  within about a second and brings the canceller back.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from livekit import rtc

from ..sound.g711 import PhoneBand
from ..sound.stream_clock import StreamClock
from ..sound.wav import write_wav

FRAME_MS = 10
LEAD_S = 0.06  # far end handed to the APM this long before its echo is due
# The noise suppressor starts with no noise estimate: a noisy line's first
# frames pass almost untouched and start a turn (seen in rooms at -32 dBFS).
# The front-end sends silence while it learns; nobody says much in the first
# 300 ms of a call.
NS_WARMUP_S = 0.3
# A noise suppressor that hears a dropout of a steady noisy line (the receiver's
# jitter buffer ran dry and its concealment faded to nothing) takes it for the
# line's noise floor, and then passes the noise at almost its full level for
# 0.5-2.5 s, over the turn detector's threshold; a fresh one converges on the
# line within a few frames (room traces; see Dropouts).
_DIP_DB = 6.0  # a frame this far under the line's quietest starts a dip; back within it of its median ends one
_LINE_FRAMES = 30  # the line before a dip: its last 300 ms outside dips (the first 30 ms of a call will do) ...
_LINE_MIN_FRAMES = 3
_BACK_FRAMES = 3  # ... and after it: 30 ms back at that level
_STEADY_DB = 6.0  # ... steady (noise: speech and its echo vary more within 300 ms) ...
_NOISY_DBFS = -50.0  # ... and loud enough that the noise, passed, would reach the turn detector
_DROPOUT_DBFS = -80.0  # a dip this deep is no line's floor but (near) digital silence
_MAX_DROPOUT_FRAMES = 100  # a dip longer than 1 s: the line itself changed
DEFAULT_LAG_S = 0.30  # until the first estimate: a typical room round trip
MAX_LAG_S = 0.9
NEW_TURN_GAP_S = 0.4  # far-end silence after which the next audio is a new turn
_CORR_RATE = 4000  # cross-correlation runs on 4 kHz copies
_CORR_WINDOW_S = 1.0
LAG_TOLERANCE_S = 0.02
MIN_LAG_CORRELATION = 0.25
# One window this well correlated is echo: a caller's voice over the agent's stays under 0.2.
ECHO_FOUND_CORRELATION = 0.5
RESIDUAL_WINDOW_FRAMES = 12  # 120 ms of reference energies the residual suppressor looks back over
# ... and how far it looks ahead of the reference fed: an echo path that got
# shorter since the lag was estimated brings the onset of the next agent turn
# back early (a room trace: 120 ms, after a receiver's jitter buffer drained in
# the silence between turns), before the reference says the far end plays.
EARLY_ECHO_S = 0.15
# ... and how much further back than the window: a path that got longer within
# a turn, before the lag estimator followed it, brings the echo of the turn's
# last words back after the reference says the far end stopped (a room trace:
# 130 ms longer near the end of the greeting, one echo turn).
LATE_ECHO_S = 0.15
_FAR_ACTIVE_ENERGY = 300.0**2  # per sample: the far end is playing (about -41 dBFS)
_DOUBLE_TALK_MARGIN = 4.0  # 6 dB over the loudest echo expected: the caller is talking (Geigel's rule)
_RESIDUAL_GAIN = 10 ** (-30 / 20)
_GAIN_RELEASE = 1.5  # per frame, back to unity after the far end stops
ERL_BLOCK_FRAMES = 50  # the echo return loss is judged on 0.5 s blocks
ERL_BLOCKS_KEPT = 7  # its estimate is the median of the last 7 accepted blocks
ERL_MIN_CORRELATION = 0.7  # log-energy envelopes of microphone and aligned far end: echo alone
ERL_STEADY_STD_DB = 3.0  # a microphone this steady carries no speech (silence, stationary noise)
ERL_PERCENTILE = 95
# Echo this quiet cannot start a turn: a line whose loudest expected echo (the
# loudest agent frame x the learned echo return loss) stays under it is served
# without the canceller (see AudioFrontend.echo_free).
INAUDIBLE_ECHO_DBFS = -50.0
ECHO_FREE_BLOCKS = 3  # ... judged over at least 1.5 s of the agent playing
_INAUDIBLE_ECHO_ENERGY = (32768 * 10 ** (INAUDIBLE_ECHO_DBFS / 20)) ** 2  # per sample


@dataclass(frozen=True)
class FrontendConfig:
    echo_cancellation: bool = True
    noise_suppression: bool = True
    high_pass_filter: bool = True
    auto_gain_control: bool = False

    @property
    def enabled(self) -> bool:
        return self.echo_cancellation or self.noise_suppression or self.high_pass_filter or self.auto_gain_control


class _Timeline:
    """Far-end audio placed at the times it plays: pushes may run ahead of real time
    (a player queue), so each chunk starts where the previous one ends, or now."""

    def __init__(self, rate: int, keep_s: float = 4.0) -> None:
        self.rate = rate
        self._chunks: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._end = -math.inf
        self._keep_s = keep_s
        self._segment_start: float | None = None  # play start of the current segment, as placed

    def new_segment(self) -> None:
        """The next push starts a new playback segment (after a flush or a clear)."""
        self._segment_start = None

    def anchor(self, played_at: float) -> float:
        """The player reports the current segment really started at ``played_at``:
        move the segment's chunks there. Returns the shift (s)."""
        if self._segment_start is None:
            return 0.0
        shift = played_at - self._segment_start
        if abs(shift) < 0.002:
            return 0.0
        first = self._segment_start
        self._chunks = collections.deque(
            (start + shift, pcm) if start >= first - 1e-9 else (start, pcm) for start, pcm in self._chunks
        )
        self._end += shift
        self._segment_start = played_at
        return shift

    @property
    def end(self) -> float:
        return self._end

    def push(self, pcm: np.ndarray, now: float) -> float:
        """Append ``pcm``; returns its play start."""
        start = max(now, self._end)
        if self._segment_start is None:
            self._segment_start = start
        self._chunks.append((start, pcm))
        self._end = start + len(pcm) / self.rate
        while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) / self.rate < now - self._keep_s:
            self._chunks.popleft()
        return start

    def clear(self, now: float) -> None:
        """Playback was interrupted at ``now``: what had not played yet never will."""
        kept: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        for start, pcm in self._chunks:
            if start >= now:
                break
            played = int((now - start) * self.rate)
            kept.append((start, pcm[:played]))
        self._chunks = kept
        self._end = min(self._end, now)

    def hold(self, paused_at: float, resumed_at: float) -> None:
        """Playback stood still from ``paused_at`` to ``resumed_at`` (a barge-in that
        turned out false): what was due after the pause plays that much later."""
        delay = resumed_at - paused_at
        if delay <= 0:
            return
        moved: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        for start, pcm in self._chunks:
            if start >= paused_at:
                moved.append((start + delay, pcm))
                continue
            played = int((paused_at - start) * self.rate)
            if played >= len(pcm):
                moved.append((start, pcm))
            else:
                moved.append((start, pcm[:played]))
                moved.append((resumed_at, pcm[played:]))
        self._chunks = moved
        if self._end > paused_at:
            self._end += delay
        if self._segment_start is not None and self._segment_start >= paused_at:
            self._segment_start += delay

    def read(self, t0: float, n: int) -> np.ndarray:
        """``n`` samples of what played from ``t0`` on (zeros where nothing did)."""
        out = np.zeros(n, np.int16)
        t1 = t0 + n / self.rate
        for start, pcm in self._chunks:
            end = start + len(pcm) / self.rate
            if end <= t0 or start >= t1:
                continue
            src0 = max(0, int(round((t0 - start) * self.rate)))
            dst0 = max(0, int(round((start - t0) * self.rate)))
            count = min(len(pcm) - src0, n - dst0)
            if count > 0:
                out[dst0 : dst0 + count] = pcm[src0 : src0 + count]
        return out

    def active_between(self, t0: float, t1: float) -> bool:
        return any(start < t1 and start + len(pcm) / self.rate > t0 and np.any(pcm) for start, pcm in self._chunks)


def estimate_lag(near: np.ndarray, far: np.ndarray, rate: int, max_lag_s: float) -> tuple[float, float] | None:
    """Lag (s) by which ``near`` echoes ``far``, and the normalised correlation at it.

    ``far`` covers ``max_lag_s`` more at its start than ``near``: far[i] plays
    at the time near[i - max_lag] arrives. The correlation at each lag is
    normalised by the energy of the far end it overlaps there, so a far end
    active at only one edge of the window cannot fake a peak. None when either
    side is silent or the far end overlapping the best lag is too weak.
    """
    if not near.any() or not far.any():
        return None
    x = near.astype(np.float64) - near.mean()
    y = far.astype(np.float64) - far.mean()
    n = len(y) + len(x)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)
    max_lag = int(max_lag_s * rate)
    # corr[k] = sum_i y[i + k] x[i]: near[i] echoes far at index i + max_lag - lag
    energy = np.concatenate([[0.0], np.cumsum(y * y)])
    ks = np.arange(max_lag + 1)
    overlap = energy[np.minimum(ks + len(x), len(y))] - energy[ks]  # far energy under the window at lag k
    norm_x = float(np.sqrt(np.dot(x, x)))
    far_power = overlap / len(x)
    usable = far_power > 0.05 * far_power.max()  # the far end must actually play under the window
    if not usable.any() or norm_x == 0.0:
        return None
    ncc = np.zeros(max_lag + 1)
    ncc[usable] = corr[: max_lag + 1][usable] / (np.sqrt(overlap[usable]) * norm_x)
    k = int(np.argmax(np.abs(ncc)))
    return (max_lag - k) / rate, float(abs(ncc[k]))


class EchoReturnLoss:
    """How loud the caller's microphone returns the agent's audio, learned.

    The value bounds the echo: a microphone frame's energy over the largest
    reference energy of the last ``RESIDUAL_WINDOW_FRAMES``, as an energy ratio
    (1.0 = 0 dB, the cautious start). It is a property of the caller's device
    and room, so it is kept across agent turns.

    Learning must not take the caller's voice for echo (the estimate would
    rise and the suppressor would then eat the caller's barge-in), so it
    judges 0.5 s blocks in which the far end plays and accepts only those
    whose microphone is either echo alone (its log-energy envelope follows
    the aligned far end's, correlation >= 0.7) or carries no speech at all
    (steady: silence or stationary noise, whose level then bounds the echo).
    An accepted block contributes the 95th percentile of its frames' ratios,
    and the estimate is the median of the last seven blocks, so one block of
    double talk that happens to correlate does not move it.
    """

    def __init__(self, frame: int, lead_frames: int) -> None:
        self.value = 1.0
        self.blocks: collections.deque[float] = collections.deque(maxlen=ERL_BLOCKS_KEPT)
        self._active = _FAR_ACTIVE_ENERGY * frame
        self.lead = lead_frames
        self._frames: list[tuple[float, float, float]] = []

    def observe(self, near_energy: float, ref_energies: Sequence[float]) -> None:
        """One frame: the microphone's energy and the reference energies fed over the residual window (newest last)."""
        recent = list(ref_energies)
        # the echo of this frame was fed about `lead` frames ago, give or take 20 ms of jitter
        aligned = recent[max(0, len(recent) - self.lead - 3) : max(1, len(recent) - self.lead + 2)]
        self._frames.append((near_energy, max(recent), max(aligned)))
        if len(self._frames) >= ERL_BLOCK_FRAMES:
            self._judge(np.array(self._frames))
            self._frames = []

    def _judge(self, block: np.ndarray) -> None:
        near, window, aligned = block[:, 0], block[:, 1], block[:, 2]
        playing = aligned > self._active
        if playing.sum() < len(block) // 2:
            return
        near, window, aligned = near[playing], window[playing], aligned[playing]
        x, y = np.log10(near + 1.0), np.log10(aligned)
        steady = 10.0 * float(x.std()) < ERL_STEADY_STD_DB
        echo_alone = x.std() > 0 and y.std() > 0 and float(np.corrcoef(x, y)[0, 1]) >= ERL_MIN_CORRELATION
        if steady or echo_alone:
            self.blocks.append(float(np.percentile((near + 1.0) / window, ERL_PERCENTILE)))
            self.value = float(np.median(self.blocks))


class Dropouts:
    """Finds the dropouts of a steady noisy line that mis-teach the noise suppressor.

    A dropout is a dip from a steady line above -50 dBFS (its last 300 ms
    outside dips within 6 dB, 10th to 90th percentile; at the start of a
    call, 30 ms will do) into (near) digital silence, under -80 dBFS, and
    back to the line's level for 30 ms, within 1 s (in one room trace a
    stalled network chopped the line for 0.7 s). No line's floor is that
    deep, speech over noise never falls under the noise, and speech (or its
    echo) is not that steady for 300 ms: on 17 speakerphone room traces
    (25 min) none was found. On a clean line silence is the floor and
    teaches the suppressor nothing wrong. :meth:`ended` says when the line
    is back from one, for the front-end to start a fresh suppressor there.
    """

    def __init__(self) -> None:
        self._frames = 0
        self._line: collections.deque[float] = collections.deque(maxlen=_LINE_FRAMES)
        self._before: list[float] | None = None  # the line's last levels before the current dip
        self._dip: list[float] = []
        self._back: list[float] = []  # frames back at the line's level since the dip
        self.count = 0

    def ended(self, level: float) -> bool:
        """One frame's level (dBFS); True on the frame that confirms the line is back from a dropout."""
        self._frames += 1
        if self._before is None:
            known = len(self._line) == _LINE_FRAMES or (len(self._line) >= _LINE_MIN_FRAMES and self._frames <= _LINE_FRAMES)
            if known and level < min(self._line) - _DIP_DB:
                self._before, self._dip, self._back = list(self._line), [level], []
            else:
                self._line.append(level)
            return False
        before = self._before
        if abs(level - float(np.median(before))) > _DIP_DB:
            self._dip.extend(self._back + [level])
            self._back = []
            if len(self._dip) > _MAX_DROPOUT_FRAMES:  # not a dropout: the line changed
                self._before = None
                self._line.clear()
            return False
        self._back.append(level)
        if len(self._back) < _BACK_FRAMES:
            return False
        low, high = np.percentile(before, [10, 90])  # a stray frame (the first of a fade) does not count
        steady = high - low <= _STEADY_DB and low > _NOISY_DBFS
        dropout = steady and min(self._dip) < _DROPOUT_DBFS
        self._line.extend(self._back)  # the dip was not the line; what came before it was
        self._before = None
        self.count += dropout
        return dropout


def _dbfs(pcm: np.ndarray) -> float:
    power = float(np.dot(pcm.astype(np.float64), pcm)) / len(pcm)
    return 10.0 * math.log10(max(power, 1e-12) / 32768.0**2)


class AudioFrontend:
    """One caller's front-end: near end in, cleaned near end out; far end as reference."""

    def __init__(self, config: FrontendConfig, *, rate: int = 24000, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.rate = rate
        self.clock = clock
        self.frame = rate * FRAME_MS // 1000
        self.lag_s = DEFAULT_LAG_S
        self.lag_estimates: list[float] = []
        self.anchor_shifts: list[float] = []
        self.turns = 0
        self.frames = 0
        self.cpu_s = 0.0
        self._far = _Timeline(rate)
        self._far_paused_at: float | None = None
        self._near_hist: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._pending = np.zeros(0, np.int16)
        self._near_clock = StreamClock(rate)
        self._out_queue = np.zeros(self.frame, np.int16)
        self.erl = EchoReturnLoss(self.frame, round(LEAD_S * 1000 / FRAME_MS))
        self._gain = 1.0
        self._far_peak = 0.0  # the loudest reference frame so far (energy)
        # Energies of the reference fed, newest last: the residual window and LATE_ECHO_S before it.
        self._ref_energies: collections.deque[float] = collections.deque(
            maxlen=RESIDUAL_WINDOW_FRAMES + round(LATE_ECHO_S * 1000 / FRAME_MS)
        )
        # Energies of the far end EARLY_ECHO_S ahead of the reference fed, over as long.
        self._early_energies: collections.deque[float] = collections.deque(maxlen=round(EARLY_ECHO_S * 1000 / FRAME_MS) + 1)
        # Until the lag is first estimated, what played in the last MAX_LAG_S (energy per frame).
        self._unlocated: collections.deque[float] = collections.deque(maxlen=round(MAX_LAG_S * 1000 / FRAME_MS))
        self._last_estimate = -math.inf
        self._candidate: float | None = None
        self.dropouts = Dropouts()
        self._apm = self._new_apm()
        self._phone_band: PhoneBand | None = None  # the reference cut to the telephone band (a phone caller)
        # Debugging aid: (near in, near out, reference fed) per frame, when enabled.
        self.trace: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] | None = None

    def _new_apm(self) -> rtc.AudioProcessingModule:
        c = self.config
        apm = rtc.AudioProcessingModule(
            echo_cancellation=c.echo_cancellation,
            noise_suppression=c.noise_suppression,
            high_pass_filter=c.high_pass_filter,
            auto_gain_control=c.auto_gain_control,
        )
        if c.echo_cancellation:
            apm.set_stream_delay_ms(int(LEAD_S * 1000))
        return apm

    @property
    def echo_free(self) -> bool:
        """The line returns no echo that could start a turn: the echo return loss
        has been learned over ``ECHO_FREE_BLOCKS`` blocks of the agent playing, the
        lag estimator never located an echo, and the loudest agent frame times the
        echo return loss stays under ``INAUDIBLE_ECHO_DBFS``.

        One block is not enough: the first block of a call is judged before the
        echo arrives (a room's lag is 250-450 ms) and reads as a silent line; with
        a speakerphone caller in a room that let the echo through uncancelled."""
        return (
            len(self.erl.blocks) >= ECHO_FREE_BLOCKS
            and not self.lag_estimates
            and self.erl.value * self._far_peak < _INAUDIBLE_ECHO_ENERGY * self.frame
        )

    # ------------------------------------------------------------------ far end

    def on_phone_line(self, phone: bool) -> None:
        """The caller is (or is no longer) on a telephone line (a SIP participant):
        the agent's voice reaches their speaker in the telephone band only, so
        only that band can come back as echo, and the canceller's reference is
        cut to it. Measured by ``bench/frontend_measure.py --phone`` (G.711 both
        ways, 15 echo scenes): the caller's onset over the agent's echo reaches
        the turn detector at most 741 ms late instead of 2431 ms (300 ms, -6 dB,
        in a room); the median stays 691 ms (421 ms on a wideband line)."""
        self._phone_band = PhoneBand(self.rate) if phone else None

    def push_far(self, pcm: np.ndarray, *, at: float | None = None) -> None:
        """What the agent plays (int16 mono at ``rate``), queued to play from ``at`` (default now)."""
        now = self.clock() if at is None else at
        if self.config.echo_cancellation and now - self._far.end > NEW_TURN_GAP_S:
            self.turns += 1
            # A new agent turn: start from a fresh canceller (see module docstring;
            # replaying a room trace, keeping the converged one leaked 50% more),
            # unless there is no echo to cancel: a fresh one would eat the caller.
            if not self.echo_free:
                self._apm = self._new_apm()
        pcm = np.asarray(pcm, np.int16)
        if self._phone_band is not None:
            pcm = self._phone_band.process(pcm)
        self._far.push(pcm, now)

    def clear_far(self, *, at: float | None = None) -> None:
        """The agent was interrupted: queued far-end audio will not play."""
        self._far.clear(self.clock() if at is None else at)
        self._far.new_segment()

    def pause_far(self, *, at: float | None = None) -> None:
        """The agent's playout was paused (a barge-in in the worker, agent/audio/bargein.py)."""
        self._far_paused_at = self.clock() if at is None else at

    def resume_far(self, *, at: float | None = None) -> None:
        """... and resumed: the rest of the far end plays that much later."""
        if self._far_paused_at is not None:
            self._far.hold(self._far_paused_at, self.clock() if at is None else at)
            self._far_paused_at = None

    def end_far_segment(self) -> None:
        """The agent's current utterance is complete (flushed); the next push starts a new one."""
        self._far.new_segment()

    def far_segment_started(self, played_at: float) -> None:
        """The player says the current segment started playing at ``played_at`` (our clock).

        Pushes only say when audio was handed over; between the session and
        the speaker there may be buffers that hold a segment back (transcript
        synchronisation, for one). This re-anchors the segment on the truth.
        """
        self.anchor_shifts.append(self._far.anchor(played_at))

    # ------------------------------------------------------------------ near end

    def process_near(self, pcm: np.ndarray, *, at: float | None = None) -> np.ndarray:
        """Clean ``pcm`` (int16 mono at ``rate``) that arrived at ``at`` (its last sample).

        Without ``at``, the arrival is told from the stream's sample count and
        the clock (:class:`StreamClock`: a stalled event loop handles frames late
        and in bursts). Any length; output has the same length and is the
        processed stream delayed by one 10 ms frame (the price of 10 ms framing
        for any chunk size).
        """
        if not self.config.enabled:
            return pcm
        t_end = self._near_clock.stamp(len(pcm), self.clock()) if at is None else at
        started = time.thread_time()
        data = np.concatenate([self._pending, np.asarray(pcm, np.int16)])
        whole = len(data) // self.frame * self.frame
        out = np.empty(whole, np.int16)
        for i in range(0, whole, self.frame):
            chunk = data[i : i + self.frame].copy()
            t_chunk = t_end - (len(data) - i) / self.rate  # arrival time of the chunk's first sample
            out[i : i + self.frame] = self._process_frame(chunk, t_chunk)
        self._pending = data[whole:]
        # Hand back exactly as many samples as came in. The output queue starts
        # with one frame of silence: queue + pending input always hold exactly
        # one frame, so any chunk size comes out as the same stream, 10 ms late.
        ready = np.concatenate([self._out_queue, out])
        self._out_queue = ready[len(pcm) :]
        self.cpu_s += time.thread_time() - started
        return ready[: len(pcm)]

    def _process_frame(self, chunk: np.ndarray, t: float) -> np.ndarray:
        self.frames += 1
        if self.config.echo_cancellation:
            self._remember_near(chunk, t)
            self._maybe_estimate(t)
            ref = self._far.read(t - self.lag_s + LEAD_S, self.frame)
            fed = np.zeros_like(ref) if self.echo_free else ref
            self._apm.process_reverse_stream(rtc.AudioFrame(fed.tobytes(), self.rate, 1, self.frame))
        else:
            ref = None
        if self.config.noise_suppression and self.dropouts.ended(_dbfs(chunk)):
            # The suppressor took the dropout for the line's floor (module docstring):
            # a fresh one learns the line from here on (and the canceller re-converges).
            self._apm = self._new_apm()
            if ref is not None:
                self._apm.process_reverse_stream(rtc.AudioFrame(fed.tobytes(), self.rate, 1, self.frame))
        frame = rtc.AudioFrame(chunk.tobytes(), self.rate, 1, self.frame)
        self._apm.process_stream(frame)
        out = np.frombuffer(frame.data, dtype=np.int16).copy()
        if ref is not None:
            if not self.lag_estimates:
                playing = self._far.read(t, self.frame)
                self._unlocated.append(float(np.dot(playing.astype(np.float64), playing)))
            early = self._far.read(t - self.lag_s + LEAD_S + EARLY_ECHO_S, self.frame)
            out = self._suppress_residual(chunk, out, ref, early)
        if self.config.noise_suppression and self.frames * self.frame <= NS_WARMUP_S * self.rate:
            out[:] = 0
        if self.trace is not None:
            self.trace.append((t, chunk, out, ref if ref is not None else np.zeros_like(chunk)))
        return out

    def _suppress_residual(self, near: np.ndarray, out: np.ndarray, ref: np.ndarray, early: np.ndarray) -> np.ndarray:
        """Residual echo suppression after the APM (a classic non-linear processor).

        Over codecs and a moving room path the APM's filter leaks at turn
        onsets and wherever the path just moved, by more than enough to start
        a turn. While the far end plays, a frame whose input is no louder than
        the loudest echo we expect (the recent far-end peak x the learned echo
        return loss, plus 6 dB) is echo, whatever the APM left of it:
        attenuate it. A caller talking over the agent is louder than that and
        passes untouched (double talk). Where the reference is silent, a far
        end that starts within ``EARLY_ECHO_S`` of it counts (``early``: the far
        end that far ahead of the reference), for an echo path that got shorter,
        and one that stopped within ``LATE_ECHO_S`` before the window, for a path
        that got longer.
        """
        energy = float(np.dot(ref.astype(np.float64), ref))
        self._ref_energies.append(energy)
        window = list(self._ref_energies)[-RESIDUAL_WINDOW_FRAMES:]
        self._early_energies.append(float(np.dot(early.astype(np.float64), early)))
        self._far_peak = max(self._far_peak, energy)
        far = max(window)  # the echo trails its reference by up to the lead and some jitter
        if far < _FAR_ACTIVE_ENERGY * self.frame:
            # No far end under the reference: if one starts within EARLY_ECHO_S, its
            # onset may echo early, and if one stopped within LATE_ECHO_S before the
            # window, its end may echo late. (Only here: looking further while the far
            # end plays raised the bar for a caller talking over it; 2.4 s late at
            # 300 ms, -6 dB.)
            far = max(max(self._early_energies), max(self._ref_energies))
        if not self.lag_estimates and self._unlocated:
            # The echo is not located yet (the call's first second; the default lag
            # was 110-180 ms short in rooms): anything played within MAX_LAG_S may be echoing.
            far = max(far, max(self._unlocated))
        near_energy = float(np.dot(near.astype(np.float64), near))
        self.erl.observe(near_energy, window)
        if far < _FAR_ACTIVE_ENERGY * self.frame:
            self._gain = min(1.0, self._gain * _GAIN_RELEASE)
            return out if self._gain >= 1.0 else (out * self._gain).astype(np.int16)
        double_talk = near_energy > _DOUBLE_TALK_MARGIN * self.erl.value * far
        self._gain = 1.0 if double_talk else _RESIDUAL_GAIN
        return out if double_talk else (out * _RESIDUAL_GAIN).astype(np.int16)

    def write_trace(self, path: str) -> None:
        """Three-channel WAV of the trace: near in, near out, reference as fed
        (``python -m agent.audio.trace_report`` reads it). Written whole or not at all."""
        if not self.trace:
            return
        data = np.stack([np.concatenate([x[i] for x in self.trace]) for i in (1, 2, 3)], axis=1)
        write_wav(path, data, self.rate)

    # ------------------------------------------------------------------ lag estimation

    def _remember_near(self, chunk: np.ndarray, t: float) -> None:
        self._near_hist.append((t, chunk))
        while self._near_hist and self._near_hist[0][0] < t - _CORR_WINDOW_S:
            self._near_hist.popleft()

    def _maybe_estimate(self, t: float) -> None:
        if t - self._last_estimate < 0.25 or len(self._near_hist) * FRAME_MS / 1000 < _CORR_WINDOW_S * 0.9:
            return
        t0 = self._near_hist[0][0]
        if not self._far.active_between(t0 - MAX_LAG_S, t):
            return
        self._last_estimate = t
        near = np.concatenate([c for _, c in self._near_hist])
        far = self._far.read(t0 - MAX_LAG_S, int((t - t0 + MAX_LAG_S) * self.rate) + self.frame)
        step = self.rate // _CORR_RATE
        found = estimate_lag(near[::step], far[::step], _CORR_RATE, MAX_LAG_S)
        if found is None:
            return
        lag, correlation = found
        if correlation < MIN_LAG_CORRELATION or not 0.0 <= lag <= MAX_LAG_S:
            return
        if correlation >= ECHO_FOUND_CORRELATION and self.echo_free:
            # Echo on a line that had none (the caller put the headset down): start
            # learning its level from the cautious 0 dB, and cancel again. (Without
            # this, two agreeing estimates below end the echo-free state too, later.)
            self.erl = EchoReturnLoss(self.frame, self.erl.lead)
            self._apm = self._new_apm()
        # Move only when two estimates in a row agree: one window of
        # caller speech over the agent can fake a peak.
        candidate, self._candidate = self._candidate, lag
        if candidate is not None and abs(candidate - lag) <= LAG_TOLERANCE_S:
            if abs(lag - self.lag_s) > LAG_TOLERANCE_S:
                # The echo moved: a canceller converged on the old alignment would
                # fight the new one, so start over (it converges in a few frames).
                self._apm = self._new_apm()
            self.lag_s = lag
            self.lag_estimates.append(lag)


class FrontendProcessor(rtc.FrameProcessor[rtc.AudioFrame]):
    """The front-end as a livekit FrameProcessor: it sees every input frame of the
    caller's track (``room_io.AudioInputOptions(noise_cancellation=...)``)."""

    def __init__(self, frontend: AudioFrontend, *, listener: Callable[[rtc.AudioFrame], None] | None = None, process: bool = True) -> None:
        self.frontend = frontend
        self._enabled = True
        self._listener = listener  # sees each cleaned frame (the worker's barge-in VAD)
        self._process_frames = process  # False: frames pass untouched to the listener (front-end off)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    def _process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        if frame.num_channels != 1 or frame.sample_rate != self.frontend.rate:
            return frame  # RoomIO asks for mono at our rate; anything else passes untouched
        if self._process_frames:
            cleaned = self.frontend.process_near(np.frombuffer(frame.data, dtype=np.int16))
            frame = rtc.AudioFrame(cleaned.tobytes(), frame.sample_rate, 1, frame.samples_per_channel)
        if self._listener is not None:
            self._listener(frame)
        return frame

    def _close(self) -> None:
        pass
