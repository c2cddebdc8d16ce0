"""Measure the audio front-end (:mod:`agent.audio.frontend`) on synthetic scenes.

Run ``.venv/bin/python bench/frontend_measure.py`` (about 15 s on two cores) or
``--quick`` (one echo path, one noise level). It prints a table and
``[figure] ...`` lines with the targets beside them; it asserts nothing.

**Scenes.** Speech comes from espeak-ng (as the local server's ``Synthesizer`` speaks, int16 24 kHz): the
agent's far end in one voice ("marin"), the caller's near end in another
("cedar"), different sentences. The caller's microphone hears the echo of
what the agent plays, delayed by 50, 150 or 300 ms and attenuated by 6 or
20 dB, dry or through a synthetic room (an exponentially decaying noise
impulse response, 150 ms, 60 dB decay, unit energy, fixed seed). Noise
scenes add stationary pink-ish noise (spectrum 1/f above 200 Hz, flat
below; fixed seed) over the whole scene at 5, 10 or 20 dB below the
near-end active speech level (mean power of the 10 ms frames within 40 dB
of the loudest); the echo scenes are otherwise silent (digital zero).

``--phone`` puts the caller on a G.711 call, as through LiveKit SIP: the
agent's voice reaches the phone's speaker through an 8 kHz μ-law telephone
line (300-3400 Hz, :func:`agent.sound.g711.phone_line`), and the phone's
microphone signal (the echo, the caller, the noise) comes back through the
same line; the front-end still gets the agent's own wideband audio as its
reference (cut to the telephone band, as the worker does for a phone caller:
``AudioFrontend.on_phone_line``; ``--wide-reference`` leaves it wideband), and
the near end is measured against the caller's speech through the line (the
most a phone lets through).

Each scene is one microphone signal, in this order:

1. *far end only*: agent turn 1 plays; the microphone hears its echo;
2. *near end only*: the caller speaks, the agent is silent;
3. *double talk*: agent turn 2 plays; 1 s after its echo starts the caller
   speaks over it (the first second is the *turn-2 onset*, echo only);
4. *noise only*: 2 s with neither speech (background noise if any).

**Clock.** The scene runs on a simulated clock, as a room would deliver it:
the microphone in 10 ms chunks (``--chunk-ms``), ``process_near(at=t)`` with
``t`` the arrival of the chunk's last sample; the agent's audio as a realtime
player hands it over, in 100 ms chunks, each pushed (``push_far(at=...)``)
when the clock reaches its play time. Sample ``i`` of the microphone
arrives at ``i / 24000`` s, and the echo of the far-end sample that plays
at time ``p`` arrives at ``p + delay``.

**Figures** (per scene and front-end configuration):

- *ERLE* (echo return loss enhancement, dB) on the far-end-only part:
  ``10 log10(P_mic / P_out)`` per 100 ms window, over the windows whose
  microphone power is within 30 dB of the loudest; the first 0.5 s after
  the echo starts is skipped (convergence, and the lag estimator's first
  estimate); the output power is floored at 1/12 LSB^2 (int16 rounding
  noise), which caps a window at about 101 dB. Median (``p50``) and 10th
  percentile (``p10``, the worst windows). ``t2`` is the median over the
  turn-2 onset (the first second of echo of the second agent turn, which
  starts from a fresh canceller), with nothing skipped. In noise scenes the
  noise counts as echo, so ERLE is limited by the noise left in the output.
- *Near-end preservation* on the near-end-only part: the processed signal
  at the best alignment within +-40 ms (``shift``: the output comes 16-24 ms
  after the reference, depending on what is on) against a reference: the
  correlation coefficient and the segmental SNR (mean over 20 ms frames
  within 40 dB of the loudest reference frame of
  ``10 log10(sum s^2 / sum (s - y)^2)``, each frame clamped to [-10, 35]
  dB). The reference is the clean near-end speech passed through an APM
  with only its high-pass filter on (``ref``): at 24 kHz the APM's band
  splitting is dispersive (an impulse comes out with a peak of 0.32 and only
  57% of its energy within +-5 samples of it), so even a high-pass-only APM
  scores a correlation of ~0.69 against the clean signal itself, shown as
  ``raw``; every configuration here has that filter, so against ``ref`` a
  transparent front-end scores 1. ``DT mic>out`` is the correlation over the caller's
  speech in the double-talk part: the microphone against the clean near
  end, the output against ``ref``.
- *Barge-in* (ms): where the local server's turn detector
  (``agent.sound.vad.EnergyVad``, no prefix padding) first hears the
  caller in the double-talk part, after the point where it hears the same
  speech alone; "-" when it never does. The headset scene (``-infdB``:
  no echo comes back, as from a browser or a headset) is the common case;
  a front-end that suppresses the caller there costs every barge-in.
- *Noise reduction* (dB): ``10 log10(P_mic / P_out)`` over the noise-only
  part after its first 0.2 s (echo tails).
- *CPU*: ``frontend.cpu_s / frontend.frames`` (thread time spent in
  ``process_near``, lag estimation included) per 10 ms frame, and that as a
  share of one core (10 ms of audio per frame).

*Lag path*: the front-end's echo-lag estimate, starting from its default,
and each value it moved to (every move starts a fresh canceller);
``moves`` counts them. At most one move (the default to the true lag) is
expected.

Configurations: ``full`` (the default ``FrontendConfig``), ``aec-off`` (echo
cancellation off) and ``ns-off`` (noise suppression off).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from livekit import rtc

from agent.audio.frontend import DEFAULT_LAG_S, FRAME_MS, LAG_TOLERANCE_S, AudioFrontend, FrontendConfig
from agent.sound.espeak import OPENAI_VOICES, speak
from agent.sound.g711 import phone_line
from agent.sound.resample import resample
from agent.sound.vad import EnergyVad, SpeechStarted, VadConfig

RATE = 24000
SEED = 1729
FAR_VOICE = "marin"
NEAR_VOICE = "cedar"
FAR_TEXTS = (
    "Once upon a time there was a small coffee shop at the corner of a quiet street, "
    "and every morning the owner opened the door.",
    "The weather will be sunny in the afternoon, with a light wind from the west.",
)
NEAR_TEXT = "Could you please tell me when my order will arrive at the house?"

CONFIGS: dict[str, FrontendConfig] = {
    "full": FrontendConfig(),
    "aec-off": FrontendConfig(echo_cancellation=False),
    "ns-off": FrontendConfig(noise_suppression=False),
}

REVERB_S = 0.15
GAP_S = 0.3
ONSET_S = 1.0  # turn-2 echo alone before the caller barges in
NOISE_ONLY_S = 2.0
PLAYER_CHUNK_S = 0.1
ERLE_WINDOW_S = 0.1
ERLE_SKIP_S = 0.5
ERLE_ACTIVE_DB = 30.0
NOISE_SKIP_S = 0.2
MAX_SHIFT_S = 0.04  # the APM delays 6-14 ms, 10 ms framing adds 10 ms
SEG_FRAME_S = 0.02
QUANT_POWER = 1.0 / 12.0

TARGET_ERLE_DB = 25.0
TARGET_CORE_PCT = 5.0
TARGET_NEAR_CORR = 0.9  # our reading of "near-end speech preserved"


# ---------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Scene:
    delay_s: float
    atten_db: float
    reverb: bool
    snr_db: float | None  # None: no background noise

    @property
    def name(self) -> str:
        room = "room" if self.reverb else "dry"
        noise = "quiet" if self.snr_db is None else f"snr{self.snr_db:g}"
        return f"{self.delay_s * 1000:.0f}ms/{self.atten_db:g}dB/{room}/{noise}"


@dataclass(frozen=True)
class Speech:
    far1: np.ndarray
    far2: np.ndarray
    near: np.ndarray


@dataclass(frozen=True)
class Layout:
    """One scene's microphone signal, its clean parts, and where each segment is (samples)."""

    mic: np.ndarray  # int16, what the front-end is given
    far_turns: tuple[tuple[int, np.ndarray], ...]  # (play start, int16 pcm)
    near_only: int  # start of the near-end-only utterance
    near_dt: int  # start of the caller's speech in the double talk
    near: np.ndarray  # clean near-end utterance (float)
    near_ref: np.ndarray  # the same through a high-pass-only APM (float)
    echo1: tuple[int, int]  # turn-1 echo span
    onset2: tuple[int, int]  # turn-2 echo before the caller speaks
    noise_only: tuple[int, int]
    phone: bool = False  # a phone scene: the front-end is told the caller is on a telephone line


