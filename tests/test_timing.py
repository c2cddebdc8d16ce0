"""The timeline of each response's milestones (agent.timing.Timeline) and its log line."""

from __future__ import annotations

import itertools
import logging
from types import SimpleNamespace

import pytest

from agent.timing import GREETING_TIMELINE, REPLY_TIMELINE, Stopwatch, Timeline, parse_timeline


def _timeline(setup: Stopwatch | None = None) -> Timeline:
    ticks = itertools.count(100)
    return Timeline("room-1", setup, clock=lambda: float(next(ticks)))


def _played(at: float) -> SimpleNamespace:
    return SimpleNamespace(created_at=at)


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, float]]]:
    """The timeline lines logged, parsed back: (kind, marks)."""
    found = [parse_timeline(r.getMessage()) for r in caplog.records if r.name == "agent.timing"]
    return [(kind, marks) for kind, _room, marks in filter(None, found)]


def test_the_greeting_line_starts_with_the_set_up_marks_as_they_are_when_it_plays(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.timing")
    setup = Stopwatch()
    setup.lap("connect")
    tl = _timeline(setup)
    tl.on_server_event({"type": "response.created"})
    setup.lap("agent started")  # after the greeting was asked for: still on its line
    tl.on_server_event({"type": "response.output_audio.delta"})
    tl.on_server_event({"type": "response.output_audio.delta"})  # only the first counts
    tl.on_playback_started(_played(103.5))
    [(kind, marks)] = _logged(caplog)
    assert kind == GREETING_TIMELINE
    assert list(marks) == ["job started", "connect", "agent started", "response created", "first audio delta", "first frame played"]
    assert (marks["response created"], marks["first audio delta"], marks["first frame played"]) == (100, 101, 103.5)


def test_a_reply_starts_at_speech_stopped_and_a_cancelled_one_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.timing")
    tl = _timeline()
    tl.on_server_event({"type": "input_audio_buffer.speech_stopped"})  # 100
    tl.on_server_event({"type": "response.created"})  # 101, then cancelled: never played
    tl.on_server_event({"type": "input_audio_buffer.speech_stopped"})  # 102
    tl.on_server_event({"type": "response.created"})  # 103
    tl.on_server_event({"type": "response.output_audio.delta"})  # 104
    tl.on_playback_started(_played(104.2))
    tl.on_server_event({"type": "response.created"})  # 105: a typed turn, no speech stopped
    tl.on_server_event({"type": "response.output_audio.delta"})  # 106
    tl.on_playback_started(_played(106.1))
    assert _logged(caplog) == [
        (REPLY_TIMELINE, {"speech stopped": 102, "response created": 103, "first audio delta": 104, "first frame played": 104.2}),
        (REPLY_TIMELINE, {"response created": 105, "first audio delta": 106, "first frame played": 106.1}),
    ]


def test_playback_of_audio_that_is_no_response_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.timing")
    tl = _timeline()
    tl.on_playback_started(_played(1.0))  # e.g. the reconnect notice, played by the worker itself
    tl.on_server_event({"type": "response.created"})
    tl.on_playback_started(_played(2.0))  # no audio delta yet
    assert _logged(caplog) == []


def test_the_log_line_parses_back(caplog: pytest.LogCaptureFixture) -> None:
    tl = _timeline()
    tl.on_server_event({"type": "input_audio_buffer.speech_stopped"})
    tl.on_server_event({"type": "response.output_audio.delta"})
    with caplog.at_level(logging.INFO, logger="agent.timing"):
        tl.on_playback_started(_played(101.25))
    assert parse_timeline(caplog.records[-1].getMessage()) == (
        REPLY_TIMELINE, "room-1", {"speech stopped": 100, "first audio delta": 101, "first frame played": 101.25}
    )
    assert parse_timeline("reply timeline in room r: {not json") is None
    assert parse_timeline("something else") is None
