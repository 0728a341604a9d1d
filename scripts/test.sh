#!/usr/bin/env bash
# `npm test`: installs what is missing, builds the worker once, then runs every test: native unit
# and property tests of the pure modules, and integration tests against the worker in workerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
echo "test: building the worker" >&2
bash scripts/build-worker.sh
echo "test: layout (dependencies point one way; see ARCHITECTURE.md)" >&2
node scripts/check-layout.mjs --self-test
node scripts/check-layout.mjs
echo "test: formatting and lints" >&2
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "test: cargo test" >&2
cargo test --workspace "$@" 2>&1
