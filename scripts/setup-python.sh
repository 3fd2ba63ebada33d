#!/usr/bin/env bash
# Creates .venv with the Python packages the tests use: the official openai SDK for the
# end-to-end tests (tests/sdk/requirements.txt) and the offline checkers such as checkov
# (scripts/requirements-tools.txt). Idempotent: does nothing when the venv already has the
# pinned requirements.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
reqs=("$root/tests/sdk/requirements.txt" "$root/scripts/requirements-tools.txt")
stamp="$venv/.requirements.sha256"
want="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
python3 -m venv "$venv"
args=()
for req in "${reqs[@]}"; do
  args+=(-r "$req")
done
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
echo "$want" > "$stamp"
