#!/usr/bin/env bash
# The whole suite as two pytest processes side by side, inside the test
# namespace (scripts/test.sh runs this through agent.testing.netns):
#   room lane:       room tests that carry audio and time what callers hear;
#   background lane: everything else, at the idle CPU priority (SCHED_IDLE,
#                    `chrt --idle`: it runs on what the room lane leaves), so
#                    that its bursts of CPU (processes starting, unit tests)
#                    never delay the audio of the room lane; `nice -n 10` let
#                    a cluster's start slow the room lane by half. Its session
#                    testbed takes a port slot of its own (tests/conftest.py).
# The room lane prints to the terminal; the background lane to a log, shown
# after. The exit code is the first non-zero of the two.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
LANES="$ROOT/.cache/test-lanes"
rm -rf "$LANES" && mkdir -p "$LANES"
cd "$ROOT"

AGENT_TEST_LANE=background chrt --idle 0 "$PY" -m pytest -p no:cacheprovider --basetemp "$LANES/background" \
  --durations=10 -m "not room or background" >"$LANES/background.log" 2>&1 &
background=$!
"$PY" -m pytest -p no:cacheprovider --basetemp "$LANES/room" --durations=10 -m "room and not background"
room_rc=$?
echo "[test] room lane finished (exit code $room_rc); waiting for the background lane (log: $LANES/background.log)"
wait "$background"
background_rc=$?
echo "----- background lane (unit tests and room tests marked background) -----"
# Its progress dots, failures and slowest tests; the full log stays in the file.
cat "$LANES/background.log"
((room_rc)) && exit "$room_rc"
exit "$background_rc"
