#!/usr/bin/env bash
# The whole suite as three pytest processes side by side, inside the test
# namespace (scripts/test.sh runs this through agent.testing.netns):
#   room lane:          room tests that carry audio and time what callers hear;
#   two background lanes: everything else (unit tests, and room tests marked
#                       `background`: they wait for processes, reconnects or
#                       browsers with generous bounds), split by file, at the
#                       idle CPU priority (SCHED_IDLE, `chrt --idle`: they run on
#                       what the room lane leaves), so that their bursts of CPU
#                       (processes starting, unit tests) never delay the audio
#                       of the room lane; `nice -n 10` let a cluster's start
#                       slow the room lane by half. Two of them, because their
#                       tests mostly wait: side by side, the waits overlap.
#                       Each lane's session testbed and port range are its own
#                       (AGENT_TEST_LANE; tests/conftest.py, agent/testing/harness.py).
# The room lane prints to the terminal; the background lanes to logs, shown
# after. The exit code is the first non-zero of the three.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
LANES="$ROOT/.cache/test-lanes"
rm -rf "$LANES" && mkdir -p "$LANES"
cd "$ROOT"

# The second background lane's files: the process faults, the realtime link's
# faults, `up` and the process-leak tests, the scenario runner's unit tests, the
# typed-order room tests and the page's background tests (the scenario run itself
# is in the room lane: its backend must transcribe in real time). In both
# background lanes a joined caller runs at normal priority and the servers and
# worker the harness starts stay at idle (agent/testing/priority.py).
SECOND=(tests/test_resilience_process_rooms.py tests/test_resilience_rooms.py tests/test_main_job.py
        tests/test_processes.py tests/test_scenario.py tests/test_tools_rooms.py tests/test_web_rooms.py)
IGNORE=()
for f in "${SECOND[@]}"; do IGNORE+=(--ignore "$f"); done

# A background job of a non-interactive bash starts with SIGINT ignored, and an
# ignored signal stays ignored across exec: a developer's Ctrl-C stopped the room
# lane only, the background lanes ran on. Their pytest starts with SIGINT at
# Python's default (KeyboardInterrupt: pytest stops, cleans up, exit code 2).
PYTEST_WITH_SIGINT=(-c 'import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(pytest.console_main())')
background_lane() {  # name, then pytest's arguments
  local name="$1"; shift
  AGENT_TEST_LANE="$name" chrt --idle 0 "$PY" "${PYTEST_WITH_SIGINT[@]}" -p no:cacheprovider --basetemp "$LANES/$name" \
    --durations=10 -m "not room or background" "$@" >"$LANES/$name.log" 2>&1
}
background_lane background "${IGNORE[@]}" &
first=$!
background_lane background-2 "${SECOND[@]}" &
second=$!
"$PY" -m pytest -p no:cacheprovider --basetemp "$LANES/room" --durations=10 -m "room and not background"
room_rc=$?
echo "[test] room lane finished (exit code $room_rc); waiting for the background lanes (logs: $LANES/background*.log)"
wait "$first"
first_rc=$?
wait "$second"
second_rc=$?
for name in background background-2; do
  echo "----- $name lane (unit tests and room tests marked background) -----"
  # Its progress dots, failures and slowest tests; the full log stays in the file.
  cat "$LANES/$name.log"
done
((room_rc)) && exit "$room_rc"
((first_rc)) && exit "$first_rc"
exit "$second_rc"
