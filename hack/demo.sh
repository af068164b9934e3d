#!/usr/bin/env bash
# `make demo`: fetch and build what the demo needs, then run it (hack/demo).
#
# On a fresh machine the stages take minutes and most of them print nothing (the go command is
# silent while it compiles), so a stage that has not finished after a moment says what it is
# doing and how long it takes cold, and a total follows the demo. A warm run, where every
# stage returns at once, prints only the demo's own output.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LDFLAGS=${LDFLAGS:-}
# A stage still running after this many seconds is announced.
NOTICE_AFTER=${DEMO_NOTICE_AFTER:-3}

start=$SECONDS
announced=()

# stage NAME COLD CMD...: runs CMD; prints "demo: NAME (cold: COLD)" once CMD has run for
# NOTICE_AFTER seconds, and then records the stage's duration for the total. With COLD "-" the
# command announces itself (hack/control-plane.sh does, only when it builds).
stage() {
  local name=$1 cold=$2 t0=$SECONDS shown=0
  shift 2
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if (( !shown && SECONDS - t0 >= NOTICE_AFTER )); then
      [[ $cold == - ]] || echo "demo: $name (cold: $cold) ..."
      shown=1
    fi
    sleep 0.2
  done
  wait "$pid"
  if (( shown )); then
    announced+=("$name $(( SECONDS - t0 ))s")
  fi
}

stage "downloading Go modules" "~40 s, 2.4 GB into the module cache" \
  go mod download
stage "building bin/imagetrust and bin/demo" "~6 min on 2 idle cores, 2.2 GB of build cache" \
  go build -trimpath -ldflags "$LDFLAGS" -o bin/ ./cmd/imagetrust ./hack/demo
assets=$(mktemp)
trap 'rm -f "$assets"' EXIT
stage "control plane" - bash -c 'hack/control-plane.sh >"$1"' _ "$assets"

demo_start=$SECONDS
if (( ${#announced[@]} > 0 )); then
  echo "demo: running the demo (~15 s)"
fi
KUBEBUILDER_ASSETS=$(cat "$assets") IMAGETRUST_BIN="$ROOT/bin/imagetrust" bin/demo
if (( ${#announced[@]} > 0 )); then
  announced+=("demo $(( SECONDS - demo_start ))s")
  total=$(( SECONDS - start ))
  summary=$(IFS=,; echo "${announced[*]}")
  echo "demo: total $(( total / 60 ))m$(( total % 60 ))s (${summary//,/, })"
fi
