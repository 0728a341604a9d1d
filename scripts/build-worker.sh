#!/usr/bin/env bash
# wrangler's build command. The test harness builds once and sets EDGECACHE_SKIP_BUILD=1 for the
# many `wrangler dev` processes it starts, so they reuse the same bundle.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
if [ "${EDGECACHE_SKIP_BUILD:-}" = "1" ] && [ -f build/index.js ]; then
  exit 0
fi
worker-build --release
