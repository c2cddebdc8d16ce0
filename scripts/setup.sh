#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine; a rerun only checks.
#   - Debian packages (espeak-ng, sox, iproute2, util-linux, nodejs/npm) when missing;
#     with --browser also chromium (the web page's room tests drive it headless)
#   - a virtual environment at .venv with the package and its test extra
#   - the web page's JavaScript (livekit-client, playwright-core) with npm ci in web/
#   - livekit-server, built with `go install` into a cache outside the clone
# Each step says what it does; a failing step says why and what to do.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIVEKIT_VERSION="v1.13.5"
CACHE="${AGENT_CACHE_DIR:-$HOME/.cache/agent-worker}"
LK_DIR="$CACHE/livekit-server-$LIVEKIT_VERSION"
PYTHON="${PYTHON:-python3}"
BROWSER=0
for arg in "$@"; do
  case "$arg" in
    --browser) BROWSER=1 ;;
    *) printf '[setup] unknown option %s (only --browser)\n' "$arg" >&2; exit 2 ;;
  esac
done

step() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] FAILED: %s\n' "$1" >&2; shift; for hint in "$@"; do printf '[setup]   -> %s\n' "$hint" >&2; done; exit 1; }

# --- Debian packages --------------------------------------------------------
need_pkgs=()
command -v espeak-ng >/dev/null || need_pkgs+=(espeak-ng)
command -v sox >/dev/null || need_pkgs+=(sox)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v unshare >/dev/null || need_pkgs+=(util-linux)
command -v node >/dev/null || need_pkgs+=(nodejs)
command -v npm >/dev/null || need_pkgs+=(npm)
if ((BROWSER)) && [[ ! -x /usr/bin/chromium ]]; then need_pkgs+=(chromium); fi
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
if ((${#need_pkgs[@]})); then
  step "installing Debian packages: ${need_pkgs[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    fail "installing ${need_pkgs[*]} needs root" "run: sudo apt-get update && sudo apt-get install -y ${need_pkgs[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || fail "apt-get update failed" "check the network to the Debian mirrors"
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || fail "apt-get install ${need_pkgs[*]} failed" "check the network to the Debian mirrors"
else
  step "Debian packages present (espeak-ng, sox, iproute2, util-linux, nodejs, npm$( ((BROWSER)) && echo ", chromium"))"
fi

# --- Python virtual environment -----------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "Python >= 3.11 is required, $PYTHON is $("$PYTHON" -V 2>&1)" "set PYTHON=/path/to/python3.11"
if [[ ! -x "$ROOT/.venv/bin/python" ]]; then
  step "creating the virtual environment .venv"
  "$PYTHON" -m venv "$ROOT/.venv" || fail "cannot create .venv" "install python3-venv"
fi
stamp="$ROOT/.venv/.installed"
if [[ ! -f "$stamp" || "$ROOT/pyproject.toml" -nt "$stamp" ]]; then
  step "installing the package and its test dependencies into .venv (pip)"
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null \
    || fail "pip could not reach PyPI" "check the network to pypi.org, or set PIP_INDEX_URL"
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[test]" \
    || fail "pip install -e .[test] failed (see above)" "check the network to pypi.org"
  touch "$stamp"
else
  step ".venv is up to date"
fi

# --- the web page's JavaScript -------------------------------------------------
web_stamp="$ROOT/web/node_modules/.package-lock.json"
if [[ ! -f "$web_stamp" || "$ROOT/web/package-lock.json" -nt "$web_stamp" ]]; then
  step "installing the web page's JavaScript into web/node_modules (npm ci)"
  npm ci --prefix "$ROOT/web" --no-audit --no-fund --loglevel=error >/dev/null \
    || fail "npm ci in web/ failed (see above)" "check the network to registry.npmjs.org"
else
  step "web/node_modules is up to date"
fi

# --- livekit-server -------------------------------------------------------------
if [[ -n "${LIVEKIT_SERVER_BIN:-}" ]]; then
  [[ -x "$LIVEKIT_SERVER_BIN" ]] || fail "LIVEKIT_SERVER_BIN=$LIVEKIT_SERVER_BIN is not an executable" "unset it to build one"
  step "using livekit-server at $LIVEKIT_SERVER_BIN"
elif [[ -x "$LK_DIR/server" ]]; then
  step "livekit-server $LIVEKIT_VERSION already built ($LK_DIR/server)"
else
  command -v go >/dev/null || fail "no Go toolchain: livekit-server is built from source" \
    "install Go >= 1.23 (https://go.dev/dl or apt-get install golang) and rerun"
  step "building livekit-server $LIVEKIT_VERSION with go install (about 2 minutes, once)"
  mkdir -p "$LK_DIR.tmp"
  GOBIN="$LK_DIR.tmp" GOFLAGS=-mod=mod go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION" \
    || fail "go install of livekit-server failed" "check the network to the Go module proxy (GOPROXY=$(go env GOPROXY))"
  rm -rf "$LK_DIR" && mv "$LK_DIR.tmp" "$LK_DIR"
  step "livekit-server built: $LK_DIR/server"
fi
step "done"
