# Sourced by every script: where the pinned tools live and how worker-build finds them.
# Tools are installed once per machine under $EDGECACHE_TOOLS and reused by every clone.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EDGECACHE_TOOLS="${EDGECACHE_TOOLS:-$HOME/.cache/edgecache-tools}"
export PATH="$EDGECACHE_TOOLS/bin:$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WORKER_BUILD_VERSION="0.8.7"
# Must equal the wasm-bindgen version in Cargo.lock (checked in setup.sh).
export WASM_BINDGEN_VERSION="0.2.130"
export WASM_BINDGEN_BIN="$EDGECACHE_TOOLS/bin/wasm-bindgen"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export WRANGLER_SEND_METRICS=false
export WRANGLER_LOG_PATH="$ROOT/.wrangler/logs"
