#!/usr/bin/env bash
# The gateway benchmark, one command (see bench/README.md):
#   bench/run.sh            full run, ~7.5 minutes + the release build (scripts/build-release.sh,
#                           ~7.5 min from clean); bench/results/<time>-full.json, latest.md
#   bench/run.sh --smoke    every case once, tiny durations (CI); no thresholds
# Other options go to bench/bench.py (--cases, --reps, --bin-dir, --no-pin, --out).
#   BENCH_DEBUG=1           use the debug binaries (target/debug) instead of the release build
# Installs what it needs first (idempotent): nginx, wrk, redis and perf from the OS packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
# The limits case counts through a real redis-server (redis-tools: redis-cli, redis-benchmark).
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
if [[ " $* " != *" --smoke "* ]] && ! command -v perf >/dev/null 2>&1; then
  need+=(linux-perf)
fi
if ((${#need[@]})); then
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  # Only refresh the package lists when a package is unknown (fresh container).
  if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq
  fi
  # linux-perf is optional (the profile is skipped without it).
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]/linux-perf/}" >/dev/null
fi

# hydrenv starts the gateway, as in production (`hydrenv run` execs the proxy next to it).
if [[ -n "${BENCH_DEBUG:-}" ]]; then
  cargo build --quiet -p proxy -p mock -p hydrenv -p bench
  bin=target/debug
else
  # What ships: hydrenv and the profile-guided proxy (scripts/build-release.sh; PGO=0 for a
  # plain release proxy).
  scripts/build-release.sh
  bin=target/dist
fi
exec python3 bench/bench.py --bin-dir "$bin" "$@"
