#!/usr/bin/env bash
# `npm run bench:peers`: EdgeCache against Varnish over one origin (bench/peers.mjs). Installs
# Debian's varnish and varnish-modules (xkey) if they are missing, builds the worker, prepares the
# seeded D1 state, and runs the benchmark in its own process group, which is killed on any exit,
# so no varnishd, workerd or origin outlives the run. Loopback only; about three minutes.
#
# Environment: EDGECACHE_SKIP_BUILD=1 measures the existing build/; PEERS_SECONDS (20),
# PEERS_WARMUP (10), PEERS_READ_RATE (200), PEERS_WRITE_RATE (5), PEERS_ROWS (1000), PEERS_ONLY.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"

say() { echo "bench:peers: $*" >&2; }

# 1. Varnish with the xkey vmod, from Debian.
xkey_vmod() { ls /usr/lib/*/varnish/vmods/libvmod_xkey.so > /dev/null 2>&1; }
if ! command -v varnishd > /dev/null || ! xkey_vmod; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  say "installing varnish and varnish-modules (apt-get)"
  if ! $sudo apt-get install -y varnish varnish-modules > /dev/null 2>&1; then
    $sudo apt-get update > /dev/null 2>&1 || true
    $sudo apt-get install -y varnish varnish-modules > /dev/null 2>&1 || true
  fi
  if ! command -v varnishd > /dev/null || ! xkey_vmod; then
    say "could not install varnish and varnish-modules; install them (apt-get install varnish varnish-modules) and rerun"
    exit 1
  fi
fi
if ! command -v wrk > /dev/null; then
  $([ "$(id -u)" = 0 ] || echo sudo -n) apt-get install -y wrk > /dev/null 2>&1 || say "no wrk: the hit req/s column uses another load generator"
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
BENCH_STATE_TEMPLATE="$template" timeout --signal=TERM --kill-after=10 600 node bench/peers.mjs &
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
[ "$status" = 124 ] && say "the benchmark ran out of time (600 s) and was stopped"
exit "$status"
