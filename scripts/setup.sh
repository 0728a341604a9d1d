#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently: a second run installs nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

say() { echo "setup: $*" >&2; }

locked_bindgen=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ "$locked_bindgen" != "$WASM_BINDGEN_VERSION" ]; then
  say "Cargo.lock has wasm-bindgen $locked_bindgen but scripts/env.sh pins $WASM_BINDGEN_VERSION; make them equal"
  exit 1
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

installed_version() { "$1" --version 2>/dev/null | awk '{print $NF}'; }

if [ "$(installed_version "$EDGECACHE_TOOLS/bin/worker-build")" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION into $EDGECACHE_TOOLS (about five minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked --root "$EDGECACHE_TOOLS"
fi

if [ "$(installed_version "$WASM_BINDGEN_BIN")" != "$WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION into $EDGECACHE_TOOLS (about three minutes, once)"
  # Not --locked: its lock file pins a crate version that has since been yanked.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$EDGECACHE_TOOLS"
fi

# npm packages: reinstall only when package-lock.json changed since the last install.
stamp="node_modules/.edgecache-lock-stamp"
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# Headless Chromium for the website's browser tests (tests/site/browser.mjs, driven by
# playwright-core, which downloads no browser): Debian's package, installed once if missing.
if ! command -v chromium > /dev/null; then
  say "installing Debian's chromium for the browser tests"
  if [ "$(id -u)" = "0" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium > /dev/null
  else
    sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
  fi
fi
