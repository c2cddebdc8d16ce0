#!/usr/bin/env bash
# Command 2: set up, then run the whole test suite inside a private network
# namespace (room tests need one: libwebrtc ignores loopback). Extra arguments
# go to pytest, e.g. scripts/test.sh -k greets -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --browser
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
start=$(date +%s)
set +e
"$PY" -m agent.testing.netns -- "$PY" -m pytest "$@"
rc=$?
set -e
echo "[test] suite finished in $(( $(date +%s) - start ))s with exit code $rc"
exit $rc
