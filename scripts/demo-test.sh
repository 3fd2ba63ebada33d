#!/usr/bin/env bash
# Checks scripts/demo.sh as a user meets it, on debug builds (DEMO_DEBUG=1): it serves, Ctrl-C
# (SIGINT to the script, and to its whole process group as a terminal sends it) leaves no process
# behind, a failure after the mock backends started leaves none either, and an admin port taken
# by another server fails loudly instead of reporting that server as the gateway.
# Last line: `DEMO TEST OK`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Job control: each demo runs in its own process group, as a shell's foreground job does, with
# SIGINT delivered (a background job of a script without job control ignores it).
set -m
out=$(mktemp -d)
helpers=()
groups=() # process groups of the demos, stopped at the end if a failing check left them running
# shellcheck disable=SC2317 # called by the trap
stop_helpers() {
  set +m
  if ((${#helpers[@]})); then
    kill "${helpers[@]}" 2>/dev/null || true
    wait "${helpers[@]}" 2>/dev/null || true
  fi
  for group in "${groups[@]}"; do
    kill -TERM -- "-$group" 2>/dev/null || true
  done
  rm -rf "$out"
}
trap stop_helpers EXIT

fail() {
  echo "demo-test: FAIL: $*" >&2
  exit 1
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Processes left in the process group of a demo that has exited.
left_in() { pgrep -g "$1" -a || true; }

# Starts the demo in the background with the given environment; sets `demo` (its PID, which is
# also its process group) and `log`.
start_demo() {
  log="$out/demo-$RANDOM.log"
  env DEMO_DEBUG=1 "$@" scripts/demo.sh >"$log" 2>&1 &
  demo=$!
  groups+=("$demo")
}

wait_ready() {
  for _ in $(seq 1200); do
    grep -q '^Gateway ready' "$log" && return 0
    kill -0 "$demo" 2>/dev/null || { cat "$log" >&2; fail "the demo exited before it was ready"; }
    sleep 0.1
  done
  cat "$log" >&2
  fail "the demo was not ready within 120 s"
}

# Stops a ready demo with SIGINT sent to `target` (a PID, or -PGID for the group); checks its exit
# status and that nothing it started is left.
interrupt() {
  local target=$1 status=0
  kill -INT -- "$target"
  wait "$demo" || status=$?
  [[ $status == 130 ]] || { cat "$log" >&2; fail "exit status $status after SIGINT to $target, not 130"; }
  local left
  left=$(left_in "$demo")
  [[ -z "$left" ]] || fail "left running after SIGINT to $target:"$'\n'"$left"
}

# 1. Serves, and SIGINT to the script alone stops the mocks and the gateway too.
start_demo GATEWAY_PORT="$(free_port)" ADMIN_PORT="$(free_port)"
wait_ready
port=$(sed -n 's|^Gateway ready on http://127.0.0.1:\([0-9]*\).*|\1|p' "$log")
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'api-key: demo-client-key' \
  -H 'content-type: application/json' -d '{"messages":[{"role":"user","content":"hi"}]}' \
  "http://127.0.0.1:$port/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21")
[[ $code == 200 ]] || fail "a chat completion through the demo got $code"
interrupt "$demo"

# 2. Ctrl-C in a terminal: SIGINT to the whole process group.
start_demo GATEWAY_PORT="$(free_port)" ADMIN_PORT="$(free_port)"
wait_ready
interrupt "-$demo"

# 3. The admin port is held by a server answering 200 to everything: refused before starting.
admin=$(free_port)
python3 -c '
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ready\n")
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
' "$admin" &
helpers+=("$!")
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.05; done
start_demo GATEWAY_PORT="$(free_port)" ADMIN_PORT="$admin"
status=0
wait "$demo" || status=$?
[[ $status != 0 ]] || fail "the demo succeeded with its admin port taken"
grep -q "port $admin on 127.0.0.1 is already taken" "$log" || { cat "$log" >&2; fail "no clear message for the taken port"; }
! grep -q 'Gateway ready' "$log" || fail "the demo reported another process as its gateway"
[[ -z "$(left_in "$demo")" ]] || fail "left running after the refusal: $(left_in "$demo")"

# 4. A failure after the mocks started (hydrenv refuses the listen address): they are stopped.
start_demo GATEWAY_PORT=not-a-port ADMIN_PORT="$(free_port)"
status=0
wait "$demo" || status=$?
[[ $status != 0 ]] || fail "the demo succeeded with GATEWAY_PORT=not-a-port"
grep -q 'GATEWAY_LISTEN' "$log" || { cat "$log" >&2; fail "the refusal does not name GATEWAY_LISTEN"; }
[[ -z "$(left_in "$demo")" ]] || fail "left running after a failed start: $(left_in "$demo")"

echo "DEMO TEST OK"