def synthesize_speech() -> Speech:
    def say(text: str, voice: str) -> np.ndarray:
        # The local server's voices, at its speaking rate and its 24 kHz.
        pcm, rate = speak(text, voice=OPENAI_VOICES[voice], words_per_minute=175)
        return resample(pcm, rate, RATE)

    return Speech(say(FAR_TEXTS[0], FAR_VOICE), say(FAR_TEXTS[1], FAR_VOICE), say(NEAR_TEXT, NEAR_VOICE))


def room_response(rate: int = RATE, length_s: float = REVERB_S, seed: int = SEED) -> np.ndarray:
    """Exponentially decaying noise, 60 dB down at ``length_s``, unit energy."""
    n = int(length_s * rate)
    rng = np.random.default_rng(seed)
    envelope = np.exp(-np.arange(n) / rate * np.log(1000.0) / length_s)
    h = rng.standard_normal(n) * envelope
    return h / np.sqrt(np.sum(h**2))


def pinkish_noise(n: int, rate: int = RATE, seed: int = SEED) -> np.ndarray:
    """Unit-power noise with a 1/f power spectrum above 200 Hz, flat below."""
    rng = np.random.default_rng(seed + 1)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / rate)
    spectrum /= np.sqrt(np.maximum(f, 200.0))
    x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x**2))


