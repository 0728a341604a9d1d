# Shared by bench/run.sh and bench/peers.sh (sourced, after scripts/env.sh and `cd "$ROOT"`):
# the tools, the worker bundle and the seeded D1 state, then one benchmark script in its own
# process group, bounded in time and killed on any exit (success, failure, Ctrl-C), so no
# workerd, varnishd or origin outlives the run.

# Installs the tools, builds the worker and prints the seeded state template's path.
bench_prepare() {
  bash scripts/setup.sh >&2
  if ! bash scripts/build-worker.sh >&2; then
    say "the worker does not build (src/ may be mid-edit); EDGECACHE_SKIP_BUILD=1 measures the existing build/"
    return 1
  fi
  bash scripts/prepare-state.sh
}

# bench_run_bounded SECONDS TEMPLATE SCRIPT: runs `node SCRIPT` with BENCH_STATE_TEMPLATE set,
# stopped after SECONDS; exits with its status.
bench_run_bounded() {
  local limit=$1 template=$2 script=$3
  mkdir -p target/bench
  set -m
  BENCH_STATE_TEMPLATE="$template" timeout --signal=TERM --kill-after=10 "$limit" node "$script" &
  bench_pid=$!
  set +m
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM HUP
  local status=0
  wait "$bench_pid" || status=$?
  [ "$status" = 124 ] && say "the benchmark ran out of time ($limit s) and was stopped"
  exit "$status"
}

bench_cleanup() {
  kill -TERM -- "-$bench_pid" 2> /dev/null || return 0
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 -- "-$bench_pid" 2> /dev/null || return 0
    sleep 0.5
  done
  kill -KILL -- "-$bench_pid" 2> /dev/null || true
}
