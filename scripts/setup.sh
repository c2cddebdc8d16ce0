#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine; a rerun only checks.
#   - livekit-server, built with `go install` into a cache outside the clone; the
#     build runs in the background while the steps below run (they are independent)
#   - Debian packages (espeak-ng, sox, iproute2, util-linux, nodejs/npm, redis-server) when missing;
#     with --browser also chromium (the web page's room tests drive it headless)
#   - with --sip (or AGENT_SIP=1): livekit-sip, built with cgo into the same cache, its
#     -dev packages, and baresip (the telephony tests' SIP phone)
#   - a virtual environment at .venv with the package and its test extra
#   - the web page's JavaScript (livekit-client, esbuild, playwright-core) with npm ci in web/,
#     bundled into web/dist by esbuild,
#     and the deployment's CRD schema validator with npm ci in deploy/validate/
# Each step prints one `[setup]` line; the tools' own output goes to a log per
# step in .cache/setup/ (rewritten each run). A failing step says why and what
# to do, and shows its log's path and last lines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIVEKIT_VERSION="v1.13.5"
CACHE="${AGENT_CACHE_DIR:-$HOME/.cache/agent-worker}"
LK_DIR="$CACHE/livekit-server-$LIVEKIT_VERSION"
# LiveKit's SIP service: the newest release the Go module proxy serves here
# (v1.8.0, 2026-07; livekit-server v1.13.5 is of 2026-08).
SIP_VERSION="v1.8.0"
SIP_DIR="$CACHE/livekit-sip-$SIP_VERSION"
PYTHON="${PYTHON:-python3}"
LOGS="$ROOT/.cache/setup"
BROWSER=0
SIP=0
case "${AGENT_SIP:-}" in 1|true|TRUE|True|yes|on) SIP=1 ;; esac
for arg in "$@"; do
  case "$arg" in
    --browser) BROWSER=1 ;;
    --sip) SIP=1 ;;
    *) printf '[setup] unknown option %s (--browser, --sip)\n' "$arg" >&2; exit 2 ;;
  esac
done
started=$SECONDS

step() { printf '[setup] %s\n' "$*"; }
# fail [--log FILE] MESSAGE HINT...: the failure, the end of the tool's log, what to do.
fail() {
  local log=""
  if [[ $1 == --log ]]; then log=$2; shift 2; fi
  printf '[setup] FAILED: %s\n' "$1" >&2
  shift
  if [[ -n $log ]]; then
    if [[ -s $log ]]; then
      printf '[setup]   last lines of %s:\n' "$log" >&2
      tail -n 20 "$log" | sed 's/^/[setup]   | /' >&2
    else
      printf '[setup]   (its log %s is empty)\n' "$log" >&2
    fi
  fi
  for hint in "$@"; do printf '[setup]   -> %s\n' "$hint" >&2; done
  exit 1
}
# logged STEP COMMAND...: run a tool with its output appended to the step's log.
logged() {
  local log="$LOGS/$1.log"
  shift
  "$@" >>"$log" 2>&1
}

