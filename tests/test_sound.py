"""The shared sound helpers (agent/sound/): WAV files, resampling, espeak-ng,
and the boundaries that let every part of the project import them."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.errors import AgentError, AudioFormatError, SpeechError
from agent.sound import REALTIME_RATE
from agent.sound.espeak import Synthesizer, speak, speak_wav
from agent.sound.g711 import PhoneBand, mulaw_decode, mulaw_encode, phone_band_fir, phone_line
from agent.sound.resample import resample
from agent.sound.wav import read_mono, read_wav, write_wav

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> set[str]:
    """Every module the package's files import (absolute, or resolved from relative)."""
    found: set[str] = set()
    for path in (ROOT / package.replace(".", "/")).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                found.add(".".join([*base, node.module or ""]).strip("."))
    return found


def test_loading_the_sound_package_loads_no_livekit_and_no_realtime_package() -> None:
    """The realtime server must never load livekit, and it imports this package."""
    probe = "import sys, agent.sound.espeak, agent.sound.wav, agent.sound.vad; print(sorted({m.split('.')[0] for m in sys.modules} & {'livekit'}), 'agent.realtime' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["[]", "False"]


def test_the_worker_audio_package_does_not_import_the_fake_backend() -> None:
    assert not {m for m in _imports("agent.audio") if m.startswith("agent.realtime")}


def test_a_wav_of_any_sample_width_reads_as_int16(tmp_path: Path) -> None:
    x = np.array([0, 1000, -1000, 32767, -32768], np.int16)
    wide = {1: ((x >> 8) + 128).astype(np.uint8).tobytes(), 2: x.astype("<i2").tobytes(),
            3: b"".join((int(v) << 8).to_bytes(3, "little", signed=True) for v in x),
            4: (x.astype("<i4") << 16).tobytes()}  # fmt: skip
    for width, raw in wide.items():
        with wave.open(str(tmp_path / f"w{width}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(width)
            w.setframerate(8000)
            w.writeframes(raw)
        data, rate = read_wav(tmp_path / f"w{width}.wav")
        assert rate == 8000 and data.shape == (5, 1) and data.dtype == np.int16
        expected = (x >> 8) << 8 if width == 1 else x
        assert np.array_equal(data[:, 0], expected), width


def test_channels_are_averaged_and_a_written_wav_reads_back_whole(tmp_path: Path) -> None:
    stereo = np.array([[100, 300], [-100, -301], [0, 5]], np.int16)
    path = tmp_path / "s.wav"
    write_wav(path, stereo, 16000)
    assert not list(tmp_path.glob("*.partial"))
    assert np.array_equal(read_wav(path)[0], stereo)
    mono, rate = read_mono(path.read_bytes())  # bytes read as a file would be
    assert rate == 16000 and mono.tolist() == [200, -200, 2]


def test_an_unknown_sample_width_is_an_audio_format_error_in_the_tree() -> None:
    header = bytearray(b"RIFF") + (36 + 5).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    header += (40000).to_bytes(4, "little") + (5).to_bytes(2, "little") + (40).to_bytes(2, "little")
    header += b"data" + (5).to_bytes(4, "little") + bytes(5)
    with pytest.raises(AudioFormatError, match="sample width 5") as info:
        read_wav(bytes(header))
    assert isinstance(info.value, AgentError) and isinstance(info.value, ValueError)


def test_resampling_keeps_duration_and_a_tone() -> None:
    t = np.arange(8000) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    up = resample(tone, 8000, 24000)
    assert len(up) == 24000
    spectrum = np.abs(np.fft.rfft(up.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 24000 / len(up) - 440) < 2
    assert np.array_equal(resample(tone, 8000, 8000), tone)


def test_the_three_ways_to_speak_say_the_same(tmp_path: Path) -> None:
    text = "-hello there"  # a leading dash is text, not an option
    pcm, rate = speak(text, voice="en-us+f3", words_per_minute=175)
    path = speak_wav(text, str(tmp_path / "h.wav"), voice="en-us+f3")
    from_file, file_rate = read_mono(path)
    assert rate == file_rate == 22050 and len(pcm) > rate // 2
    assert np.array_equal(pcm, from_file)

    async def synthesized() -> np.ndarray:
        synth = Synthesizer()
        try:
            return await synth.synthesize(text, voice="marin")  # marin speaks en-us+f3
        finally:
            await synth.aclose()

    assert np.array_equal(asyncio.run(synthesized()), resample(pcm, rate, REALTIME_RATE))


def test_without_espeak_every_way_to_speak_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no espeak-ng on it
    with pytest.raises(SpeechError, match="apt-get install espeak-ng") as info:
        speak("hello", voice="en-us")
    assert isinstance(info.value, AgentError) and isinstance(info.value, RuntimeError)
    with pytest.raises(SpeechError, match="apt-get install espeak-ng"):
        speak_wav("hello", str(tmp_path / "x.wav"), voice="en-us")

    async def synthesized() -> None:
        synth = Synthesizer()
        try:
            await synth.synthesize("hello")
        finally:
            await synth.aclose()

    with pytest.raises(SpeechError, match="apt-get install espeak-ng"):
        asyncio.run(synthesized())


# ---------------------------------------------------------------------- G.711


def test_mulaw_matches_the_standard_codec_on_every_sample() -> None:
    audioop = pytest.importorskip("audioop")  # CPython's own G.711 (deprecated, gone in 3.13)
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert mulaw_encode(every).tobytes() == audioop.lin2ulaw(every.tobytes(), 2)
    codes = np.arange(256, dtype=np.uint8)
    assert mulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes.tobytes(), 2)


def test_mulaw_round_trip_keeps_speech_level_signals_about_38_db_clean() -> None:
    t = np.arange(8000) / 8000
    tone = np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    back = mulaw_decode(mulaw_encode(tone)).astype(np.float64)
    snr = 10 * np.log10(np.sum(tone.astype(np.float64) ** 2) / np.sum((back - tone) ** 2))
    assert 35 < snr < 42, snr
    assert mulaw_decode(mulaw_encode(np.array([0, 32767, -32768], np.int16))).tolist() == [0, 32124, -32124]


def test_a_phone_line_keeps_the_telephone_band_and_drops_the_rest() -> None:
    rate = REALTIME_RATE
    t = np.arange(rate) / rate

    def level(freq: float) -> float:
        x = np.round(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
        y = phone_line(x, rate).astype(np.float64)[rate // 10 : -rate // 10]
        assert len(phone_line(x, rate)) == len(x)
        return 10 * np.log10(max(np.mean(y**2), 1e-12) / np.mean(x.astype(np.float64) ** 2))

    assert abs(level(1000)) < 1.0  # in the band: through, at its level
    assert level(5000) < -30 and level(100) < -30  # above and below: gone


def test_the_streaming_phone_band_is_the_whole_signal_filter_late_by_half_its_length() -> None:
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal(4800) * 3000).astype(np.int16)
    band = PhoneBand(REALTIME_RATE)
    streamed = np.concatenate([band.process(x[i : i + 240]) for i in range(0, len(x), 240)])
    whole = np.clip(np.round(np.convolve(x.astype(np.float64), phone_band_fir(REALTIME_RATE))), -32768, 32767)[: len(x)]
    assert len(streamed) == len(x) and np.array_equal(streamed, whole.astype(np.int16))
