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

# 2. Tools, the worker bundle and the seeded state; 3. the benchmark, bounded (bench/lib/bounded.sh).
source bench/lib/bounded.sh
template=$(bench_prepare)
bench_run_bounded 1200 "$template" bench/bench.mjs