def frame_powers(x: np.ndarray, frame: int) -> np.ndarray:
    n = len(x) // frame * frame
    return np.mean(x[:n].astype(np.float64).reshape(-1, frame) ** 2, axis=1)


def active_level(x: np.ndarray, rate: int = RATE, within_db: float = 40.0) -> float:
    """Mean power of the 10 ms frames within ``within_db`` of the loudest."""
    p = frame_powers(x, rate // 100)
    return float(np.mean(p[p >= p.max() * 10 ** (-within_db / 10)]))


def linear_reference(pcm: np.ndarray, rate: int = RATE) -> np.ndarray:
    """``pcm`` through an APM with only the high-pass filter: the linear part every configuration shares."""
    apm = rtc.AudioProcessingModule(high_pass_filter=True)
    frame = rate * FRAME_MS // 1000
    x = np.pad(pcm.astype(np.int16), (0, -len(pcm) % frame))
    out = []
    for i in range(0, len(x), frame):
        f = rtc.AudioFrame(x[i : i + frame].tobytes(), rate, 1, frame)
        apm.process_stream(f)
        out.append(np.frombuffer(f.data, dtype=np.int16))
    return np.concatenate(out)[: len(pcm)].astype(np.float64)


def echo_of(far: np.ndarray, scene: Scene, ir: np.ndarray) -> np.ndarray:
    x = far.astype(np.float64) * 10 ** (scene.atten_db / 20)
    return np.convolve(x, ir) if scene.reverb else x


def build_scene(scene: Scene, speech: Speech, rate: int = RATE, *, phone: bool = False) -> Layout:
    """``phone``: the caller is on a G.711 call (LiveKit SIP): the agent's voice
    reaches the phone's speaker through the telephone line, and the phone's
    microphone (echo, the caller, noise) comes back through it; the front-end
    still gets the agent's own wideband audio as its reference."""
    ir = room_response(rate)
    d = int(round(scene.delay_s * rate))
    gap = int(GAP_S * rate)
    heard1, heard2 = (phone_line(far, rate) for far in (speech.far1, speech.far2)) if phone else (speech.far1, speech.far2)
    echo1 = echo_of(heard1, scene, ir)
    echo2 = echo_of(heard2, scene, ir)
    near = speech.near.astype(np.float64)

    e1 = (d, d + len(echo1))  # turn 1 plays from 0
    near_only = e1[1] + gap
    play2 = near_only + len(near) + gap
    e2 = (play2 + d, play2 + d + len(echo2))
    near_dt = e2[0] + int(ONSET_S * rate)
    noise0 = max(e2[1], near_dt + len(near)) + gap
    total = noise0 + int(NOISE_ONLY_S * rate)

    mic = np.zeros(total)
    mic[e1[0] : e1[1]] += echo1
    mic[near_only : near_only + len(near)] += near
    mic[e2[0] : e2[1]] += echo2
    mic[near_dt : near_dt + len(near)] += near
    if scene.snr_db is not None:
        level = active_level(speech.near, rate) / 10 ** (scene.snr_db / 10)
        mic += pinkish_noise(total, rate) * np.sqrt(level)
    mic16 = np.clip(np.round(mic), -32768, 32767).astype(np.int16)
    near_heard = speech.near
    if phone:
        mic16 = phone_line(mic16, rate)
        near_heard = phone_line(speech.near, rate)  # the best the line lets through: what preservation is measured against
        near = near_heard.astype(np.float64)
    return Layout(
        mic=mic16,
        far_turns=((0, speech.far1), (play2, speech.far2)),
        near_only=near_only,
        near_dt=near_dt,
        near=near,
        near_ref=linear_reference(near_heard, rate),
        echo1=e1,
        onset2=(e2[0], near_dt),
        noise_only=(noise0, total),
        phone=phone,
    )


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class Processed:
    out: np.ndarray  # int16, same length as the scene's microphone signal
    lag_path_s: tuple[float, ...]  # the default lag, then each value the estimate moved to
    cpu_ms_per_frame: float


def player_chunks(layout: Layout, rate: int = RATE) -> list[tuple[int, np.ndarray]]:
    """The far end as a realtime player hands it over: (play start sample, chunk)."""
    step = int(PLAYER_CHUNK_S * rate)
    return [(start + i, pcm[i : i + step]) for start, pcm in layout.far_turns for i in range(0, len(pcm), step)]


def run_frontend(layout: Layout, config: FrontendConfig, chunk_ms: int = FRAME_MS, rate: int = RATE, *, phone: bool = False) -> Processed:
    now = 0.0
    fe = AudioFrontend(config, rate=rate, clock=lambda: now)
    fe.on_phone_line(phone)  # as the worker does for a SIP caller
    pushes = player_chunks(layout, rate)
    step = rate * chunk_ms // 1000
    n = len(layout.mic) // step * step
    out = np.zeros(len(layout.mic), np.int16)
    k = 0
    for i in range(0, n, step):
        now = (i + step) / rate
        while k < len(pushes) and pushes[k][0] / rate <= now:
            fe.push_far(pushes[k][1], at=pushes[k][0] / rate)
            k += 1
        out[i : i + step] = fe.process_near(layout.mic[i : i + step], at=now)
    cpu = fe.cpu_s / fe.frames * 1000 if fe.frames else 0.0
    path = lag_path(fe.lag_estimates) if config.echo_cancellation else ()
    return Processed(out, path, cpu)


def lag_path(estimates: Sequence[float]) -> tuple[float, ...]:
    """The lags in effect: the default, then each accepted estimate that moved it."""
    path = [DEFAULT_LAG_S]
    for lag in estimates:
        if abs(lag - path[-1]) > LAG_TOLERANCE_S:
            path.append(lag)
    return tuple(path)


# ---------------------------------------------------------------- metrics


def erle_windows(mic: np.ndarray, out: np.ndarray, span: tuple[int, int], skip_s: float, rate: int = RATE) -> np.ndarray:
    """Per-window ERLE (dB) over ``span`` after ``skip_s``, on windows with echo."""
    a, b = span[0] + int(skip_s * rate), span[1]
    w = int(ERLE_WINDOW_S * rate)
    p_in = frame_powers(mic[a:b], w)
    p_out = frame_powers(out[a:b], w)
    if not len(p_in) or p_in.max() <= 0:
        return np.zeros(0)
    active = p_in >= p_in.max() * 10 ** (-ERLE_ACTIVE_DB / 10)
    return 10 * np.log10(p_in[active] / np.maximum(p_out[active], QUANT_POWER))


def best_shift(clean: np.ndarray, seg: np.ndarray, max_shift: int) -> int:
    """The shift ``s`` in [-max_shift, max_shift] maximising sum clean[i] * seg[max_shift + s + i]."""
    size = 1 << (len(seg) + len(clean)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(clean, size)), size)
    return int(np.argmax(corr[: 2 * max_shift + 1])) - max_shift