mkdir -p "$LOGS"
rm -f "$LOGS"/*.log

# --- livekit-server (started first: the longest step, and it needs nothing below) ---
lk_pid=""
lk_tmp=""
# A failing step, Ctrl-C or SIGTERM must not leave the build running: it is in
# its own process group (setsid), so the go command's compilers stop with it.
sip_pid=""
sip_tmp=""
stop_build() {
  local pid
  for pid in "$lk_pid" "$sip_pid"; do
    if [[ -n $pid ]]; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [[ -n $lk_tmp ]]; then rm -rf "$lk_tmp"; fi
  if [[ -n $sip_tmp ]]; then rm -rf "$sip_tmp"; fi
}
trap stop_build EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ -n "${LIVEKIT_SERVER_BIN:-}" ]]; then
  [[ -x "$LIVEKIT_SERVER_BIN" ]] || fail "LIVEKIT_SERVER_BIN=$LIVEKIT_SERVER_BIN is not an executable" "unset it to build one"
  step "using livekit-server at $LIVEKIT_SERVER_BIN"
elif [[ -x "$LK_DIR/server" ]]; then
  step "livekit-server $LIVEKIT_VERSION already built ($LK_DIR/server)"
else
  command -v go >/dev/null || fail "no Go toolchain: livekit-server is built from source" \
    "install Go >= 1.23 (https://go.dev/dl or apt-get install golang) and rerun"
  step "building livekit-server $LIVEKIT_VERSION with go install in the background (about 2 minutes, once; log: $LOGS/livekit-server.log)"
  # A folder of this run's own: another clone's set-up may be building into the same cache.
  mkdir -p "$CACHE" && lk_tmp="$(mktemp -d "$LK_DIR.tmp.XXXXXX")"
  launch=()
  if command -v setsid >/dev/null; then launch=(setsid); fi
  lk_started=$SECONDS
  GOBIN="$lk_tmp" GOFLAGS=-mod=mod "${launch[@]}" go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION" \
    >"$LOGS/livekit-server.log" 2>&1 </dev/null &
  lk_pid=$!
fi

# --- Debian packages --------------------------------------------------------
need_pkgs=()
command -v espeak-ng >/dev/null || need_pkgs+=(espeak-ng)
command -v sox >/dev/null || need_pkgs+=(sox)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v unshare >/dev/null && command -v setpriv >/dev/null || need_pkgs+=(util-linux)
command -v node >/dev/null || need_pkgs+=(nodejs)
command -v npm >/dev/null || need_pkgs+=(npm)
command -v nft >/dev/null || need_pkgs+=(nftables)  # a caller behind a firewall that drops UDP (agent.testing.remote)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)  # a LiveKit cluster's shared state (agent.testing.Cluster)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_pkgs+=(postgresql)  # the session-records tests start one
if ((SIP)); then
  # livekit-sip is built with cgo against libopus, libopusfile and libsoxr
  if [[ -z "${LIVEKIT_SIP_BIN:-}" && ! -x "$SIP_DIR/livekit-sip" ]]; then
    command -v pkg-config >/dev/null && pkg-config --exists opus opusfile soxr 2>/dev/null \
      || need_pkgs+=(pkg-config libopus-dev libopusfile-dev libsoxr-dev)
  fi
  command -v baresip >/dev/null || need_pkgs+=(baresip-core)  # the SIP phone of the telephony room tests
fi
if ((BROWSER)) && [[ ! -x /usr/bin/chromium ]]; then need_pkgs+=(chromium); fi
# One interpreter start answers both questions (version, venv module): on a
# busy machine each start of a pyenv shim costs a second or more.
python_probe() {
  "$PYTHON" -c 'import sys
try:
    import venv, ensurepip
except ImportError:
    print(sys.version_info >= (3, 11), "no-venv")
else:
    print(sys.version_info >= (3, 11), "venv")' 2>/dev/null || true
}
python_state="$(python_probe)"
[[ $python_state == *" venv" ]] || need_pkgs+=(python3-venv)
if ((${#need_pkgs[@]})); then
  step "installing Debian packages: ${need_pkgs[*]} (apt-get; log: $LOGS/apt.log)"
  if [[ $(id -u) -ne 0 ]]; then
    fail "installing ${need_pkgs[*]} needs root" "run: sudo apt-get update && sudo apt-get install -y ${need_pkgs[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # The package lists are refreshed only when the install cannot do without:
  # on a machine that has them, `apt-get update` is the slowest part of the step.
  if ! logged apt apt-get install -y -q "${need_pkgs[@]}"; then
    logged apt apt-get update -q || fail --log "$LOGS/apt.log" "apt-get update failed" "check the network to the Debian mirrors"
    logged apt apt-get install -y -q "${need_pkgs[@]}" \
      || fail --log "$LOGS/apt.log" "apt-get install ${need_pkgs[*]} failed" "check the network to the Debian mirrors"
  fi
else
  step "Debian packages present (espeak-ng, sox, iproute2, util-linux, nodejs, npm, redis-server, postgresql$( ((SIP)) && echo ", baresip")$( ((BROWSER)) && echo ", chromium"))"
fi

# --- livekit-sip (needs the -dev packages above; builds beside the steps below) ---
if ((!SIP)); then
  :  # phone calls not asked for: nothing to build (--sip, or AGENT_SIP=1)
elif [[ -n "${LIVEKIT_SIP_BIN:-}" ]]; then
  [[ -x "$LIVEKIT_SIP_BIN" ]] || fail "LIVEKIT_SIP_BIN=$LIVEKIT_SIP_BIN is not an executable" "unset it to build one"
  step "using livekit-sip at $LIVEKIT_SIP_BIN"
elif [[ -x "$SIP_DIR/livekit-sip" ]]; then
  step "livekit-sip $SIP_VERSION already built ($SIP_DIR/livekit-sip)"
else
  command -v go >/dev/null || fail "no Go toolchain: livekit-sip is built from source" "install Go >= 1.26 and rerun"
  step "building livekit-sip $SIP_VERSION in the background (cgo; once; log: $LOGS/livekit-sip.log)"
  mkdir -p "$CACHE" && sip_tmp="$(mktemp -d "$SIP_DIR.tmp.XXXXXX")"
  launch=()
  if command -v setsid >/dev/null; then launch=(setsid); fi
  sip_started=$SECONDS
  # Not `go install ...@version`: that asks the proxy for the module's version
  # list (for deprecations), which the proxy here refuses. Download the release
  # and build it in place; the module cache holds its go.sum.
  "${launch[@]}" bash -c 'set -e
    go mod download "github.com/livekit/sip@$1"
    cd "$(go env GOMODCACHE)/github.com/livekit/sip@$1"
    CGO_ENABLED=1 go build -trimpath -o "$2/livekit-sip" ./cmd/livekit-sip' _ "$SIP_VERSION" "$sip_tmp" \
    >"$LOGS/livekit-sip.log" 2>&1 </dev/null &
  sip_pid=$!
fi

# --- Python virtual environment -----------------------------------------------
if ((${#need_pkgs[@]})); then python_state="$(python_probe)"; fi  # apt may have just installed it
[[ $python_state == True* ]] \
  || fail "Python >= 3.11 is required, $PYTHON is $("$PYTHON" -V 2>&1)" "set PYTHON=/path/to/python3.11"
stamp="$ROOT/.venv/.installed"
if [[ ! -x "$ROOT/.venv/bin/python" || ! -f "$stamp" || "$ROOT/pyproject.toml" -nt "$stamp" ]]; then
  step "installing the package and its test dependencies into .venv (pip; log: $LOGS/pip.log)"
  if [[ ! -x "$ROOT/.venv/bin/python" ]]; then
    logged pip "$PYTHON" -m venv "$ROOT/.venv" || fail --log "$LOGS/pip.log" "cannot create .venv" "install python3-venv"
  fi
  # The venv's own pip (Python >= 3.11 bundles pip >= 23) installs an editable
  # pyproject package, so there is no `pip install --upgrade pip` round trip;
  # pip's wheel cache (~/.cache/pip) is used.
  logged pip "$ROOT/.venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -e "$ROOT[test]" \
    || fail --log "$LOGS/pip.log" "pip install -e .[test] failed" "check the network to pypi.org, or set PIP_INDEX_URL"
  touch "$stamp"
else
  step ".venv is up to date"
fi

# --- JavaScript: the web page's, and the deployment's CRD validator -----------
# npm_ci DIR WHAT: npm ci in DIR (relative to the clone) unless its lockfile is installed.
npm_ci() {
  local dir=$1 what=$2 stamp="$ROOT/$1/node_modules/.package-lock.json"
  if [[ ! -f "$stamp" || "$ROOT/$dir/package-lock.json" -nt "$stamp" ]]; then
    step "installing $what into $dir/node_modules (npm ci; log: $LOGS/npm.log)"
    # --prefer-offline: packages already in npm's cache are not asked for again
    logged npm npm ci --prefix "$ROOT/$dir" --prefer-offline --no-audit --no-fund \
      || fail --log "$LOGS/npm.log" "npm ci in $dir/ failed" "check the network to registry.npmjs.org"
  else
    step "$dir/node_modules is up to date"
  fi
}
npm_ci web "the web page's JavaScript"
# The page's script: livekit-client and src/ bundled by esbuild (no CDN at run time).
if [[ ! -f "$ROOT/web/dist/app.js" || -n "$(find "$ROOT/web/src" "$ROOT/web/node_modules/.package-lock.json" -newer "$ROOT/web/dist/app.js" 2>/dev/null)" ]]; then
  step "bundling the web page's script into web/dist (esbuild; log: $LOGS/npm.log)"
  logged npm npm run --prefix "$ROOT/web" build \
    || fail --log "$LOGS/npm.log" "bundling the web page failed" "see the esbuild errors in the log"
else
  step "web/dist is up to date"
fi
npm_ci deploy/validate "the ServiceMonitor schema validator (tests/test_deploy.py)"

# --- the builds, waited for -----------------------------------------------------
# await_build NAME PID_VAR TMP_VAR DIR STARTED BINARY FAILURE HINT: wait for a
# background build (its pid and temporary folder in the variables named, which
# the EXIT trap reads), then move what it built into DIR.
await_build() {
  local name=$1 dir=$4 started=$5 binary=$6 failure=$7 hint=$8
  local -n pid_ref=$2 tmp_ref=$3
  if kill -0 "$pid_ref" 2>/dev/null; then step "waiting for the $name build"; fi
  if ! wait "$pid_ref"; then
    pid_ref=""
    fail --log "$LOGS/$name.log" "$failure" "$hint"
  fi
  pid_ref=""
  rm -rf "$dir" && mv "$tmp_ref" "$dir" && tmp_ref=""
  step "$name built in $((SECONDS - started)) s: $dir/$binary"
}
if [[ -n $lk_pid ]]; then
  await_build livekit-server lk_pid lk_tmp "$LK_DIR" "$lk_started" server "go install of livekit-server failed" \
    "check the network to the Go module proxy (GOPROXY=$(go env GOPROXY))"
fi
if [[ -n $sip_pid ]]; then
  await_build livekit-sip sip_pid sip_tmp "$SIP_DIR" "$sip_started" livekit-sip "the livekit-sip build failed" \
    "check the network to the Go module proxy, and that libopus-dev, libopusfile-dev and libsoxr-dev are installed"
fi
step "done in $((SECONDS - started)) s"
