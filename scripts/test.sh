#!/usr/bin/env bash
# Command 2: set up, then check the code (ruff, mypy --strict on agent/) and
# run the whole test suite inside a private network namespace (room tests
# need one: libwebrtc ignores loopback).
#
# The suite runs as three pytest processes side by side (scripts/lanes.sh): the
# room tests that carry audio and time it, and beside them, at the idle CPU
# priority, two lanes with the rest (unit tests, and room tests marked
# `background`, which mostly wait for processes). Extra arguments run one pytest with them instead,
# e.g. scripts/test.sh -k greets -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --browser --sip
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
start=$(date +%s)
# Lint first: a fraction of a second, and a failure there says more than a room test would.
"$ROOT/.venv/bin/ruff" check agent tests bench examples || { echo "[test] ruff found problems (above)"; exit 1; }
# Types beside the tests (about 17 s of CPU on a fresh clone), at the idle CPU
# priority like the background lanes; its verdict is read at the end.
mkdir -p "$ROOT/.cache"
chrt --idle 0 "$ROOT/.venv/bin/mypy" agent >"$ROOT/.cache/mypy.log" 2>&1 &
mypy_pid=$!
set +e
if (($#)); then
  "$PY" -m agent.testing.netns -- "$PY" -m pytest --durations=10 "$@"
else
  "$PY" -m agent.testing.netns -- "$ROOT/scripts/lanes.sh"
fi
rc=$?
wait "$mypy_pid"
mypy_rc=$?
set -e
cat "$ROOT/.cache/mypy.log"
if ((mypy_rc)); then
  echo "[test] mypy --strict found problems (above)"
  ((rc)) || rc=$mypy_rc
fi
echo "[test] suite finished in $(( $(date +%s) - start ))s with exit code $rc"
exit $rc
