#!/usr/bin/env bash
# Offline checks of terraform/ and, once there is one, of the Dockerfile:
#   - `terraform fmt -check -recursive terraform`, plus the terraform.tfvars.<env>[.example]
#     files (fmt skips them by name, so each goes through `terraform fmt -` on stdin);
#   - checkov with no failing check and no file it cannot parse; a check that does not apply is
#     skipped by a `#checkov:skip=ID:reason` comment next to its resource.
# `terraform init/validate` cannot run here (providers cannot be downloaded); hydrenv's terraform
# test (cargo nextest run -p hydrenv terraform) checks the stages' contract instead.
# checkov comes from .venv (scripts/setup-python.sh, idempotent). Nothing here uses the network:
# checkov runs with --skip-download, inside an empty network namespace when unshare allows it.
# Last line: `TERRAFORM CHECKS OK`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
if ! command -v terraform >/dev/null; then
  echo "terraform is not installed (machines of this project come with it; it is not on a package registry)" >&2
  exit 1
fi
export TF_CLI_CONFIG_FILE=/dev/null # no ~/.terraformrc here; keeps terraform from warning

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

terraform fmt -check -recursive terraform
unformatted=()
while IFS= read -r -d '' example; do
  if ! terraform fmt - <"$example" >"$out/formatted" || ! cmp -s "$out/formatted" "$example"; then
    unformatted+=("$example")
  fi
done < <(find terraform -name 'terraform.tfvars.*' -print0)
if ((${#unformatted[@]})); then
  echo "not formatted (terraform fmt - < FILE): ${unformatted[*]}" >&2
  exit 1
fi

isolate=()
if unshare --net true 2>/dev/null; then
  isolate=(unshare --net)
fi
# checkov exits non-zero on a failed check; a file it cannot parse only shows in its summary.
checkov() {
  local name=$1
  shift
  "${isolate[@]}" .venv/bin/checkov "$@" --quiet --compact --skip-download \
    -o cli -o json --output-file-path "console,$out/$name.json"
  .venv/bin/python - "$out/$name.json" <<'PY'
import json, sys
reports = json.load(open(sys.argv[1]))
reports = reports if isinstance(reports, list) else [reports]
errors = sum(r.get("summary", {}).get("parsing_errors", 0) for r in reports)
if errors:
    sys.exit(f"checkov could not parse {errors} file(s); run it with LOG_LEVEL=DEBUG to see which")
PY
}

checkov terraform -d terraform --framework terraform
if [[ -f Dockerfile ]]; then
  checkov dockerfile -f Dockerfile --framework dockerfile
fi
echo "TERRAFORM CHECKS OK"
