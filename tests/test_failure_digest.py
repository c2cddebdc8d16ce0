"""A failed room test's report starts with livekit-server's view of the
participants (agent/testing/harness.py ``server_digest``): CI output may be cut
after a page, and where a caller's audio went is what a report must say first."""

from __future__ import annotations

import json

from agent.testing.harness import server_digest


def _line(stamp: str, level: str, message: str, **fields: object) -> str:
    return "\t".join([f"2026-12-07T{stamp}Z", level, "livekit", "rtc/x.go:1", message, json.dumps(fields)])


def test_the_digest_keeps_what_says_where_media_went_and_drops_the_rest() -> None:
    log = "\n".join([
        _line("22:33:22.515", "INFO", "starting RTC session", room="crash-1", participant="caller-again"),
        _line("22:33:22.516", "INFO", "API RoomService.ListParticipants", room="crash-1"),
        _line("22:33:22.590", "INFO", "participant active", participant="caller-again", connectionType="udp", publisherCandidates=[
            "[local][selected:1][trickle] udp4 host 10.77.0.1:50669 (resolved: 10.77.0.1:50669)",
            "[local][trickle] tcp4 host 10.77.0.1:7911 (resolved: 10.77.0.1:7911)",
        ]),
        _line("22:33:23.000", "WARN", "error reading data channel", participant="caller-again", error="abort chunk"),
        _line("22:33:24.000", "WARN", "could not negotiate", participant="agent-AJ_1", error="offer timed out"),
        "a continuation line of a Go stack",
        _line("22:33:25.000", "INFO", "participant closing", participant="caller-again", reason="CLIENT_REQUEST_LEAVE"),
    ])  # fmt: skip
    assert server_digest(log).splitlines() == [
        "22:33:22.515 INFO caller-again starting RTC session (room=crash-1)",
        "22:33:22.590 INFO caller-again participant active (connectionType=udp; publisherCandidates=['[local][selected:1][trickle] udp4 host 10.77.0.1:50669'])",
        "22:33:24.000 WARN agent-AJ_1 could not negotiate (error=offer timed out)",
        "22:33:25.000 INFO caller-again participant closing (reason=CLIENT_REQUEST_LEAVE)",
    ]
    assert server_digest(log, 1).splitlines() == ["22:33:25.000 INFO caller-again participant closing (reason=CLIENT_REQUEST_LEAVE)"]
    assert server_digest("") == "(nothing)"