def aligned(clean: np.ndarray, signal: np.ndarray, start: int, rate: int = RATE) -> tuple[np.ndarray, int]:
    """The part of ``signal`` that best lines up with ``clean`` placed at ``start``, and the shift."""
    m = int(MAX_SHIFT_S * rate)
    seg = signal[max(0, start - m) : start + len(clean) + m].astype(np.float64)
    seg = np.pad(seg, (m - (start - max(0, start - m)), 0))
    seg = np.pad(seg, (0, max(0, len(clean) + 2 * m - len(seg))))
    s = best_shift(clean, seg, m)
    return seg[m + s : m + s + len(clean)], s


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    if not np.any(x) or not np.any(y):
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def segmental_snr(clean: np.ndarray, y: np.ndarray, rate: int = RATE) -> float:
    frame = int(SEG_FRAME_S * rate)
    p_s = frame_powers(clean, frame)
    p_e = frame_powers(clean - y, frame)
    active = p_s >= p_s.max() * 1e-4
    snr = 10 * np.log10(p_s[active] / np.maximum(p_e[active], 1e-9))
    return float(np.mean(np.clip(snr, -10.0, 35.0)))


@dataclass(frozen=True)
class Figures:
    scene: Scene
    config: str
    lag_path_ms: tuple[float, ...]
    erle_p50: float
    erle_p10: float
    erle_t2: float
    near_corr: float
    near_raw_corr: float
    near_segsnr: float
    near_shift_ms: float
    dt_corr_in: float
    dt_corr_out: float
    noise_reduction_db: float | None
    barge_ms: float | None
    cpu_ms: float

    @property
    def core_pct(self) -> float:
        return self.cpu_ms / FRAME_MS * 100

    @property
    def lag_moves(self) -> int:
        return max(0, len(self.lag_path_ms) - 1)


