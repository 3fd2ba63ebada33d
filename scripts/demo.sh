#!/usr/bin/env bash
# Runs the product locally the way a container runs it (environment variables + `hydrenv run`),
# in front of two mock Azure OpenAI backends (one of which throttles 30 % of its requests), and
# prints ready-to-paste examples. Ctrl-C stops everything.
#   GATEWAY_PORT (8080), ADMIN_PORT (9091) change the listeners.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${GATEWAY_PORT:-8080}"
admin="${ADMIN_PORT:-9091}"
cargo build --release --quiet -p proxy -p mock -p hydrenv
bin=target/release
work=target/demo
mkdir -p "$work"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

start_mock() { # name, extra args...
  local name=$1; shift
  "$bin/mock" --listen 127.0.0.1:0 --name "$name" --api-key demo-backend-key --chunk-interval-ms 30 "$@" >"$work/$name.out" &
  pids+=($!)
  for _ in $(seq 100); do
    url=$(grep -o 'http://[0-9.:]*' "$work/$name.out" | head -1 || true)
    [[ -n "$url" ]] && { echo "$url"; return; }
    sleep 0.05
  done
  echo "mock $name did not start" >&2; exit 1
}
eus=$(start_mock eus-ptu)
wus=$(start_mock wus-payg --rate-429 0.3 --retry-after-ms 2000)

# The product starts the way a container starts it: environment variables and `hydrenv run`.
export AZURE_OPENAI_ENDPOINT_0="$eus" AZURE_OPENAI_KEY_0=demo-backend-key AZURE_OPENAI_NAME_0=eus-ptu AZURE_OPENAI_PRIORITY_0=10
export AZURE_OPENAI_ENDPOINT_1="$wus" AZURE_OPENAI_KEY_1=demo-backend-key AZURE_OPENAI_NAME_1=wus-payg AZURE_OPENAI_PRIORITY_1=5
export GATEWAY_CLIENT_NAME_0=demo GATEWAY_CLIENT_KEY_0=demo-client-key GATEWAY_REQUIRE_AUTH=true
export GATEWAY_LISTEN=127.0.0.1:$port GATEWAY_ADMIN_LISTEN=127.0.0.1:$admin GATEWAY_LOG_MODE=dev
export SHARED_ROOT="$PWD/$work/shared"
"$bin/hydrenv" render --dry-run >"$work/render.txt"
"$bin/hydrenv" run >"$work/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.05; done
curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$work/proxy.log"; exit 1; }

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
wait
