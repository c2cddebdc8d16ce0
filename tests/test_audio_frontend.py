"""The audio front-end (agent/audio/frontend.py) on a simulated clock.

Signals are synthetic and deterministic (``speech_like``: phrases of voiced
syllables with a wandering pitch and formant-shaped harmonics), so these
tests need no espeak-ng. ``python bench/frontend_measure.py``
gives the figures on espeak-ng speech.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from livekit import rtc
from test_stream_clock import stalled_handling  # tests/, beside this file

from agent.audio.frontend import (
    DEFAULT_LAG_S,
    EARLY_ECHO_S,
    LEAD_S,
    MIN_LAG_CORRELATION,
    NEW_TURN_GAP_S,
    RESIDUAL_WINDOW_FRAMES,
    AudioFrontend,
    EchoReturnLoss,
    FrontendConfig,
    _Timeline,
    estimate_lag,
)
from agent.sound.vad import EnergyVad, SpeechStarted, VadConfig

RATE = 24000
FRAME = RATE // 100
AEC_OFF = FrontendConfig(echo_cancellation=False)
HPF_ONLY = FrontendConfig(echo_cancellation=False, noise_suppression=False)


def speech_like(seconds: float, seed: int, rate: int = RATE, level: float = 6000.0) -> np.ndarray:
    """Phrases of 3-6 syllables (120-300 ms, pitch 90-220 Hz, three formants, 20-150 ms apart),
    200-500 ms between phrases; int16 at ``level`` RMS."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    total = int(seconds * rate)
    while sum(len(p) for p in parts) < total:
        for _ in range(int(rng.integers(3, 7))):
            parts.append(syllable(rng, rate))
            parts.append(np.zeros(int(rng.uniform(0.02, 0.15) * rate)))
        parts.append(np.zeros(int(rng.uniform(0.2, 0.5) * rate)))
    x = np.concatenate(parts)[:total]
    return np.clip(x / np.sqrt(np.mean(x**2)) * level, -32000, 32000).astype(np.int16)


def syllable(rng: np.random.Generator, rate: int) -> np.ndarray:
    n = int(rng.uniform(0.12, 0.3) * rate)
    t = np.arange(n) / rate
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    formants = rng.uniform([300, 900, 2000], [900, 2200, 3500])
    voiced = np.zeros(n)
    for k in range(1, 40):
        fk = k * f0.mean()
        if fk < rate / 2.2:
            voiced += np.sin(k * phase) * sum(np.exp(-(((fk - f) / 250) ** 2)) for f in formants) / k**0.5
    voiced += 0.05 * np.std(voiced) * rng.standard_normal(n)
    return voiced * np.sin(np.pi * np.arange(n) / n) ** 0.7


FAR = speech_like(5.0, seed=1)
NEAR = speech_like(2.5, seed=2)


def echo_scene(delay_s: float, atten_db: float, far: np.ndarray = FAR, tail_s: float = 0.5) -> np.ndarray:
    """The microphone: ``far`` (played from t=0) echoed ``delay_s`` later, ``atten_db`` down."""
    d = int(delay_s * RATE)
    mic = np.zeros(len(far) + d + int(tail_s * RATE))
    mic[d : d + len(far)] = far * 10 ** (atten_db / 20)
    return np.round(mic).astype(np.int16)


