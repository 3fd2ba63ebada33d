#!/usr/bin/env bash
# Pushes one environment's settings and secrets to where its Container App reads them:
#   scripts/sync-env.sh ENV [--plan-only]
# Inputs, at the repository root (gitignored; docs/deployment.md, "Settings and secrets"):
#   .env.ENV          settings, NAME=VALUE: the workload's app settings. They are written to
#                     .deploy/ENV/sync.auto.tfvars.json as `app_settings`, which scripts/deploy.sh
#                     passes to terraform/30-workload.
#   .secrets.env.ENV  secrets, NAME=VALUE: each becomes a Key Vault secret in the vault of
#                     terraform/10-platform (`key_vault_name`), named as hydrenv imports it
#                     (GATEWAY_CLIENT_KEY_0 -> gateway-client-key-0). The value goes to
#                     `az keyvault secret set --file` from a private 0600 file, never on a command
#                     line. The app settings then list them in HYDRENV_KEY_VAULT_SECRETS (with
#                     KEY_VAULT_URI and ACA_MANAGED_IDENTITY_CLIENT_ID unless .env.ENV sets them),
#                     so hydrenv reads them with the gateway's identity at every start, and
#                     `hydrenv supervise` follows a rotation. No secret value reaches Terraform.
# A setting that hydrenv treats as secret (the "Secret" column of docs/configuration.md) may be
# in .env.ENV only as a Key Vault reference (kv://name, @Microsoft.KeyVault(...)); a plain value
# there is refused (exit 64): move it to .secrets.env.ENV.
# Never prints a secret value. --plan-only prints every command and the file it would write, and
# changes nothing. KEY_VAULT_NAME overrides the vault.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/deploy-lib.sh
. "$ROOT/scripts/deploy-lib.sh"

usage() { EXIT_CODE=64 die "usage: scripts/sync-env.sh ENV [--plan-only]"; }
DEPLOY_ENV=
for arg in "$@"; do
  case "$arg" in
    --plan-only) PLAN_ONLY=1 ;;
    -*) usage ;;
    *) [[ -z "$DEPLOY_ENV" ]] || usage; DEPLOY_ENV=$arg ;;
  esac
done
[[ "$DEPLOY_ENV" =~ ^[a-z0-9][a-z0-9-]*$ ]] || usage
STATE="$ROOT/.deploy/$DEPLOY_ENV"
umask 077
settings_file="$ROOT/.env.$DEPLOY_ENV"
secrets_file="$ROOT/.secrets.env.$DEPLOY_ENV"
init_private_dir

[[ -f "$settings_file" || -f "$secrets_file" ]] ||
  EXIT_CODE=64 die "neither .env.$DEPLOY_ENV nor .secrets.env.$DEPLOY_ENV exists (see .env.example, .secrets.env.example)"

declare -A settings=() secrets=()
setting_names=()
secret_names=()
if [[ -f "$settings_file" ]]; then
  while IFS=$'\t' read -r name value; do
    [[ -z "${settings[$name]+set}" ]] || EXIT_CODE=64 die ".env.$DEPLOY_ENV: $name is set twice"
    settings[$name]=$value
    setting_names+=("$name")
  done < <(read_env_file "$settings_file")
fi
if [[ -f "$secrets_file" ]]; then
  while IFS=$'\t' read -r name value; do
    [[ -z "${secrets[$name]+set}" ]] || EXIT_CODE=64 die ".secrets.env.$DEPLOY_ENV: $name is set twice"
    secrets[$name]=$value
    secret_names+=("$name")
    secret "$value"
  done < <(read_env_file "$secrets_file")
fi

