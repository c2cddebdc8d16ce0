"""The front-end trace report (agent/audio/trace_report.py) on written traces."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from agent.audio.frontend import AudioFrontend, FrontendConfig
from agent.audio.trace_report import main, read_trace, report

RATE = 24000


def tone(seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 300 * t) * 32768 * 10 ** (dbfs / 20) * np.sqrt(2)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def test_report_counts_turns_and_the_near_misses_outside_them() -> None:
    out = np.concatenate([
        silence(1.0), tone(0.8, -20), silence(1.5),  # a turn
        tone(0.04, -30), silence(1.0),  # 4 frames over -40 dBFS: a near miss, no turn
        tone(0.03, -45), silence(1.0),  # 3 frames between -50 and -40 dBFS
    ])  # fmt: skip
    r = report("t", RATE, out)
    assert r.turns == 1
    assert (r.over_40, r.longest_40) == (4, 4)
    assert (r.over_50, r.longest_50) == (7, 4)


def test_a_trace_written_by_the_frontend_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fe = AudioFrontend(FrontendConfig(echo_cancellation=False, noise_suppression=False), rate=RATE, clock=lambda: 0.0)
    fe.trace = []
    mic = np.concatenate([silence(0.5), tone(1.0, -20), silence(1.0)])
    for i in range(0, len(mic), 240):
        fe.process_near(mic[i : i + 240], at=(i + 240) / RATE)
    path = tmp_path / "room-a.wav"
    fe.write_trace(str(path))
    assert not list(tmp_path.glob("*.partial"))
    rate, data = read_trace(path)
    assert rate == RATE and data.shape == (len(mic), 3)
    assert np.array_equal(data[:, 0], mic)
    assert main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "room-a.wav: 2 s, 1 turns" in printed and "[figure] 1 traces" in printed


def test_a_file_that_is_not_a_trace_is_skipped_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with wave.open(str(tmp_path / "mono.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(silence(0.1).tobytes())
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "mono.wav: skipped: " in err and "3 channels" in err and "junk.wav: skipped: " in err
    assert main([]) == 2
