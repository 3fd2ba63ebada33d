#!/usr/bin/env bash
# Fuzzes the gateway's parsers (fuzz/, docs/fuzzing.md): builds every target once (cargo-fuzz's
# default: release, debug assertions, AddressSanitizer), then runs each for SECONDS (default
# 30), one after the other. Fails on the first crash, leak or input slower than TIMEOUT seconds,
# naming the input that did it. What a run adds to the corpus and its crash inputs stay under
# fuzz/target/ (ignored by git); the committed seeds in fuzz/corpus/ are only read.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 600 chunked
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
timeout=${FUZZ_TIMEOUT:-10}
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(request_head chunked sse json_scan config)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov); the stable compiler
# takes them when told it is bootstrapping itself.
export RUSTC_BOOTSTRAP=1

cargo fuzz build
work=fuzz/target/fuzz-run
for target in "${targets[@]}"; do
  rm -rf "$work/artifacts/$target"
  mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
  log="$work/$target.log"
  # New inputs go to the first corpus folder (the run's own), seeds are read from the second.
  if ! cargo fuzz run "$target" "$work/corpus/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$target/" >"$log" 2>&1; then
    grep -m 1 -A 6 "panicked at" "$log" || tail -n 40 "$log"
    echo "FUZZ FAILED: $target (log: $log; input: $(find "$work/artifacts/$target" -type f))"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  echo "fuzz $target: $runs runs in ${seconds} s ($rate exec/s), no crash"
done
echo "FUZZ OK: ${targets[*]}"
