#!/usr/bin/env bash
# `npm run dev`: installs what is missing, migrates and seeds the local D1 database once, and
# serves the worker on http://127.0.0.1:8787 in the real runtime (workerd).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh

# The bootstrap operator token (admin API), the default tenant's webhook secret and write key,
# generated once and kept out of git.
random_hex() { node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("hex"))'; }
if ! grep -qs '^EDGECACHE_OPERATOR_TOKEN=' .dev.vars; then
  echo "EDGECACHE_OPERATOR_TOKEN=eco_$(random_hex)" >> .dev.vars
  echo "dev: wrote a new operator token to .dev.vars" >&2
fi
if ! grep -qs '^EDGECACHE_WEBHOOK_SECRET=' .dev.vars; then
  echo "EDGECACHE_WEBHOOK_SECRET=ecw_$(random_hex)" >> .dev.vars
fi
# The default tenant's write key: writes through /v1/* need one (the README tour uses it).
if ! grep -qs '^EDGECACHE_WRITE_KEY=' .dev.vars; then
  echo "EDGECACHE_WRITE_KEY=eck_$(random_hex)" >> .dev.vars
  echo "dev: wrote a write key for the default tenant to .dev.vars (EDGECACHE_WRITE_KEY)" >&2
fi

wrangler d1 migrations apply DB --local > .wrangler-migrate.log 2>&1 < /dev/null || {
  cat .wrangler-migrate.log >&2; exit 1; }
count=$(wrangler d1 execute DB --local --json --command "SELECT COUNT(*) AS n FROM users" 2>/dev/null \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s)[0].results[0].n)}catch{console.log(0)}})')
if [ "$count" = "0" ]; then
  echo "dev: seeding the demo dataset (users, orders)" >&2
  node scripts/seed.mjs > .wrangler-seed.sql
  wrangler d1 execute DB --local --file .wrangler-seed.sql --yes > /dev/null 2>&1 < /dev/null
  rm -f .wrangler-seed.sql
fi
rm -f .wrangler-migrate.log
exec wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" --show-interactive-dev-session=false "$@"
