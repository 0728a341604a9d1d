#!/usr/bin/env bash
# `npm run build`: the deployable bundle in dist/, built offline.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
wrangler deploy --dry-run --outdir dist