def run(fe: AudioFrontend, mic: np.ndarray, chunk: int = FRAME, start_s: float = 0.0) -> np.ndarray:
    """Feed ``mic`` in ``chunk``-sample pieces, each at the arrival of its last sample."""
    outs = []
    for i in range(0, len(mic) // chunk * chunk, chunk):
        outs.append(fe.process_near(mic[i : i + chunk], at=start_s + (i + chunk) / RATE))
    return np.concatenate(outs)


def median_erle(mic: np.ndarray, out: np.ndarray, a: int, b: int, window: int = RATE // 10) -> float:
    """Median over 100 ms windows with echo (within 30 dB of the loudest) of P_mic / P_out, in dB."""
    n = (b - a) // window * window
    p_in = np.mean(mic[a : a + n].astype(np.float64).reshape(-1, window) ** 2, axis=1)
    p_out = np.mean(out[a : a + n].astype(np.float64).reshape(-1, window) ** 2, axis=1)
    active = p_in >= p_in.max() * 1e-3
    return float(np.median(10 * np.log10(p_in[active] / np.maximum(p_out[active], 1 / 12))))


def best_correlation(ref: np.ndarray, y: np.ndarray, max_shift: int) -> float:
    """Correlation coefficient of ``ref`` and ``y[s : s + len(ref)]``, best over 0 <= s <= 2 * max_shift."""
    return max(float(np.corrcoef(ref, y[s : s + len(ref)])[0, 1]) for s in range(0, 2 * max_shift + 1, 4))


def highpass_only_apm(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` through an APM with only the high-pass filter: the linear path every configuration shares."""
    apm = rtc.AudioProcessingModule(high_pass_filter=True)
    out = []
    for i in range(0, len(pcm) // FRAME * FRAME, FRAME):
        frame = rtc.AudioFrame(pcm[i : i + FRAME].tobytes(), RATE, 1, FRAME)
        apm.process_stream(frame)
        out.append(np.frombuffer(frame.data, dtype=np.int16))
    return np.concatenate(out).astype(np.float64)


# ---------------------------------------------------------------- _Timeline


def ramp(n: int, first: int = 1) -> np.ndarray:
    return np.arange(first, first + n, dtype=np.int16)


def test_timeline_places_pushes_ahead_of_real_time_back_to_back() -> None:
    tl = _Timeline(RATE)
    starts = [tl.push(ramp(FRAME, 1 + k * FRAME), now=0.0) for k in range(3)]  # a player queueing 30 ms at once
    assert starts == pytest.approx([0.0, 0.01, 0.02])
    assert tl.end == pytest.approx(0.03)
    assert np.array_equal(tl.read(0.0, 3 * FRAME), ramp(3 * FRAME))
    # Pushed at 0.015 while the queue runs to 0.03: it plays after the queue, not over it.
    assert tl.push(ramp(FRAME, 1000), now=0.015) == pytest.approx(0.03)
    # After the queue ran dry, a push plays from when it is made.
    assert tl.push(ramp(FRAME), now=1.0) == pytest.approx(1.0)


def test_timeline_clear_drops_what_has_not_played() -> None:
    tl = _Timeline(RATE)
    tl.push(ramp(RATE // 2), now=0.0)  # 500 ms queued
    tl.clear(now=0.1)
    assert tl.end == pytest.approx(0.1)
    got = tl.read(0.0, RATE // 2)
    played = int(0.1 * RATE)
    assert np.array_equal(got[:played], ramp(played))
    assert not got[played:].any()
    assert not tl.active_between(0.1, 0.5)
    # The next push plays from its own time, not after the dropped queue.
    assert tl.push(ramp(FRAME), now=0.2) == pytest.approx(0.2)


def test_timeline_clear_before_a_queued_chunk_drops_all_of_it() -> None:
    tl = _Timeline(RATE)
    tl.push(ramp(FRAME), now=0.0)
    tl.push(ramp(FRAME, 500), now=0.0)  # plays 10-20 ms
    tl.clear(now=0.005)
    got = tl.read(0.0, 2 * FRAME)
    assert np.array_equal(got[: FRAME // 2], ramp(FRAME // 2))
    assert not got[FRAME // 2 :].any()


def test_timeline_read_is_zero_where_nothing_played() -> None:
    tl = _Timeline(RATE)
    tl.push(ramp(FRAME), now=0.1)
    tl.push(ramp(FRAME, 2000), now=0.2)  # a gap of 90 ms between the two
    got = tl.read(0.09, int(0.13 * RATE))  # 90 ms .. 220 ms
    lead = int(0.01 * RATE)
    assert not got[:lead].any()  # before anything played
    assert np.array_equal(got[lead : lead + FRAME], ramp(FRAME))
    assert not got[lead + FRAME : lead + 2400].any()  # the gap
    assert np.array_equal(got[lead + 2400 : lead + 2400 + FRAME], ramp(FRAME, 2000))
    assert not got[lead + 2400 + FRAME :].any()  # after the end
    assert not tl.read(5.0, FRAME).any()
    # A read starting inside a chunk gets its middle, sample-exact.
    assert np.array_equal(tl.read(0.105, FRAME // 2), ramp(FRAME // 2, 1 + FRAME // 2))


# ---------------------------------------------------------------- estimate_lag


@pytest.mark.parametrize("lag_s", [0.0, 0.05, 0.2, 0.45, 0.8])
def test_estimate_lag_finds_a_known_lag(lag_s: float) -> None:
    rate, max_lag = 4000, 0.9
    far = speech_like(2.0, seed=3, rate=rate)[: rate + int(max_lag * rate)].astype(np.float64)
    k = int(max_lag * rate) - int(lag_s * rate)
    rng = np.random.default_rng(4)
    near = 0.3 * far[k : k + rate] + 50 * rng.standard_normal(rate)  # far[i + max_lag - lag] plays as near[i] arrives
    found = estimate_lag(near, far, rate, max_lag)
    assert found is not None
    lag, confidence = found
    assert lag == pytest.approx(lag_s, abs=1.5 / rate)
    assert confidence > MIN_LAG_CORRELATION  # the front-end's acceptance threshold


def test_estimate_lag_is_none_on_silence() -> None:
    far = speech_like(2.0, seed=3, rate=4000)[:7600]
    assert estimate_lag(np.zeros(4000), far, 4000, 0.9) is None
    assert estimate_lag(far[:4000], np.zeros(7600), 4000, 0.9) is None


# ---------------------------------------------------------------- AudioFrontend


def echo_run(delay_s: float, atten_db: float, config: FrontendConfig) -> tuple[AudioFrontend, np.ndarray, np.ndarray]:
    mic = echo_scene(delay_s, atten_db)
    fe = AudioFrontend(config, rate=RATE, clock=lambda: pytest.fail("the clock was read although every call gave at="))
    fe.push_far(FAR, at=0.0)
    return fe, mic, run(fe, mic)


@pytest.mark.parametrize("delay_s", [0.15, 0.8])  # at 0.8 s the echo is lost unless the reference is shifted by the lag
def test_echo_cancellation_removes_the_echo(delay_s: float) -> None:
    fe, mic, out = echo_run(delay_s, -6.0, FrontendConfig())
    d = int(delay_s * RATE)
    erle = median_erle(mic, out, d + RATE // 2, d + len(FAR))  # after 0.5 s of convergence
    assert erle >= 25.0, f"median ERLE {erle:.1f} dB"
    assert fe.turns == 1


def test_without_echo_cancellation_the_echo_stays() -> None:
    fe, mic, out = echo_run(0.15, -6.0, AEC_OFF)
    d = int(0.15 * RATE)
    erle = median_erle(mic, out, d + RATE // 2, d + len(FAR))
    assert erle < 6.0, f"median ERLE {erle:.1f} dB"
    assert fe.lag_estimates == [] and fe.turns == 0


@pytest.mark.parametrize("delay_s", [0.15, 0.45])
def test_lag_estimate_converges_to_the_true_lag(delay_s: float) -> None:
    fe, _, _ = echo_run(delay_s, -6.0, FrontendConfig())
    assert fe.lag_estimates, "no lag estimate accepted"
    assert fe.lag_s == pytest.approx(delay_s, abs=0.005)
    assert all(abs(lag - delay_s) <= 0.005 for lag in fe.lag_estimates), fe.lag_estimates
    assert abs(DEFAULT_LAG_S - delay_s) > 0.1  # the estimate did move away from the default


def test_near_end_alone_passes_the_full_frontend() -> None:
    # The APM's band splitting at 24 kHz is a dispersive all-pass: even a
    # high-pass-only APM correlates only ~0.7 with its input. So the
    # reference is the near end through a high-pass-only APM.
    mic = np.concatenate([np.zeros(RATE // 2, np.int16), NEAR, np.zeros(RATE // 4, np.int16)])
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    out = run(fe, mic).astype(np.float64)
    ref = highpass_only_apm(mic)
    a, b, m = RATE // 2, RATE // 2 + len(NEAR), RATE // 25  # the APM (6-14 ms) + 10 ms framing delay
    corr = best_correlation(ref[a:b], out[a - m : b + m], m)
    assert corr > 0.9
    rms_in, rms_out = np.std(mic[a:b]), np.std(out[a:b])
    assert 0.7 < rms_out / rms_in < 1.2  # no gain control: the level is kept


@pytest.mark.parametrize("chunk", [FRAME, 5 * FRAME, 1, 100, 250, 337, 3 * FRAME + 7])
def test_process_near_keeps_lengths(chunk: int) -> None:
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    fe.push_far(FAR[: RATE // 2], at=0.0)
    mic = echo_scene(0.1, -6.0, far=FAR[: RATE // 2])
    total = 0
    for i in range(0, min(len(mic), 4000 if chunk == 1 else len(mic)), chunk):
        piece = mic[i : i + chunk]
        out = fe.process_near(piece, at=(i + len(piece)) / RATE)
        assert len(out) == len(piece) and out.dtype == np.int16
        total += len(piece)
    assert fe.frames == total // FRAME
    assert len(fe.process_near(np.zeros(0, np.int16), at=1.0)) == 0


def test_a_new_far_turn_after_a_gap_starts_a_fresh_canceller() -> None:
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    assert fe.turns == 0
    first = fe._apm
    for k in range(10):  # one turn as a player hands it over: 100 ms chunks at their play times
        fe.push_far(FAR[k * 2400 : (k + 1) * 2400], at=k * 0.1)
    assert fe.turns == 1 and fe._apm is not first
    turn1 = fe._apm
    fe.push_far(FAR[:2400], at=1.0 + NEW_TURN_GAP_S / 2)  # a short pause: same turn
    assert fe.turns == 1 and fe._apm is turn1
    end = 1.1 + NEW_TURN_GAP_S / 2
    fe.push_far(FAR[:2400], at=end + NEW_TURN_GAP_S + 0.1)  # a pause longer than the gap: new turn
    assert fe.turns == 2 and fe._apm is not turn1
    # An interruption ends the turn where it is cut, not where its queue would have ended.
    fe.push_far(FAR, at=3.0)
    assert fe.turns == 3
    fe.clear_far(at=3.5)
    fe.push_far(FAR[:2400], at=3.5 + NEW_TURN_GAP_S + 0.1)
    assert fe.turns == 4


def test_without_echo_cancellation_turns_are_not_counted() -> None:
    fe = AudioFrontend(AEC_OFF, rate=RATE, clock=lambda: 0.0)
    fe.push_far(FAR[:2400], at=0.0)
    fe.push_far(FAR[:2400], at=5.0)
    assert fe.turns == 0


def test_default_config_has_no_gain_control() -> None:
    # Gain control after the canceller lifts the residual echo (module docstring).
    assert FrontendConfig() == FrontendConfig(True, True, True, False)


def test_disabled_frontend_passes_audio_through() -> None:
    fe = AudioFrontend(FrontendConfig(False, False, False, False), rate=RATE, clock=lambda: 0.0)
    assert np.array_equal(fe.process_near(NEAR[:333], at=0.1), NEAR[:333])


# ---------------------------------------------------------------- echo return loss and the residual suppressor

LEAD_FRAMES = round(LEAD_S * 100)


def db(ratio: float) -> float:
    return 10 * float(np.log10(ratio))


def learn(erl: EchoReturnLoss, mic: np.ndarray, fed: np.ndarray) -> list[float]:
    """Feed frame energies: ``fed`` is the reference as the APM gets it (LEAD_S ahead of its echo)."""
    refs: collections.deque[float] = collections.deque(maxlen=RESIDUAL_WINDOW_FRAMES)
    values = []
    for i in range(0, min(len(mic), len(fed)) // FRAME * FRAME, FRAME):
        refs.append(float(np.dot(fed[i : i + FRAME].astype(np.float64), fed[i : i + FRAME])))
        erl.observe(float(np.dot(mic[i : i + FRAME].astype(np.float64), mic[i : i + FRAME])), refs)
        values.append(erl.value)
    return values


def echo_of(fed: np.ndarray, gain_db: float) -> np.ndarray:
    mic = np.zeros(len(fed))
    mic[LEAD_FRAMES * FRAME :] = fed[: -LEAD_FRAMES * FRAME] * 10 ** (gain_db / 20)
    return mic


LONG_FAR = speech_like(12.0, seed=1).astype(np.float64)
LONG_NEAR = speech_like(12.0, seed=2).astype(np.float64)


def test_echo_return_loss_starts_cautious_and_waits_for_the_far_end() -> None:
    erl = EchoReturnLoss(FRAME, LEAD_FRAMES)
    assert erl.value == 1.0  # 0 dB: before anything is known, every echo up to the far end's level is echo
    learn(erl, LONG_NEAR, np.zeros(len(LONG_NEAR)))  # the caller talks, the agent is silent: nothing to learn
    assert erl.value == 1.0 and not erl.blocks


@pytest.mark.parametrize("gain_db", [-6.0, -20.0])
def test_echo_return_loss_learns_the_echo_level(gain_db: float) -> None:
    erl = EchoReturnLoss(FRAME, LEAD_FRAMES)
    learn(erl, echo_of(LONG_FAR, gain_db), LONG_FAR)
    assert db(erl.value) == pytest.approx(gain_db, abs=1.0)


def test_echo_return_loss_of_a_silent_microphone_is_tiny() -> None:
    erl = EchoReturnLoss(FRAME, LEAD_FRAMES)
    learn(erl, np.zeros(len(LONG_FAR)), LONG_FAR)  # a headset: the agent plays, the microphone hears nothing
    assert db(erl.value) < -60


def test_echo_return_loss_ignores_a_caller_talking_over_the_agent() -> None:
    # No echo (a headset): learned low while the caller listens, and it stays low
    # while the caller talks over the agent, or the caller's barge-in would be eaten.
    erl = EchoReturnLoss(FRAME, LEAD_FRAMES)
    learn(erl, np.zeros(4 * RATE), LONG_FAR[: 4 * RATE])
    values = learn(erl, LONG_NEAR, LONG_FAR)
    assert max(db(v) for v in values) < -60
    # With an echo at -10 dB and the caller 6 dB over it half of the time, it stays at the echo's level.
    erl = EchoReturnLoss(FRAME, LEAD_FRAMES)
    learn(erl, echo_of(LONG_FAR, -10), LONG_FAR)
    talking = np.where((np.arange(len(LONG_FAR)) // (3 * RATE)) % 2 == 1, LONG_NEAR * 10 ** (-4 / 20), 0.0)
    values = learn(erl, echo_of(LONG_FAR, -10) + talking, LONG_FAR)
    assert max(db(v) for v in values) == pytest.approx(-10, abs=1.0)


def test_echo_return_loss_follows_a_louder_echo_path_within_three_seconds() -> None:
    erl = EchoReturnLoss(FRAME, LEAD_FRAMES)
    learn(erl, echo_of(LONG_FAR, -20), LONG_FAR)
    values = learn(erl, echo_of(LONG_FAR, -6), LONG_FAR)  # the caller turns the speaker up
    settled = next(i for i, v in enumerate(values) if abs(db(v) + 6) <= 1.0)
    assert settled * 10 <= 3000, f"{settled * 10} ms"  # four accepted blocks move the median


@pytest.mark.parametrize("gain_db", [-6.0, -20.0])
def test_the_frontend_learns_the_echo_level_of_the_call(gain_db: float) -> None:
    # The first estimator averaged mic/far ratios over frames the canceller
    # handled well and came out 3-4 dB low (-9.6 dB for this -6 dB path, 3-6 dB
    # low in rooms); the suppressor then took echo peaks for a caller talking.
    fe, _, _ = echo_run(0.15, gain_db, FrontendConfig())
    assert db(fe.erl.value) == pytest.approx(gain_db, abs=1.0)


def test_the_residual_suppressor_holds_a_loud_echo_even_if_the_canceller_lets_all_of_it_through() -> None:
    # The canceller's worst case (a fresh state at a turn onset, a moved path):
    # its output is its input. Learning from the microphone and the reference
    # alone, the suppressor still keeps a -6 dB echo from starting a turn in the
    # server's VAD, and a caller who talks over it 10 dB louder still starts one.
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    mic = echo_of(LONG_FAR, -6.0)
    barge_in = 8 * RATE
    mic[barge_in : barge_in + len(NEAR)] += NEAR * 10 ** (4 / 20)
    mic = np.round(mic).astype(np.int16)
    ahead = int(EARLY_ECHO_S * RATE)  # the far end as far ahead of the reference as the suppressor looks
    far = np.concatenate([LONG_FAR, np.zeros(ahead)]).astype(np.int16)
    out = np.concatenate([
        fe._suppress_residual(mic[i : i + FRAME], mic[i : i + FRAME], far[i : i + FRAME], far[i + ahead : i + ahead + FRAME])
        for i in range(0, len(mic) // FRAME * FRAME, FRAME)
    ])  # fmt: skip
    started = [e.audio_start_ms + VadConfig().prefix_padding_ms for e in EnergyVad(VadConfig()).process(out) if isinstance(e, SpeechStarted)]
    talking_ms = (barge_in * 1000 // RATE, (barge_in + len(NEAR)) * 1000 // RATE)
    assert all(talking_ms[0] <= t <= talking_ms[1] for t in started), f"turns at {started} ms, the caller talked {talking_ms}"
    assert started and started[0] - talking_ms[0] <= 300, f"the caller's turn started at {started} ms"


class _TransparentCanceller:
    """The canceller's worst case as a test double: it lets everything through."""

    def set_stream_delay_ms(self, ms: int) -> None:
        pass

    def process_reverse_stream(self, frame: rtc.AudioFrame) -> None:
        pass

    def process_stream(self, frame: rtc.AudioFrame) -> None:
        pass


@pytest.mark.parametrize("delay_s", [0.15, 0.45])  # the default lag is 0.30 s: an echo early or late, not yet located
def test_a_leaking_canceller_starts_no_turn_from_the_first_words_on(delay_s: float) -> None:
    fe = AudioFrontend(FrontendConfig(noise_suppression=False), rate=RATE, clock=lambda: 0.0)
    fe._new_apm = _TransparentCanceller  # type: ignore[method-assign,assignment]
    fe._apm = _TransparentCanceller()  # type: ignore[assignment]
    fe.push_far(LONG_FAR.astype(np.int16), at=0.0)
    d = int(delay_s * RATE)
    mic = np.zeros(len(LONG_FAR) + d)
    mic[d:] = LONG_FAR * 10 ** (-6 / 20)
    out = run(fe, np.round(mic).astype(np.int16))
    started = [e.audio_start_ms for e in EnergyVad(VadConfig()).process(out) if isinstance(e, SpeechStarted)]
    assert fe.lag_s == pytest.approx(delay_s, abs=0.02)  # located on the way
    assert started == [], f"the echo started turns at {started} ms"


# ---------------------------------------------------------------- known bugs (strict: a fix makes these fail)


def test_lag_holds_when_the_caller_answers_the_agent() -> None:
    far = FAR[: 3 * RATE]
    d = int(0.15 * RATE)
    start = d + len(far) + int(0.3 * RATE)  # the caller answers 300 ms after the echo ends
    mic = np.zeros(start + len(NEAR) + RATE // 2)
    mic[d : d + len(far)] = far * 0.5
    mic[start : start + len(NEAR)] += NEAR
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    fe.push_far(far, at=0.0)
    run(fe, np.round(mic).astype(np.int16))
    moved = [lag for lag in fe.lag_estimates if abs(lag - 0.15) > 0.02]
    assert not moved, f"the lag moved to {moved} while the caller spoke"


def test_odd_chunk_sizes_give_the_same_stream_delayed() -> None:
    mic = NEAR[: RATE]
    reference = run(AudioFrontend(HPF_ONLY, rate=RATE, clock=lambda: 0.0), mic, chunk=FRAME)
    odd = run(AudioFrontend(HPF_ONLY, rate=RATE, clock=lambda: 0.0), mic, chunk=100)
    n = len(odd)
    delays = [s for s in range(FRAME + 1) if np.array_equal(odd[FRAME + s : n], reference[FRAME : n - s])]
    assert delays, "the output is not a delayed copy of the 10 ms result"


def test_noise_suppression_sends_silence_while_it_learns_the_noise() -> None:
    from agent.audio.frontend import NS_WARMUP_S, AudioFrontend, FrontendConfig

    rate = 24_000
    noise = (np.random.default_rng(3).standard_normal(rate) * 800).astype(np.int16)  # 1 s at about -32 dBFS
    out = AudioFrontend(FrontendConfig(echo_cancellation=False), rate=rate).process_near(noise, at=1.0)
    warm = int(NS_WARMUP_S * rate)
    assert not out[:warm].any()
    assert out[warm + rate // 10 :].any()
    bare = AudioFrontend(FrontendConfig(echo_cancellation=False, noise_suppression=False), rate=rate).process_near(noise, at=1.0)
    assert bare[rate // 50 : warm].any()  # without noise suppression nothing is held back


# ---------------------------------------------------------------- a noisy line: the suppressor's first seconds

LINE_NOISE_DBFS = -32.0  # the room test's noisy line, 8 dB over the server VAD's -40 dBFS


def noisy_line(seconds: float, dbfs: float = LINE_NOISE_DBFS, seed: int = 11) -> np.ndarray:
    """Steady room noise as the test caller makes it (agent/testing/caller.py): white noise
    through a 4-tap moving average, at ``dbfs`` RMS."""
    n = int(seconds * RATE)
    white = np.random.default_rng(seed).standard_normal(n + 3)
    noise = np.convolve(white, np.ones(4) / 4, mode="valid")[:n]
    return (noise / 0.5 * 32768 * 10 ** (dbfs / 20)).astype(np.int16)


def with_dropout(line: np.ndarray, at_s: float) -> np.ndarray:
    """``line`` with a receive-side dropout at ``at_s``, shaped like the one in the room trace
    of the failed run: the jitter buffer's concealment fades out over 60 ms (-36 to -111 dBFS),
    then 70 ms of nothing, then the line is back."""
    x = line.copy()
    a, fade, gap = int(at_s * RATE), int(0.06 * RATE), int(0.07 * RATE)
    x[a : a + fade] = (x[a : a + fade] * np.exp(-np.arange(fade) / (fade / 8))).astype(np.int16)
    x[a + fade : a + fade + gap] = 0
    return x


def frame_dbfs(pcm: np.ndarray) -> np.ndarray:
    frames = pcm[: len(pcm) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    return 20 * np.log10(np.maximum(np.sqrt(np.mean(frames**2, axis=1)) / 32768, 1e-10))


def longest_run(mask: np.ndarray) -> int:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def vad_onsets_ms(out: np.ndarray) -> list[int]:
    """Where the server VAD (agent/realtime/vad.py) hears speech begin, without its prefix padding."""
    cfg = VadConfig(prefix_padding_ms=0)
    return [e.audio_start_ms for e in EnergyVad(cfg).process(out) if isinstance(e, SpeechStarted)]


def test_a_noisy_line_alone_passes_the_suppressor_under_the_turn_threshold() -> None:
    out = run(AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0), noisy_line(4.0))
    assert longest_run(frame_dbfs(out) > -40) == 0


@pytest.mark.parametrize("at_s", [0.05, 0.15, 1.0, 1.7, 2.5])
def test_a_dropout_while_the_suppressor_learns_starts_no_turn(at_s: float) -> None:
    # In the failed room run the caller's line dropped out 50 ms into the call (the
    # worker's jitter buffer ran dry under CPU load) and the suppressor, still
    # learning, took the dropout for the line's noise floor: the noise then passed
    # it at -35 dBFS for 1.5 s, from the end of the warm-up on.
    out = run(AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0), with_dropout(noisy_line(4.5), at_s))
    loud = frame_dbfs(out) > -40
    assert longest_run(loud) < 6, f"{int(loud.sum())} frames over -40 dBFS, from {np.flatnonzero(loud)[0] * 10} ms"
    assert vad_onsets_ms(out) == []


@pytest.mark.parametrize("dropout", [False, True])
def test_a_caller_who_speaks_early_on_a_noisy_line_is_heard(dropout: bool) -> None:
    # "Hello?" 0.5 s into the call, after the warm-up (and a dropout at 0.15 s).
    line = with_dropout(noisy_line(2.5), 0.15) if dropout else noisy_line(2.5)
    mic = line.astype(np.int32)
    hello = int(0.5 * RATE)
    mic[hello : hello + len(NEAR[: RATE // 2])] += NEAR[: RATE // 2]
    out = run(AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0), np.clip(mic, -32768, 32767).astype(np.int16))
    onsets = vad_onsets_ms(out)
    assert onsets and 500 <= onsets[0] <= 560, onsets


@pytest.mark.parametrize("over_noise", [False, True])
def test_pauses_in_speech_are_not_dropouts(over_noise: bool) -> None:
    # A fresh suppressor (and canceller) for every pause would cost the caller's words.
    for mic in (FAR, NEAR):
        if over_noise:
            mic = np.clip(noisy_line(len(mic) / RATE).astype(np.int32) + mic, -32768, 32767).astype(np.int16)
        fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
        run(fe, mic)
        assert fe.dropouts.count == 0


def test_a_dropout_is_counted_once() -> None:
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    run(fe, with_dropout(noisy_line(2.0), 1.0))
    assert fe.dropouts.count == 1


# ---------------------------------------------------------------- a line without echo


def two_turns(mic_turn2: np.ndarray, turn_s: float = 3.5) -> tuple[AudioFrontend, np.ndarray]:
    """Agent turn 1 (3 s, a greeting) plays from 0 to a silent microphone (a headset: no
    echo comes back); agent turn 2 plays from ``turn_s`` over ``mic_turn2`` (from ``turn_s``)."""
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    mic = np.concatenate([np.zeros(int(turn_s * RATE), np.int16), mic_turn2])
    far = FAR[: 3 * RATE]
    pushes = [(k * 0.1, far[k * 2400 : (k + 1) * 2400]) for k in range(30)]
    pushes += [(turn_s + k * 0.1, FAR[k * 2400 : (k + 1) * 2400]) for k in range(len(FAR) // 2400)]
    outs = []
    for i in range(0, len(mic) // FRAME * FRAME, FRAME):
        now = (i + FRAME) / RATE
        while pushes and pushes[0][0] <= now:
            at, pcm = pushes.pop(0)
            fe.push_far(pcm, at=at)
        outs.append(fe.process_near(mic[i : i + FRAME], at=now))
    return fe, np.concatenate(outs)


def test_a_caller_without_echo_is_heard_at_once_over_the_agent() -> None:
    # A fresh WebRTC canceller fed a loud reference suppresses the near end for its
    # first seconds even when no echo comes back: the turn detector heard this
    # caller 0.8 s late (a 1 s barge-in into a fresh agent turn), so the agent
    # talked over them; stock livekit-agents, with no canceller, hears them at once.
    barge_s = 1.0
    fe, out = two_turns(np.concatenate([np.zeros(int(barge_s * RATE), np.int16), NEAR]))
    assert fe.echo_free
    onsets = vad_onsets_ms(out)
    alone = vad_onsets_ms(NEAR)[0]  # where the detector finds the caller's speech with no agent at all
    expected = int((3.5 + barge_s) * 1000) + alone
    assert onsets, "the caller talking over the agent was never heard"
    assert expected <= onsets[0] <= expected + 60, f"heard at {onsets[0]} ms, spoke at {expected} ms"
    assert fe.turns == 2


def test_an_echo_that_appears_mid_call_is_cancelled_again() -> None:
    # The caller puts the headset down and talks on the speaker: the echo of agent
    # turn 2 comes back at -6 dB, 150 ms late. Until the lag estimator finds it
    # (its first window, about 0.5 s) the echo passes: one turn may start there,
    # none after. Without the estimator's exit the echo started turns for 2.5 s.
    fe, out = two_turns(echo_scene(0.15, -6.0))
    assert not fe.echo_free
    assert db(fe.erl.value) == pytest.approx(-6.0, abs=1.5)
    onsets = vad_onsets_ms(out)
    assert len(onsets) <= 1 and all(o <= 3500 + 1000 for o in onsets), onsets


def _reference_fed_dbfs(phone: bool, freq: float) -> float:
    """The level of the reference the canceller is fed for 1 s of a tone the agent plays."""
    now = 0.0
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: now)
    fe.on_phone_line(phone)
    fe.trace = []
    t = np.arange(RATE) / RATE
    tone = np.round(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    for i in range(0, RATE, RATE // 10):
        fe.push_far(tone[i : i + RATE // 10], at=i / RATE)
    for i in range(0, RATE, RATE // 100):
        now = (i + RATE // 100) / RATE
        fe.process_near(np.zeros(RATE // 100, np.int16), at=now)
    fed = np.concatenate([frame[3] for frame in fe.trace]).astype(np.float64)
    return float(10 * np.log10(max(np.mean(fed**2), 1e-12) / 32768**2))


def test_for_a_caller_on_a_phone_line_the_reference_keeps_only_the_telephone_band() -> None:
    # The echo of a phone caller can hold only what G.711 carries (300-3400 Hz)
    assert _reference_fed_dbfs(False, 6000) > -20
    assert _reference_fed_dbfs(True, 6000) < -60  # above the band: gone from the reference
    assert abs(_reference_fed_dbfs(True, 1000) - _reference_fed_dbfs(False, 1000)) < 0.5  # in the band: as it was


# ---------------------------------------------------------------- a stalled event loop


def test_a_stalled_event_loop_lets_no_echo_through() -> None:
    """The frames of a -6 dB, 300 ms echo handled by a loop that stalls 300-450 ms
    every 1.5 s: without arrival times told from the stream, the reference the
    canceller and the suppressor read is off by up to the stall (offline, 1-8
    echo turns per 20 s; bench/frontend_stalls.py)."""
    far = LONG_FAR.astype(np.int16)
    d = int(0.3 * RATE)
    mic = np.zeros(len(far) + d + RATE // 2)
    mic[d : d + len(far)] = far * 10 ** (-6 / 20)
    mic = np.round(mic).astype(np.int16)
    frames = len(mic) // FRAME
    stalls = [(1.5 * i + 1.0, 1.5 * i + 1.0 + (0.3 if i % 2 else 0.45)) for i in range(int(frames * 0.01 / 1.5))]
    _, handled = stalled_handling(frames, stalls)
    times = iter(handled)
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: next(times))
    fe.push_far(far, at=0.0)
    out = np.concatenate([fe.process_near(mic[k * FRAME : (k + 1) * FRAME]) for k in range(frames)])
    started = [e.audio_start_ms for e in EnergyVad(VadConfig()).process(out) if isinstance(e, SpeechStarted)]
    assert started == [], f"the echo started turns at {started} ms"


@pytest.mark.parametrize("shorter_s", [0.12, 0.2])
def test_an_echo_path_shorter_at_the_next_agent_turn_starts_no_turn(shorter_s: float) -> None:
    """The echo path was 480 ms through the agent's first turn (the lag estimator
    followed it) and is shorter at the next turn, after a silence (a receiver's
    jitter buffer drained): the onset of its echo arrives before the reference
    fed says the far end plays. Seen in a room trace: 120 ms shorter, one echo
    turn."""
    first, second = LONG_FAR[: 5 * RATE], speech_like(3.0, seed=11).astype(np.float64)
    d1, d2, t2 = 0.48, 0.48 - shorter_s, 7.0
    mic = np.zeros(int((t2 + 4.0) * RATE))
    mic[int(d1 * RATE) : int(d1 * RATE) + len(first)] += first * 10 ** (-6 / 20)
    mic[int((t2 + d2) * RATE) : int((t2 + d2) * RATE) + len(second)] += second * 10 ** (-6 / 20)
    mic = np.round(mic).astype(np.int16)
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    fe.push_far(first.astype(np.int16), at=0.0)
    out = []
    for k in range(len(mic) // FRAME):
        t = (k + 1) * FRAME / RATE
        if k == int(t2 * 100):
            fe.push_far(second.astype(np.int16), at=t2)
        out.append(fe.process_near(mic[k * FRAME : (k + 1) * FRAME], at=t))
    started = [e.audio_start_ms for e in EnergyVad(VadConfig()).process(np.concatenate(out)) if isinstance(e, SpeechStarted)]
    assert fe.turns == 2 and fe.lag_s == pytest.approx(d2, abs=0.02)  # the estimator found the new path (later)
    assert started == [], f"the echo started turns at {started} ms"


@pytest.mark.parametrize("longer_to_s", [0.43, 0.5])
def test_an_echo_path_that_grows_near_the_end_of_a_turn_starts_no_turn(longer_to_s: float) -> None:
    """The echo path grows from 300 ms (a receiver's jitter buffer stretching)
    0.7 s before the agent's turn ends, too late for the lag estimator to follow
    it in time: the echo of the last words comes back after the reference says
    the far end stopped. Seen in a room trace: 130 ms longer near the end of the
    greeting, one echo turn."""
    far = speech_like(5.0, seed=2)
    switch = int(4.3 * RATE)
    mic = np.zeros(int(7.0 * RATE))
    a, b = int(0.3 * RATE), int(longer_to_s * RATE)
    mic[a : a + switch] += far[:switch] * 10 ** (-6 / 20)
    mic[b + switch : b + len(far)] += far[switch:] * 10 ** (-6 / 20)
    mic = np.round(mic).astype(np.int16)
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    fe.push_far(far, at=0.0)
    out = run(fe, mic)
    started = [e.audio_start_ms for e in EnergyVad(VadConfig()).process(out) if isinstance(e, SpeechStarted)]
    assert started == [], f"the echo started turns at {started} ms"
