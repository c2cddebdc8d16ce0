"""The echo canceller when the job's event loop stalls: arrival times told from
the clock alone against :class:`agent.audio.frontend.StreamClock`.

Run ``.venv/bin/python bench/frontend_stalls.py`` (about 25 s on one core).
It prints a table and ``[figure]`` lines; it asserts nothing.

**Scene.** The agent speaks for 20 s (espeak-ng, the local server's "marin"
voice, the three sentences of ``bench/frontend_measure.py`` repeated); the
caller's microphone hears it ``delay`` later, 6 dB down, and nothing else. The
microphone's 10 ms frames arrive every 10 ms, but are *handled* as a stalled
event loop handles them: every 1.4-2.0 s the loop stands still for ``stall``
seconds, and the frames that arrived meanwhile are handled in a burst when it
runs again (0.3 ms each). livekit-agents' loop monitor logged stalls of
130-460 ms in job processes during fresh-clone test runs on the 2-core machine.

**Stamps.** ``clock``: each frame stamped with the time it was handled (what
``process_near`` did without ``at`` until 2026-12-07); ``stream``: the
front-end's own ``StreamClock`` (what it does now); ``true``: the arrival
times, for reference.

**Figures.** Turns the local server's VAD (-40 dBFS, 60 ms) starts on the
front-end's output (every one is the agent answering its own echo), and the
10 ms frames of output over -40 dBFS.
"""

from __future__ import annotations

import numpy as np
from frontend_measure import RATE, synthesize_speech  # bench/, beside this script

from agent.audio.frontend import AudioFrontend, FrontendConfig
from agent.sound.stream_clock import StreamClock, handled_in_bursts
from agent.sound.vad import EnergyVad, SpeechStarted, VadConfig

FRAME = RATE // 100
SCENE_S = 20.0
DELAYS_S = (0.25, 0.3, 0.4)
STALLS_S = (0.0, 0.15, 0.3, 0.45, 0.9)


def far_speech() -> np.ndarray:
    speech = synthesize_speech()
    one = np.concatenate([speech.far1, np.zeros(RATE // 4, np.int16), speech.far2, np.zeros(RATE // 4, np.int16), speech.near])
    return np.tile(one, int(SCENE_S * RATE / len(one)) + 1)[: int(SCENE_S * RATE)]


def handling_times(frames: int, stall_s: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(arrival, handled) of each 10 ms frame's last sample."""
    rng = np.random.default_rng(seed)
    arrival = (np.arange(frames) + 1) * FRAME / RATE
    stalls = []
    at = 1.7
    while at < arrival[-1]:
        stalls.append((at, at + stall_s))
        at += stall_s + rng.uniform(1.4, 2.0)
    return arrival, handled_in_bursts(arrival, stalls)


def run(far: np.ndarray, delay_s: float, stall_s: float, stamps: str) -> tuple[int, int]:
    d = int(delay_s * RATE)
    mic = np.zeros(len(far) + d + RATE // 2)
    mic[d : d + len(far)] = far * 10 ** (-6 / 20)
    mic = np.round(mic).astype(np.int16)
    fe = AudioFrontend(FrontendConfig(), rate=RATE, clock=lambda: 0.0)
    fe.push_far(far, at=0.0)
    frames = len(mic) // FRAME
    arrival, handled = handling_times(frames, stall_s)
    clock = StreamClock(RATE)
    out = []
    for k in range(frames):
        if stamps == "true":
            t = arrival[k]
        elif stamps == "clock":
            t = handled[k]
        else:
            t = clock.stamp(FRAME, handled[k])
        out.append(fe.process_near(mic[k * FRAME : (k + 1) * FRAME], at=t))
    pcm = np.concatenate(out)
    turns = sum(isinstance(e, SpeechStarted) for e in EnergyVad(VadConfig()).process(pcm))
    power = (pcm.astype(np.float64).reshape(-1, FRAME) ** 2).mean(axis=1)
    loud = int((10 * np.log10(np.maximum(power, 1e-9) / 32768.0**2) > -40).sum())
    return turns, loud


def main() -> None:
    far = far_speech()
    print(f"{'echo':>6} {'stall':>6} | {'clock: turns, frames>-40':>26} | {'stream: turns, frames>-40':>26} | {'true: turns, frames>-40':>24}")
    totals = {"clock": 0, "stream": 0, "true": 0}
    for delay in DELAYS_S:
        for stall in STALLS_S:
            got = {s: run(far, delay, stall, s) for s in totals}
            for s, (turns, _) in got.items():
                totals[s] += turns if stall else 0
            print(f"{delay * 1000:4.0f}ms {stall * 1000:4.0f}ms | {got['clock'][0]:>18} {got['clock'][1]:>7} | "
                  f"{got['stream'][0]:>18} {got['stream'][1]:>7} | {got['true'][0]:>16} {got['true'][1]:>7}")  # fmt: skip
    scenes = len(DELAYS_S) * (len(STALLS_S) - 1)
    print(f"[figure] echo turns in {scenes} stalled scenes of {SCENE_S:.0f} s: stamped on handling {totals['clock']}, "
          f"StreamClock {totals['stream']}, true arrival {totals['true']}")  # fmt: skip


if __name__ == "__main__":
    main()
