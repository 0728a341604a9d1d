#!/usr/bin/env bash
# Builds a local D1 state directory with the migrations applied and the demo data seeded, and
# prints its path. Cached by the content of migrations/ and the seed script, so tests copy a
# ready template into a fresh directory instead of migrating for every worker they start.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
hash=$(cat migrations/*.sql scripts/seed.mjs wrangler.toml | sha256sum | cut -c1-16)
dir="$ROOT/.state/template-$hash"
if [ ! -f "$dir/.ready" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  node scripts/seed.mjs > "$dir.seed.sql"
  wrangler d1 migrations apply DB --local --persist-to "$dir" >&2 < /dev/null
  wrangler d1 execute DB --local --persist-to "$dir" --file "$dir.seed.sql" --yes >&2 < /dev/null
  rm -f "$dir.seed.sql"
  touch "$dir/.ready"
fi
echo "$dir"