def vad_onsets(pcm: np.ndarray) -> list[int]:
    """Sample offsets at which the local server's turn detector hears speech begin."""
    events = EnergyVad(VadConfig(prefix_padding_ms=0)).process(pcm)
    return [e.audio_start_ms * RATE // 1000 for e in events if isinstance(e, SpeechStarted)]


def barge_in_ms(layout: Layout, out: np.ndarray) -> float | None:
    """How much later than the caller's speech alone the detector hears it over the agent."""
    alone = vad_onsets(layout.near)
    heard = [s for s in vad_onsets(out) if layout.near_dt <= s < layout.near_dt + len(layout.near)]
    if not alone or not heard:
        return None
    return (heard[0] - layout.near_dt - alone[0]) / RATE * 1000


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def measure(scene: Scene, layout: Layout, config_name: str, chunk_ms: int = FRAME_MS) -> Figures:
    p = run_frontend(layout, CONFIGS[config_name], chunk_ms, phone=layout.phone)
    w1 = erle_windows(layout.mic, p.out, layout.echo1, ERLE_SKIP_S)
    w2 = erle_windows(layout.mic, p.out, layout.onset2, 0.0)  # both empty without echo
    near_out, shift = aligned(layout.near_ref, p.out, layout.near_only)
    near_raw, _ = aligned(layout.near, p.out, layout.near_only)
    dt_in, _ = aligned(layout.near, layout.mic, layout.near_dt)
    dt_out, _ = aligned(layout.near_ref, p.out, layout.near_dt)
    nr: float | None = None
    if scene.snr_db is not None:
        a, b = layout.noise_only[0] + int(NOISE_SKIP_S * RATE), layout.noise_only[1]
        p_in = float(np.mean(layout.mic[a:b].astype(np.float64) ** 2))
        p_out = max(float(np.mean(p.out[a:b].astype(np.float64) ** 2)), QUANT_POWER)
        nr = 10 * np.log10(p_in / p_out)
    return Figures(
        scene=scene,
        config=config_name,
        lag_path_ms=tuple(lag * 1000 for lag in p.lag_path_s),
        erle_p50=_median(w1),
        erle_p10=float(np.percentile(w1, 10)) if len(w1) else float("nan"),
        erle_t2=_median(w2),
        near_corr=correlation(layout.near_ref, near_out),
        near_raw_corr=correlation(layout.near, near_raw),
        near_segsnr=segmental_snr(layout.near_ref, near_out),
        near_shift_ms=shift / RATE * 1000,
        dt_corr_in=correlation(layout.near, dt_in),
        dt_corr_out=correlation(layout.near_ref, dt_out),
        noise_reduction_db=nr,
        barge_ms=barge_in_ms(layout, p.out),
        cpu_ms=p.cpu_ms_per_frame,
    )


# ---------------------------------------------------------------- report

REFERENCE = Scene(0.15, -6.0, False, None)  # the issue's ERLE target is stated for this path
HEADSET = Scene(0.15, -np.inf, False, None)  # no echo comes back


def scenes(quick: bool) -> list[Scene]:
    if quick:
        return [HEADSET, REFERENCE, Scene(0.15, -6.0, False, 10.0)]
    grid = [Scene(d, a, r, None) for r in (False, True) for a in (-6.0, -20.0) for d in (0.05, 0.15, 0.30)]
    noisy = [Scene(0.15, -6.0, False, snr) for snr in (5.0, 10.0, 20.0)]
    return [HEADSET, *grid, *noisy]


HEADER = (
    f"{'scene':<26} {'config':<8} {'ERLE p50':>8} {'p10':>6} {'t2':>6} "
    f"{'corr':>6} {'raw':>5} {'segSNR':>6} {'shift':>5} {'DT mic>out':>10} {'barge':>5} {'NR':>5} {'ms/fr':>6} {'core%':>5} "
    f"{'moves':>5}  lag path (ms)"
)


def row(f: Figures) -> str:
    nr = "-" if f.noise_reduction_db is None else f"{f.noise_reduction_db:.1f}"
    barge = "-" if f.barge_ms is None else f"{f.barge_ms:.0f}"
    path = ">".join(f"{lag:.0f}" for lag in f.lag_path_ms) or "-"
    moves = str(f.lag_moves) if f.lag_path_ms else "-"
    return (
        f"{f.scene.name:<26} {f.config:<8} {f.erle_p50:>8.1f} {f.erle_p10:>6.1f} {f.erle_t2:>6.1f} "
        f"{f.near_corr:>6.3f} {f.near_raw_corr:>5.2f} {f.near_segsnr:>6.1f} {f.near_shift_ms:>5.1f} "
        f"{f.dt_corr_in:>5.2f}>{f.dt_corr_out:<4.2f} {barge:>5} {nr:>5} {f.cpu_ms:>6.3f} {f.core_pct:>5.2f} {moves:>5}  {path}"
    )


def verdict(ok: bool) -> str:
    return "meets target" if ok else "BELOW TARGET"


def erle_figures(results: list[Figures]) -> list[str]:
    lines: list[str] = []
    for f in results:
        if f.scene == REFERENCE:
            note = f"target >= {TARGET_ERLE_DB:g} dB, {verdict(f.erle_p50 >= TARGET_ERLE_DB)}" if f.config == "full" else "for comparison"
            lines.append(f"[figure] erle_median_db {f.scene.name} {f.config}: {f.erle_p50:.1f} ({note})")
    quiet_full = [f for f in results if f.config == "full" and f.scene.snr_db is None and f.scene != HEADSET]
    if quiet_full:
        worst = min(quiet_full, key=lambda f: f.erle_p50)
        lines.append(
            f"[figure] erle_median_db worst echo path, full: {worst.erle_p50:.1f} at {worst.scene.name} "
            f"(target >= {TARGET_ERLE_DB:g} dB, {verdict(worst.erle_p50 >= TARGET_ERLE_DB)})"
        )
        worst = min(quiet_full, key=lambda f: f.erle_p10)
        lines.append(f"[figure] erle_p10_db worst echo path, full: {worst.erle_p10:.1f} at {worst.scene.name}")
        worst = min(quiet_full, key=lambda f: f.erle_t2)
        lines.append(f"[figure] erle_turn2_onset_db worst echo path, full: {worst.erle_t2:.1f} at {worst.scene.name}")
    off = [f for f in results if f.config == "aec-off" and f.scene.snr_db is None and f.scene != HEADSET]
    if off:
        lines.append(f"[figure] erle_median_db aec-off, max over echo paths: {max(f.erle_p50 for f in off):.1f}")
    return lines


def lag_figures(results: list[Figures]) -> list[str]:
    runs = [f for f in results if f.lag_path_ms]
    if not runs:
        return []
    extra = [f for f in runs if f.lag_moves > 1]
    worst = max(runs, key=lambda f: f.lag_moves)
    wrong = [f for f in runs if abs(f.lag_path_ms[-1] - f.scene.delay_s * 1000) > LAG_TOLERANCE_S * 1000]
    return [
        f"[figure] lag_moves max: {worst.lag_moves} at {worst.scene.name} {worst.config} (at most 1 expected: default to true lag); "
        f"{len(extra)} of {len(runs)} runs moved more than once",
        f"[figure] lag_final_wrong: {len(wrong)} of {len(runs)} runs end with a lag more than "
        f"{LAG_TOLERANCE_S * 1000:.0f} ms off the true delay",
    ]


def near_figures(results: list[Figures]) -> list[str]:
    lines: list[str] = []
    for name in CONFIGS:
        runs = [f for f in results if f.config == name]
        if not runs:
            continue
        worst = min(runs, key=lambda f: f.near_corr)
        note = f"preserved if >= {TARGET_NEAR_CORR}, {verdict(worst.near_corr >= TARGET_NEAR_CORR)}"
        lines.append(f"[figure] near_corr min, {name}: {worst.near_corr:.3f} at {worst.scene.name} ({note})")
        lines.append(f"[figure] near_segsnr_db min, {name}: {min(f.near_segsnr for f in runs):.1f}")
        dt = min(runs, key=lambda f: f.dt_corr_out)
        lines.append(
            f"[figure] double_talk_corr min, {name}: {dt.dt_corr_out:.3f} (microphone {dt.dt_corr_in:.3f}) at {dt.scene.name}"
        )
    return lines


def barge_figures(results: list[Figures]) -> list[str]:
    lines: list[str] = []
    for name in CONFIGS:
        runs = [f for f in results if f.config == name]
        headset = [f for f in runs if f.scene == HEADSET]
        for f in headset:
            shown = "never heard" if f.barge_ms is None else f"{f.barge_ms:.0f} ms"
            lines.append(f"[figure] barge_in_late_ms headset (no echo), {name}: {shown}")
        echo = [f for f in runs if f.scene != HEADSET]
        if echo:
            late = [f.barge_ms for f in echo if f.barge_ms is not None]
            missed = len(echo) - len(late)
            worst = f"{max(late):.0f} ms" if late else "-"
            median = f"{float(np.median(late)):.0f} ms" if late else "-"
            lines.append(f"[figure] barge_in_late_ms with echo, {name}: median {median}, max {worst}, no onset within the caller's speech in {missed} of {len(echo)} (aec-off: the echo already holds a turn open)")
    return lines


def noise_and_cpu_figures(results: list[Figures]) -> list[str]:
    lines: list[str] = []
    for f in results:
        if f.noise_reduction_db is not None:
            lines.append(f"[figure] noise_reduction_db {f.scene.name} {f.config}: {f.noise_reduction_db:.1f}")
    for name in CONFIGS:
        runs = [f for f in results if f.config == name]
        if runs:
            mean = float(np.mean([f.cpu_ms for f in runs]))
            peak = max(f.cpu_ms for f in runs)
            pct = peak / FRAME_MS * 100
            lines.append(
                f"[figure] cpu_ms_per_10ms_frame {name}: mean {mean:.3f}, max {peak:.3f} "
                f"({pct:.2f}% of one core; target < {TARGET_CORE_PCT:g}%, {verdict(pct < TARGET_CORE_PCT)})"
            )
    return lines


def summary(results: list[Figures]) -> list[str]:
    return erle_figures(results) + lag_figures(results) + near_figures(results) + barge_figures(results) + noise_and_cpu_figures(results)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/frontend_measure.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one echo path (150 ms, -6 dB, dry), one noise level")
    parser.add_argument("--chunk-ms", type=int, default=FRAME_MS, help="microphone chunk size (default 10)")
    parser.add_argument(
        "--phone", action="store_true", help="the caller on a G.711 phone call: echo and microphone through an 8 kHz μ-law line (agent.sound.g711)"
    )
    parser.add_argument(
        "--wide-reference", action="store_true", help="with --phone: do not tell the front-end (its reference stays wideband, as before on_phone_line)"
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    speech = synthesize_speech()
    print(
        f"far end: {len(speech.far1) / RATE:.2f} s + {len(speech.far2) / RATE:.2f} s ({FAR_VOICE}); "
        f"near end: {len(speech.near) / RATE:.2f} s ({NEAR_VOICE}); microphone in {args.chunk_ms} ms chunks"
        + ("; phone call: G.711 μ-law at 8 kHz, 300-3400 Hz, both ways" if args.phone else "")
    )
    print(
        f"ERLE: 100 ms windows within {ERLE_ACTIVE_DB:g} dB of the loudest, first {ERLE_SKIP_S:g} s of echo skipped; "
        f"t2: first {ONSET_S:g} s of turn-2 echo, nothing skipped"
    )
    print("near end: corr and segSNR against the clean speech through a high-pass-only APM (raw: against the clean speech)")
    print(HEADER)
    results: list[Figures] = []
    for scene in scenes(args.quick):
        layout = build_scene(scene, speech, phone=args.phone)
        if args.wide_reference:
            layout = dataclasses.replace(layout, phone=False)
        for name in CONFIGS:
            f = measure(scene, layout, name, args.chunk_ms)
            results.append(f)
            print(row(f), flush=True)
    print()
    for line in summary(results):
        print(line)
    print(f"({len(results)} runs in {time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
