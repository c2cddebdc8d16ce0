#!/usr/bin/env bash
# Command 1: set up, then run livekit-server + realtime backend + worker until Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m agent up "$@"
