#!/usr/bin/env bash
# Runs the gateway locally in front of two mock Azure OpenAI backends (one of which throttles
# 30 % of its requests), and prints ready-to-paste examples. Ctrl-C stops everything.
#   GATEWAY_PORT (8080), ADMIN_PORT (9091) change the listeners.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${GATEWAY_PORT:-8080}"
admin="${ADMIN_PORT:-9091}"
cargo build --release --quiet -p proxy -p mock
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

cat >"$work/gateway.yaml" <<YAML
version: 1
server: { listen: 127.0.0.1:$port, admin_listen: 127.0.0.1:$admin }
backends:
  - { name: eus-ptu, endpoint: "$eus", priority: 10, auth: { mode: api-key, api_key: demo-backend-key } }
  - { name: wus-payg, endpoint: "$wus", priority: 5, auth: { mode: api-key, api_key: demo-backend-key } }
clients:
  require_auth: true
  consumers:
    - { name: demo, key: demo-client-key }
log: { level: info, access: true }
YAML
"$bin/proxy" --check "$work/gateway.yaml"
"$bin/proxy" --config "$work/gateway.yaml" >"$work/proxy.log" &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.05; done

cat <<TXT
Gateway ready on http://127.0.0.1:$port (admin: http://127.0.0.1:$admin/metrics), logs in $work/proxy.log

curl -s http://127.0.0.1:$port/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 \\
  -H 'api-key: demo-client-key' -H 'content-type: application/json' \\
  -d '{"messages":[{"role":"user","content":"hello"}]}' -D - 

curl -sN http://127.0.0.1:$port/openai/v1/chat/completions -H 'Authorization: Bearer demo-client-key' \\
  -H 'content-type: application/json' -d '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}'

.venv/bin/python -c "from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:$port/openai/v1/', api_key='demo-client-key'); print(c.chat.completions.create(model='gpt-4o', messages=[{'role':'user','content':'hi'}]).choices[0].message.content)"
TXT
wait
