#!/usr/bin/env bash
# Runs the product locally the way a container runs it (environment variables + `hydrenv run`),
# in front of two mock Azure OpenAI backends (one of which throttles 30 % of its requests), and
# prints ready-to-paste examples. Ctrl-C (or any failure) stops everything it started.
#   GATEWAY_PORT (8080), ADMIN_PORT (9091) change the listeners.
#   DEMO_DEBUG=1 runs debug builds instead of release ones (quicker to build).
set -euo pipefail
cd "$(dirname "$0")/.."
port="${GATEWAY_PORT:-8080}"
admin="${ADMIN_PORT:-9091}"
work=target/demo

fail() {
  echo "demo: $*" >&2
  exit 1
}

# Every process this script starts, recorded here in the parent shell (a PID recorded inside a
# command substitution dies with its subshell), and stopped however the script ends.
pids=()
# shellcheck disable=SC2317,SC2329 # called by the traps below
cleanup() {
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# A listener already on a port would answer our readiness checks for a gateway that never
# started: refuse to start instead.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$port" "$admin"; do
  if port_taken "$p"; then
    if command -v ss >/dev/null; then ss -ltnpH "sport = :$p" >&2 || true; fi
    fail "port $p on 127.0.0.1 is already taken by another process; stop it, or pick other ports with GATEWAY_PORT / ADMIN_PORT"
  fi
done

if [[ "${DEMO_DEBUG:-}" == 1 ]]; then
  cargo build --quiet -p proxy -p mock -p hydrenv
  bin=target/debug
else
  cargo build --release --quiet -p proxy -p mock -p hydrenv
  bin=target/release
fi
mkdir -p "$work"

start_mock() { # name, extra args...: starts a mock backend in the background, records its PID
  local name=$1
  shift
  : >"$work/$name.out" # emptied here, before the mock starts: no stale address from a last run
  "$bin/mock" --listen 127.0.0.1:0 --name "$name" --api-key demo-backend-key \
    --chunk-interval-ms 30 "$@" >"$work/$name.out" 2>&1 &
  pids+=("$!")
}

mock_url() { # name, pid: waits until the mock announces its address, prints it
  local name=$1 pid=$2 url
  for _ in $(seq 100); do
    url=$(grep -o 'http://[0-9.:]*' "$work/$name.out" | head -1 || true)
    if [[ -n "$url" ]]; then
      echo "$url"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.out" >&2; fail "mock $name exited"; }
    sleep 0.05
  done
  fail "mock $name did not announce its address within 5 s"
}

start_mock eus-ptu
eus_pid=$!
start_mock wus-payg --rate-429 0.3 --retry-after-ms 2000
wus_pid=$!
eus=$(mock_url eus-ptu "$eus_pid")
wus=$(mock_url wus-payg "$wus_pid")

# The product starts the way a container starts it: environment variables and `hydrenv run`.
export AZURE_OPENAI_ENDPOINT_0="$eus" AZURE_OPENAI_KEY_0=demo-backend-key AZURE_OPENAI_NAME_0=eus-ptu AZURE_OPENAI_PRIORITY_0=10
export AZURE_OPENAI_ENDPOINT_1="$wus" AZURE_OPENAI_KEY_1=demo-backend-key AZURE_OPENAI_NAME_1=wus-payg AZURE_OPENAI_PRIORITY_1=5
export GATEWAY_CLIENT_NAME_0=demo GATEWAY_CLIENT_KEY_0=demo-client-key GATEWAY_REQUIRE_AUTH=true
export GATEWAY_LISTEN=127.0.0.1:$port GATEWAY_ADMIN_LISTEN=127.0.0.1:$admin GATEWAY_LOG_MODE=dev
export SHARED_ROOT="$PWD/$work/shared"
"$bin/hydrenv" render --dry-run >"$work/render.txt"
: >"$work/proxy.log"
"$bin/hydrenv" run >"$work/proxy.log" 2>&1 &
gateway=$!
pids+=("$gateway")

# Ready means: the process this script started is alive, says it listens on our admin port,
# and that port answers /readyz.
ready=
for _ in $(seq 200); do
  if ! kill -0 "$gateway" 2>/dev/null; then
    cat "$work/proxy.log" >&2
    fail "the gateway exited before it was ready (log above, also in $work/proxy.log)"
  fi
  if grep 'gateway listening' "$work/proxy.log" | grep -q "127.0.0.1:$admin" &&
    curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null; then
    ready=1
    break
  fi
  sleep 0.05
done
if [[ -z "$ready" ]]; then
  cat "$work/proxy.log" >&2
  fail "the gateway was not ready within 10 s (log above, also in $work/proxy.log)"
fi

cat <<TXT
Gateway ready on http://127.0.0.1:$port (admin: http://127.0.0.1:$admin/metrics), logs in $work/proxy.log
Rendered config (secrets redacted): $work/render.txt; release: $SHARED_ROOT/current/

curl -s http://127.0.0.1:$port/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 \\
  -H 'api-key: demo-client-key' -H 'content-type: application/json' \\
  -d '{"messages":[{"role":"user","content":"hello"}]}' -D - 

curl -sN http://127.0.0.1:$port/openai/v1/chat/completions -H 'Authorization: Bearer demo-client-key' \\
  -H 'content-type: application/json' -d '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}'

scripts/setup-python.sh && .venv/bin/python -c "from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:$port/openai/v1/', api_key='demo-client-key'); print(c.chat.completions.create(model='gpt-4o', messages=[{'role':'user','content':'hi'}]).choices[0].message.content)"
TXT
status=0
wait "$gateway" || status=$?
fail "the gateway exited with status $status (log: $work/proxy.log)"
