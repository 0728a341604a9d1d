#!/usr/bin/env bash
# `npm run bench:peers`: EdgeCache against Varnish over one origin (bench/peers.mjs). Installs
# Debian's varnish and varnish-modules (xkey) if they are missing, builds the worker, prepares the
# seeded D1 state, and runs the benchmark in its own process group, which is killed on any exit,
# so no varnishd, workerd or origin outlives the run. Loopback only; about four minutes.
#
# Environment: EDGECACHE_SKIP_BUILD=1 measures the existing build/; PEERS_SECONDS (20),
# PEERS_WARMUP (30), PEERS_READ_RATE (200), PEERS_WRITE_RATE (5), PEERS_ROWS (1000), PEERS_ONLY.
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

# 2. Tools, the worker bundle and the seeded state; 3. the benchmark, bounded (bench/lib/bounded.sh).
source bench/lib/bounded.sh
template=$(bench_prepare)
bench_run_bounded 600 "$template" bench/peers.mjs
