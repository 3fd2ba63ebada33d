#!/usr/bin/env bash
# Deploys the gateway to Azure Container Apps, end to end (docs/deployment.md):
#   scripts/deploy.sh ENV [--stage S] [--no-azure-openai] [--local-docker] [--plan-only]
# Steps, in order (--stage S runs one of them; earlier steps' outputs are read from .deploy/ENV/):
#   00-bootstrap  terraform: the remote state (local state, workspace ENV)
#   10-platform   terraform: network, registry, Key Vault, identities, monitoring, environment
#   20-openai     terraform: Azure OpenAI accounts and deployments (--no-azure-openai skips it:
#                 bring your own endpoints in .env.ENV)
#   image         the image from ./Dockerfile, built and pushed by `az acr build` (--local-docker:
#                 docker build + docker push after `az acr login`)
#   sync          scripts/sync-env.sh ENV: .env.ENV -> app settings, .secrets.env.ENV -> Key Vault
#   30-workload   terraform: the Container App on the new image and settings; then the revision
#                 rollout (a restart when Terraform made no new revision, so new Key Vault values
#                 are read) and a wait until the revision is provisioned and healthy
#   smoke         GET /readyz (SMOKE_ADMIN_URL, when the admin port is reachable from here) and
#                 one chat completion through the gateway's URL with GATEWAY_CLIENT_KEY_0
# Each Terraform stage: init (10-30 with the azurerm backend of 00-bootstrap, key <stage>.tfstate),
# plan to .deploy/ENV/<stage>.tfplan, apply that plan, and `terraform output -json` turned into
# .deploy/ENV/<stage>.auto.tfvars.json, passed with -var-file to every later stage (an output
# feeds the later variable of the same name). Stage inputs: terraform/<stage>/terraform.tfvars.ENV
# (from terraform.tfvars.ENV.example).
# --plan-only: touches nothing, runs nothing that reaches Azure; prints every command it would
# run, secrets redacted. Every command is printed the same way before it runs for real.
# Environment: IMAGE_TAG (default: the commit, -dirty-<time> with local changes), IMAGE_NAME
# (genai-gateway), PGO (1; 0 = plain release proxy), SMOKE_MODEL (gpt-4o), SMOKE_ADMIN_URL,
# ROLLOUT_TIMEOUT (600 s).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/deploy-lib.sh
. "$ROOT/scripts/deploy-lib.sh"
cd "$ROOT"

STEPS=(00-bootstrap 10-platform 20-openai image sync 30-workload smoke)
usage() {
  EXIT_CODE=64 die "usage: scripts/deploy.sh ENV [--stage $(IFS='|'; echo "${STEPS[*]}")] [--no-azure-openai] [--local-docker] [--plan-only]"
}
DEPLOY_ENV='' only='' with_openai=1 local_docker=0
while (($#)); do
  case "$1" in
    --stage)
      (($# > 1)) || usage
      only=$2
      shift
      ;;
    --stage=*) only=${1#--stage=} ;;
    --no-azure-openai) with_openai=0 ;;
    --local-docker) local_docker=1 ;;
    --plan-only) PLAN_ONLY=1 ;;
    -*) usage ;;
    *)
      [[ -z "$DEPLOY_ENV" ]] || usage
      DEPLOY_ENV=$1
      ;;
  esac
  shift
done
[[ "$DEPLOY_ENV" =~ ^[a-z0-9][a-z0-9-]*$ ]] || usage
if [[ -n "$only" && " ${STEPS[*]} " != *" $only "* ]]; then usage; fi
if [[ "$only" == 20-openai && "$with_openai" == 0 ]]; then usage; fi
STATE="$ROOT/.deploy/$DEPLOY_ENV"
# Everything written from here on (plans, outputs, Terraform's data dirs) may hold a secret.
umask 077
init_private_dir
export PLAN_ONLY
tools=(az terraform python3 curl)
if ((local_docker)); then tools+=(docker); fi
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || [[ "$PLAN_ONLY" == 1 ]] || die "$tool is not installed"
done
if [[ "$PLAN_ONLY" == 1 ]]; then
  note "plan only: nothing below is run; commands as they would run, secrets redacted"
else
  mkdir -p "$STATE"
  chmod 700 "$STATE"
fi

# The secrets of this environment are never printed, wherever they would show up.
if [[ -f ".secrets.env.$DEPLOY_ENV" ]]; then
  while IFS=$'\t' read -r _ value; do secret "$value"; done < <(read_env_file ".secrets.env.$DEPLOY_ENV")
fi

wanted() { [[ -z "$only" || "$only" == "$1" ]]; }

tf() { # STAGE ARGS...: terraform in the stage's directory, with this environment's data dir
  local stage=$1
  shift
  run env "TF_DATA_DIR=$STATE/terraform/$stage" terraform "-chdir=terraform/$stage" "$@"
}

