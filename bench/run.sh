#!/usr/bin/env bash
# `npm run bench`: installs a load generator if none is there, builds the worker, prepares the
# seeded D1 state, and runs bench/bench.mjs in its own process group, which is killed on any exit
# (success, failure, Ctrl-C), so no workerd outlives the run. Loopback only; about two minutes, plus
# the soak (100,000 requests; BENCH_SOAK_REQUESTS sets how many).
#
# Environment: EDGECACHE_SKIP_BUILD=1 measures the existing build/ without rebuilding;
# BENCH_RUNTIME=auto|miniflare|wrangler; BENCH_LOADGEN=wrk|oha|autocannon|node; BENCH_SECONDS=5.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"

say() { echo "bench: $*" >&2; }

# 1. A load generator: wrk from Debian, else whatever is already installed (oha, autocannon),
#    else bench.mjs falls back to a Node loop and says so.
if ! command -v wrk > /dev/null && [ -z "${BENCH_LOADGEN:-}" ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  say "installing wrk (apt-get)"
  if ! $sudo apt-get install -y wrk > /dev/null 2>&1; then
    $sudo apt-get update > /dev/null 2>&1 || true
    $sudo apt-get install -y wrk > /dev/null 2>&1 || say "could not install wrk; using oha or autocannon if installed, else a Node loop"
  fi
fi

# 2. Tools, the worker bundle and the seeded state.
bash scripts/setup.sh >&2
if ! bash scripts/build-worker.sh >&2; then
  say "the worker does not build (src/ may be mid-edit); EDGECACHE_SKIP_BUILD=1 measures the existing build/"
  exit 1
fi
template=$(bash scripts/prepare-state.sh)

# 3. The benchmark, in its own process group, bounded in time.
mkdir -p target/bench
set -m
BENCH_STATE_TEMPLATE="$template" timeout --signal=TERM --kill-after=10 1200 node bench/bench.mjs &
bench_pid=$!
set +m
cleanup() {
  kill -TERM -- "-$bench_pid" 2> /dev/null || return 0
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 -- "-$bench_pid" 2> /dev/null || return 0
    sleep 0.5
  done
  kill -KILL -- "-$bench_pid" 2> /dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
status=0
wait "$bench_pid" || status=$?
[ "$status" = 124 ] && say "the benchmark ran out of time (1200 s) and was stopped"
exit "$status"
