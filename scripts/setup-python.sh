#!/usr/bin/env bash
# Creates .venv with the official openai SDK for the end-to-end tests, the offline checkers of
# scripts/check-terraform.sh (checkov) and the linters of scripts/lint.sh (hadolint, shellcheck).
# Idempotent: does nothing when the venv already has the
# pinned requirements.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
reqs=("$root/tests/sdk/requirements.txt" "$root/scripts/check-requirements.txt"
  "$root/scripts/lint-requirements.txt")
stamp="$venv/.requirements.sha256"
want="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${reqs[@]/#/--requirement=}"
echo "$want" > "$stamp"
