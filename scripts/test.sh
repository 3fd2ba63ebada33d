#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit and integration tests (including the
# official openai SDK end-to-end test), then the benchmark smoke run. Installs what the tests need
# first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean build and the tests write ~4 GB (target/ and fuzz/target/); say so before a full disk
# fails a compiler half-way with "No space left on device".
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if ((free_kb < 5 * 1024 * 1024)); then
  echo "test.sh: warning: only $((free_kb / 1024)) MB free where the project builds; a clean build and the tests need ~4 GB" >&2
fi
scripts/setup-python.sh
# redis-server for the limit tests (Debian package).
scripts/setup-system.sh
# hadolint on the Dockerfile, shellcheck on every shell script. Last line: `LINT OK`.
scripts/lint.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# terraform/ (and the Dockerfile) offline: terraform fmt and checkov, no failing check unless
# skipped with its reason in the code. Last line: `TERRAFORM CHECKS OK`.
scripts/check-terraform.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
# Fuzzing (docs/fuzzing.md): each cargo-fuzz target 30 s from its committed seeds; a crash fails.
scripts/fuzz.sh 30
# The local demo as a user meets it (debug builds): it serves, Ctrl-C leaves nothing running,
# and a taken port fails loudly. Last line: `DEMO TEST OK`.
scripts/demo-test.sh
# scripts/deploy.sh and sync-env.sh offline, with stand-ins for az, terraform, docker and curl:
# the plan is what runs, no secret shows. Last line: `DEPLOY TEST OK`.
scripts/deploy-test.sh
# Benchmark smoke (bench/README.md): every case once, tiny durations, on the debug binaries the
# tests just built, so the harness cannot rot. Installs nginx/wrk if missing. The numbers are
# meaningless and never fail CI; a broken harness does. Last line: `BENCH SMOKE OK: ...`.
BENCH_DEBUG=1 bench/run.sh --smoke
# The training run of the profile-guided release build (scripts/build-release.sh), briefly, on
# the same debug binaries: every request it sends must succeed.
python3 bench/pgo_train.py --proxy target/debug/proxy --bin-dir target/debug --smoke
