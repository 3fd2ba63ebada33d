#!/usr/bin/env bash
# The release build: hydrenv and a profile-guided (PGO) proxy, in target/dist/ (docs/proxy.md,
# "Release build"). What ships, and what the benchmark measures (bench/run.sh).
#   scripts/build-release.sh            ~7.5 min from clean on 2 cores, ~1 s when nothing changed
#   PGO=0 scripts/build-release.sh      plain release proxy (no training run; ~2 min from clean)
# Steps: a plain release build of the workspace's binaries (mock and loadgen drive the training);
# an instrumented proxy (target/pgo/gen); bench/pgo_train.py sends it the gateway's traffic;
# llvm-profdata merges the counts; the proxy is built again with them (target/pgo/use).
# target/dist/ gets hydrenv and proxy (hydrenv execs the proxy next to it), and mock and loadgen
# so the benchmark finds everything in one directory; BUILD says how the proxy was built.
# Needs llvm-profdata from the toolchain's llvm-tools component (added with rustup when missing)
# and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist=target/dist
pgo=target/pgo

cargo build --quiet --release -p proxy -p mock -p hydrenv -p bench
mkdir -p "$dist"
ship() { cp -f "$1" "$dist/$(basename "$1").tmp" && mv -f "$dist/$(basename "$1").tmp" "$dist/$(basename "$1")"; }
for bin in hydrenv mock loadgen; do ship "target/release/$bin"; done

if [[ "${PGO:-1}" == 0 ]]; then
  ship target/release/proxy
  echo "plain release build (PGO=0)" >"$dist/BUILD"
  echo "release binaries in $dist (proxy without PGO: PGO=0)"
  exit 0
fi

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x "$profdata" ]] && command -v rustup >/dev/null 2>&1; then
  rustup component add llvm-tools >&2
fi
if [[ ! -x "$profdata" ]]; then
  echo "build-release: $profdata is missing: install the toolchain's llvm-tools component" \
    "(rustup component add llvm-tools), or build without PGO (PGO=0)" >&2
  exit 1
fi

# The instrumented build, in its own target directory: RUSTFLAGS differ from the plain build's,
# and sharing one directory would rebuild every crate each time it switches.
flags=${RUSTFLAGS:-}
RUSTFLAGS="$flags -Cprofile-generate=$root/$pgo/raw" \
  cargo build --quiet --release -p proxy --target-dir "$pgo/gen"

# Train only when the instrumented binary or the training changed: a new profile makes the last
# build start over.
stamp=$(cat "$pgo/gen/release/proxy" bench/pgo_train.py bench/harness.py | sha256sum | cut -d' ' -f1)
if [[ ! -f "$pgo/proxy.profdata" || "$(cat "$pgo/trained-on" 2>/dev/null)" != "$stamp" ]]; then
  rm -rf "$pgo/raw"
  LLVM_PROFILE_FILE="$root/$pgo/raw/proxy-%p-%m.profraw" \
    python3 bench/pgo_train.py --proxy "$pgo/gen/release/proxy" --bin-dir target/release
  "$profdata" merge -o "$pgo/proxy.profdata.tmp" "$pgo"/raw/proxy-*.profraw
  mv -f "$pgo/proxy.profdata.tmp" "$pgo/proxy.profdata"
  echo "$stamp" >"$pgo/trained-on"
fi

# Code the training never ran (error paths, reloads) is compiled as cold, for size. Functions the
# profile has no record of at all are compiled as usual, without a warning for each.
RUSTFLAGS="$flags -Cprofile-use=$root/$pgo/proxy.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --quiet --release -p proxy --target-dir "$pgo/use"
ship "$pgo/use/release/proxy"
echo "release build, proxy profile-guided (trained by bench/pgo_train.py)" >"$dist/BUILD"
echo "release binaries in $dist (proxy built with the profile of bench/pgo_train.py)"