is_reference() { [[ "$1" == kv://* || "$1" == @Microsoft.KeyVault\(* ]]; }

# The variables hydrenv treats as secret, from the generated reference (a test keeps it in step
# with hydrenv/src/vars.rs); group names `..._N` match any index.
secret_patterns=()
while IFS= read -r name; do
  if [[ "$name" == *_N ]]; then
    secret_patterns+=("^${name%_N}_[0-9]+\$")
  else
    secret_patterns+=("^$name\$")
  fi
done < <(sed -n "s/^| \`\([A-Z0-9_]*\)\` |[^|]*| yes |.*/\1/p" "$ROOT/docs/configuration.md")
((${#secret_patterns[@]})) || die "docs/configuration.md lists no secret variable: is it the generated reference?"
hydrenv_secret() {
  local pattern
  for pattern in "${secret_patterns[@]}"; do
    [[ "$1" =~ $pattern ]] && return 0
  done
  return 1
}

problems=()
for name in "${setting_names[@]}"; do
  if hydrenv_secret "$name" && ! is_reference "${settings[$name]}"; then
    problems+=("$name: a secret (docs/configuration.md); in .env.$DEPLOY_ENV only as a Key Vault reference: move its value to .secrets.env.$DEPLOY_ENV")
  fi
  [[ -z "${secrets[$name]+set}" ]] || problems+=("$name: in both .env.$DEPLOY_ENV and .secrets.env.$DEPLOY_ENV")
done
for name in "${secret_names[@]}"; do
  [[ "$name" =~ ^[A-Z][A-Z0-9_]*$ ]] || problems+=("$name: secret names are upper case (hydrenv maps gateway-client-key-0 back to GATEWAY_CLIENT_KEY_0)")
  [[ -n "${secrets[$name]}" ]] || problems+=("$name: empty value in .secrets.env.$DEPLOY_ENV")
  ! is_reference "${secrets[$name]}" || problems+=("$name: a Key Vault reference belongs in .env.$DEPLOY_ENV, not in .secrets.env.$DEPLOY_ENV")
done
if ((${#problems[@]})); then
  printf 'sync-env: %s\n' "${problems[@]}" >&2
  exit 64
fi

# Secrets to Key Vault.
imported=()
if ((${#secret_names[@]})); then
  vault=${KEY_VAULT_NAME:-}
  [[ -n "$vault" ]] || output_of vault 10-platform key_vault_name
  for name in "${secret_names[@]}"; do
    kv_name=$(tr 'A-Z_' 'a-z-' <<<"$name")
    file="$PRIVATE_DIR/$kv_name"
    secret_file "$file" "${secrets[$name]}" "<file holding $name from .secrets.env.$DEPLOY_ENV>"
    run az keyvault secret set --vault-name "$vault" --name "$kv_name" --file "$file" \
      --encoding utf-8 --output none --only-show-errors
    rm -f "$file"
    imported+=("$kv_name")
  done
  [[ -n "${settings[HYDRENV_KEY_VAULT_SECRETS]+set}" ]] || setting_names+=(HYDRENV_KEY_VAULT_SECRETS)
  listed=${settings[HYDRENV_KEY_VAULT_SECRETS]:-}
  settings[HYDRENV_KEY_VAULT_SECRETS]=$(IFS=,; echo "${listed:+$listed,}${imported[*]}")
  if [[ -z "${settings[KEY_VAULT_URI]+set}" && -z "${settings[KEY_VAULT_NAME]+set}" ]]; then
    output_of "settings[KEY_VAULT_URI]" 10-platform key_vault_uri
    setting_names+=(KEY_VAULT_URI)
  fi
  if [[ -z "${settings[ACA_MANAGED_IDENTITY_CLIENT_ID]+set}" ]]; then
    output_of "settings[ACA_MANAGED_IDENTITY_CLIENT_ID]" 10-platform gateway_identity_client_id
    setting_names+=(ACA_MANAGED_IDENTITY_CLIENT_ID)
  fi
fi

# Settings to the workload's variables.
tfvars="$STATE/sync.auto.tfvars.json"
json=$(
  for name in "${setting_names[@]}"; do printf '%s\t%s\n' "$name" "${settings[$name]}"; done |
    python3 -c '
import json, sys
pairs = dict(line.rstrip("\n").split("\t", 1) for line in sys.stdin if line.strip())
print(json.dumps({"app_settings": pairs}, indent=2, sort_keys=True))
'
)
if [[ "$PLAN_ONLY" == 1 ]]; then
  note "would write ${tfvars#"$ROOT"/} (for terraform/30-workload):"
else
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  (umask 077 && printf '%s\n' "$json" >"$tfvars.tmp" && mv -f "$tfvars.tmp" "$tfvars")
  note "wrote ${tfvars#"$ROOT"/} (for terraform/30-workload):"
fi
redact "$json"
note "${#setting_names[@]} settings; ${#imported[@]} secrets to Key Vault${imported[*]:+: ${imported[*]}}"