# VAR_FILES: the -var-file arguments of a stage: the outputs of every stage before it, then its
# own inputs (last, so a value the operator sets wins). Set here rather than printed: a `die` in
# a subshell would not stop the script.
set_var_files() {
  local stage=$1 earlier
  local own="terraform/$stage/terraform.tfvars.$DEPLOY_ENV"
  VAR_FILES=()
  for earlier in 00-bootstrap 10-platform 20-openai; do
    [[ "$earlier" < "$stage" ]] || break
    [[ "$earlier" != 20-openai || "$with_openai" == 1 ]] || continue
    local file="$STATE/$earlier.auto.tfvars.json"
    if [[ ! -f "$file" && "$PLAN_ONLY" != 1 ]]; then
      # Endpoints brought by the operator: no 20-openai outputs, the workload's default ({}).
      [[ "$earlier" != 20-openai ]] || continue
      die "${file#"$ROOT"/} is missing: apply $earlier first (scripts/deploy.sh $DEPLOY_ENV --stage $earlier)"
    fi
    VAR_FILES+=("-var-file=$file")
  done
  if [[ -f "$own" ]]; then
    VAR_FILES+=("-var-file=terraform.tfvars.$DEPLOY_ENV")
  elif [[ "$PLAN_ONLY" == 1 ]]; then
    note "$own is missing (copy $own.example): the real run stops here"
  else
    die "$own is missing: copy $own.example and fill it in"
  fi
}

# The outputs of an applied stage, as variables for the later ones (the raw output is kept only
# until it is converted: sensitive outputs are in it in clear).
save_outputs() {
  local stage=$1 raw="$STATE/$1.outputs.json"
  run_to "$raw" env "TF_DATA_DIR=$STATE/terraform/$stage" terraform "-chdir=terraform/$stage" output -json
  [[ "$PLAN_ONLY" == 1 ]] && return 0
  python3 - "$raw" "$STATE/$stage.auto.tfvars.json" <<'PY'
import json, os, sys
outputs = json.load(open(sys.argv[1]))
fd = os.open(sys.argv[2] + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump({name: o["value"] for name, o in outputs.items()}, f, indent=2, sort_keys=True)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
  rm -f "$raw"
  forget_outputs "$stage"
  note "outputs of $stage -> ${STATE#"$ROOT"/}/$stage.auto.tfvars.json"
}

# init, plan, apply, outputs. EXTRA: more plan arguments.
terraform_stage() {
  local stage=$1
  shift
  note "== $stage"
  if [[ "$stage" == 00-bootstrap ]]; then
    tf "$stage" init -input=false
    tf "$stage" workspace select -or-create=true "$DEPLOY_ENV"
  else
    local group account container
    output_of group 00-bootstrap state_resource_group_name
    output_of account 00-bootstrap state_storage_account_name
    output_of container 00-bootstrap state_container_name
    tf "$stage" init -input=false \
      "-backend-config=resource_group_name=$group" \
      "-backend-config=storage_account_name=$account" \
      "-backend-config=container_name=$container" \
      "-backend-config=key=$stage.tfstate" \
      "-backend-config=use_azuread_auth=true"
  fi
  set_var_files "$stage"
  tf "$stage" plan -input=false "-out=$STATE/$stage.tfplan" "${VAR_FILES[@]}" "$@"
  tf "$stage" apply -input=false "$STATE/$stage.tfplan"
  save_outputs "$stage"
}

image_ref() {
  if [[ -f "$STATE/image" ]]; then
    cat "$STATE/image"
  elif [[ "$PLAN_ONLY" == 1 ]]; then
    echo "<image built by the image step>"
  else
    die "no image built for $DEPLOY_ENV yet: run the image step (scripts/deploy.sh $DEPLOY_ENV --stage image)"
  fi
}

image_step() {
  note "== image"
  local tag=${IMAGE_TAG:-} name=${IMAGE_NAME:-genai-gateway}
  if [[ -z "$tag" ]]; then
    tag=$(git rev-parse --short=12 HEAD 2>/dev/null || echo manual)
    if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then tag="$tag-dirty-$(date -u +%Y%m%dT%H%M%SZ)"; fi
  fi
  local acr server
  output_of acr 10-platform acr_name
  output_of server 10-platform acr_login_server
  local ref="$server/$name:$tag"
  if ((local_docker)); then
    run az acr login --name "$acr"
    run docker build --build-arg "PGO=${PGO:-1}" --tag "$ref" --file Dockerfile .
    run docker push "$ref"
  else
    # Built on the registry's agents from the allowlisted context (.dockerignore).
    run az acr build --registry "$acr" --image "$name:$tag" --build-arg "PGO=${PGO:-1}" \
      --file Dockerfile --platform linux/amd64 .
  fi
  if [[ "$PLAN_ONLY" != 1 ]]; then printf '%s\n' "$ref" >"$STATE/image"; fi
  note "image: $ref"
}

sync_step() {
  note "== sync"
  local args=("$DEPLOY_ENV")
  if [[ "$PLAN_ONLY" == 1 ]]; then args+=(--plan-only); fi
  # Run in both modes: with --plan-only it prints its own commands and changes nothing.
  show scripts/sync-env.sh "${args[@]}"
  scripts/sync-env.sh "${args[@]}"
}

workload_step() {
  local before="" image
  image=$(image_ref)
  read_outputs 30-workload
  before=${OUTPUTS["30-workload latest_revision_name"]:-}
  [[ -f "$STATE/sync.auto.tfvars.json" || "$PLAN_ONLY" == 1 ]] ||
    die "no settings synced for $DEPLOY_ENV yet: run the sync step (scripts/deploy.sh $DEPLOY_ENV --stage sync)"
  terraform_stage 30-workload "-var-file=$STATE/sync.auto.tfvars.json" "-var=image=$image"

  note "== rollout"
  local app group revision
  output_of app 30-workload container_app_name
  output_of group 10-platform resource_group_name
  output_of revision 30-workload latest_revision_name
  if [[ "$PLAN_ONLY" == 1 ]]; then
    note "only when Terraform made no new revision (settings in Key Vault changed, nothing else):"
    show az containerapp revision restart --name "$app" --resource-group "$group" --revision "$revision"
  elif [[ "$revision" == "$before" ]]; then
    note "no new revision: restarting $revision so hydrenv renders the current Key Vault values"
    run az containerapp revision restart --name "$app" --resource-group "$group" --revision "$revision" --output none
  fi
  local query=(az containerapp revision show --name "$app" --resource-group "$group" --revision "$revision"
    --query "[properties.provisioningState, properties.healthState]" --output tsv)
  note "every 10 s until Provisioned and Healthy (or None: scaled to zero), at most ${ROLLOUT_TIMEOUT:-600} s:"
  show "${query[@]}"
  [[ "$PLAN_ONLY" == 1 ]] && return 0
  local give_up=$((SECONDS + ${ROLLOUT_TIMEOUT:-600})) state
  while :; do
    state=$("${query[@]}" | tr '\n' ' ')
    case "$state" in
      "Provisioned Healthy "* | "Provisioned None "*) break ;;
      Failed*) die "revision $revision: $state" ;;
    esac
    ((SECONDS < give_up)) || die "revision $revision not ready within ${ROLLOUT_TIMEOUT:-600} s: $state"
    sleep 10
  done
  note "revision $revision: $state"
}

