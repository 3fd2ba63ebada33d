#!/usr/bin/env bash
# Installs the Debian packages the tests run for real (idempotent: nothing happens when they are
# there): redis-server, which the limit tests start on a free port of 127.0.0.1
# (proxy/tests/it/redis_server.rs).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ((${#need[@]} == 0)); then
  exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
# Only refresh the package lists when a package is unknown (fresh machine).
if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
  "${sudo[@]}" apt-get update -qq
fi
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package starts a server on 6379 under systemd where there is one; the tests start their own.
command -v redis-server >/dev/null