smoke_step() {
  note "== smoke"
  local url key="" body="$PRIVATE_DIR/chat.json" headers="$PRIVATE_DIR/headers"
  local answer="$PRIVATE_DIR/answer" status="$PRIVATE_DIR/status"
  output_of url 30-workload gateway_url
  url=${url%/}
  if [[ -n "${SMOKE_ADMIN_URL:-}" ]]; then
    run curl --fail --silent --show-error --max-time 10 --retry 5 --retry-all-errors "${SMOKE_ADMIN_URL%/}/readyz"
  else
    note "/readyz is on the admin port, which ingress does not expose: readiness is the platform's probe (rollout above); set SMOKE_ADMIN_URL to query it from here"
  fi
  if [[ -f ".secrets.env.$DEPLOY_ENV" ]]; then
    key=$(read_env_file ".secrets.env.$DEPLOY_ENV" | sed -n 's/^GATEWAY_CLIENT_KEY_0\t//p')
  fi
  secret_file "$headers" "${key:+api-key: $key}" "<file: api-key from GATEWAY_CLIENT_KEY_0>"
  if [[ "$PLAN_ONLY" != 1 ]]; then
    printf '{"model":"%s","messages":[{"role":"user","content":"ping"}]}' "${SMOKE_MODEL:-gpt-4o}" >"$body"
  fi
  shown_as[$body]="<file: one chat message for ${SMOKE_MODEL:-gpt-4o}>"
  shown_as[$answer]="<file: the answer>"
  shown_as[$status]="<file: the status>"
  run_to "$status" curl --silent --show-error --max-time 120 --retry 5 --retry-all-errors \
    --header "@$headers" --header "content-type: application/json" --data "@$body" \
    --output "$answer" --write-out "%{http_code}" "$url/openai/v1/chat/completions"
  [[ "$PLAN_ONLY" == 1 ]] && return 0
  local code
  code=$(cat "$status")
  if [[ "$code" != 200 ]] || ! grep -q '"choices"' "$answer"; then
    redact "$(head -c 2000 "$answer" 2>/dev/null)" >&2
    die "smoke: a chat completion through $url answered $code"
  fi
  note "smoke: $url answers chat completions"
}

for step in "${STEPS[@]}"; do
  wanted "$step" || continue
  case "$step" in
    00-bootstrap | 10-platform) terraform_stage "$step" ;;
    20-openai) if ((with_openai)); then terraform_stage "$step"; elif [[ -z "$only" ]]; then note "== 20-openai skipped (--no-azure-openai)"; fi ;;
    image) image_step ;;
    sync) sync_step ;;
    30-workload) workload_step ;;
    smoke) smoke_step ;;
  esac
done
note "done: $DEPLOY_ENV${only:+ ($only)}"
