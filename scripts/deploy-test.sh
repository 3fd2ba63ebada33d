#!/usr/bin/env bash
# Checks scripts/deploy.sh and scripts/sync-env.sh offline: they run in a copy of the repository
# with stand-ins for az, terraform, docker and curl first on the PATH, which record every call
# (argv, and what came through files) and answer what the scripts read (Terraform outputs, a
# healthy revision, a chat completion). Checked: --plan-only runs nothing and prints the sequence
# the real run then follows, command for command; the stages chain their outputs; secrets reach
# Key Vault and curl through files only, and no secret value (nor a sensitive Terraform output)
# appears in any output or recorded argument; --no-azure-openai, --local-docker and --stage; a
# plain secret in the settings file is refused. Last line: `DEPLOY TEST OK`.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "deploy-test: FAIL: $*" >&2
  exit 1
}

# Distinctive values: any of them in an output or an argv is a leak.
backend_key=sk-deploytest-backend-7f3a9c
client_key=ck-deploytest-client-51be02
appinsights=InstrumentationKey=deploytest-appinsights-d41f
secrets=("$backend_key" "$client_key" "$appinsights")

# The sandbox: the scripts and what they read, nothing else of the repository.
sandbox=$work/repo
mkdir -p "$sandbox/scripts" "$sandbox/docs"
cp scripts/deploy.sh scripts/sync-env.sh scripts/deploy-lib.sh "$sandbox/scripts/"
cp docs/configuration.md "$sandbox/docs/"
cp Dockerfile .dockerignore "$sandbox/"
for stage in 00-bootstrap 10-platform 20-openai 30-workload; do
  mkdir -p "$sandbox/terraform/$stage"
  echo "# $stage inputs for dev" >"$sandbox/terraform/$stage/terraform.tfvars.dev"
done
cat >"$sandbox/.env.dev" <<'EOF'
# settings
AZURE_OPENAI_ENDPOINT_0=https://eus.openai.example.test
AZURE_OPENAI_NAME_0=eus
GATEWAY_REQUIRE_AUTH=true
GATEWAY_CLIENT_NAME_0=smoke
export GATEWAY_LOG_MODE="prod"
EOF
cat >"$sandbox/.secrets.env.dev" <<EOF
AZURE_OPENAI_KEY_0=$backend_key
GATEWAY_CLIENT_KEY_0='$client_key'
EOF

# Terraform outputs per stage, as `terraform output -json` prints them.
outputs=$work/outputs
mkdir -p "$outputs"
out() { # stage name=value...: strings, sensitive when the name is app_insights_connection_string
  local stage=$1
  shift
  python3 - "$@" >"$outputs/$stage.json" <<'PY'
import json, sys
print(json.dumps({k: {"sensitive": k == "app_insights_connection_string", "type": "string", "value": v}
                  for k, v in (a.split("=", 1) for a in sys.argv[1:])}))
PY
}
out 00-bootstrap state_resource_group_name=rg-state-dev state_storage_account_name=ststatedev state_container_name=tfstate
out 10-platform resource_group_name=rg-gw-dev location=swedencentral acr_name=acrgwdev \
  acr_login_server=acrgwdev.azurecr.io key_vault_name=kv-gw-dev key_vault_uri=https://kv-gw-dev.vault.azure.net/ \
  gateway_identity_client_id=11111111-2222-3333-4444-555555555555 "app_insights_connection_string=$appinsights"
out 20-openai openai_account_ids=acct
out 30-workload container_app_name=ca-gw-dev container_app_fqdn=ca-gw-dev.example.test \
  gateway_url=https://ca-gw-dev.example.test latest_revision_name=ca-gw-dev--r1

# The stand-ins.
stubs=$work/bin
mkdir -p "$stubs" "$work/kv" "$work/tmp"
cat >"$stubs/stub" <<'EOF'
#!/usr/bin/env bash
# Records its call, answers like the tool it stands for.
set -euo pipefail
tool=${0##*/}
{ printf '%s' "$tool"; printf ' %q' "$@"; printf '\n'; } >>"$STUB_RECORD"
value_of() { # --option ARGS...: the value after --option
  local want=$1
  shift
  while (($#)); do [[ "$1" == "$want" ]] && { echo "$2"; return; }; shift; done
}
case "$tool" in
  terraform)
    stage='' sub=''
    for arg in "$@"; do
      case "$arg" in
        -chdir=*) stage=${arg#-chdir=terraform/} ;;
        -*) ;;
        *) [[ -n "$sub" ]] || sub=$arg ;;
      esac
    done
    [[ "$sub" != output ]] || cat "$STUB_OUTPUTS/$stage.json"
    ;;
  az)
    case "$1 $2 $3" in
      "keyvault secret set") cp "$(value_of --file "$@")" "$STUB_KV/$(value_of --name "$@")" ;;
      "containerapp revision show") printf 'Provisioned\nHealthy\n' ;;
    esac
    ;;
  curl)
    header=$(value_of --header "$@")
    cp "${header#@}" "$STUB_KV/curl-header"
    printf '{"choices":[{"message":{"content":"pong"}}]}' >"$(value_of --output "$@")"
    printf 200
    ;;
esac
EOF
chmod +x "$stubs/stub"
for tool in az terraform docker curl; do ln -s stub "$stubs/$tool"; done

record=$work/record
deploy() { # ARGS...: runs the sandbox's deploy.sh with the stand-ins; output in $log
  log=$work/log-$RANDOM
  : >"$record"
  env PATH="$stubs:$PATH" TMPDIR="$work/tmp" STUB_RECORD="$record" STUB_OUTPUTS="$outputs" \
    STUB_KV="$work/kv" IMAGE_TAG=t1 "$@" >"$log" 2>&1
}
no_secrets_in() {
  local file secret
  for file in "$@"; do
    for secret in "${secrets[@]}"; do
      ! grep -qF -- "$secret" "$file" || fail "a secret value shows in $(basename "$file"):"$'\n'"$(cat "$file")"
    done
  done
}
# The commands of a plan (lines `+ ...`) or of a record, one normalised line each, so that a
# placeholder of the plan and the value of the run compare equal: the tool and its subcommand
# words; for terraform the stage, the subcommand and the -var-file / backend key arguments; for
# curl the URL's path.
commands() { # plan|record FILE
  python3 - "$@" <<'PY'
import itertools, re, shlex, sys
kind, path = sys.argv[1], sys.argv[2]
for line in open(path):
    if kind == "plan":
        if not line.startswith("+ "):
            continue
        line = re.sub(r" > .*$", "", line[2:])  # run_to's redirection
    words = shlex.split(line)
    while words and (words[0] == "env" or "=" in words[0]):
        words.pop(0)
    tool, args = words[0], words[1:]
    if tool == "scripts/sync-env.sh":
        continue
    if args[:3] == ["containerapp", "revision", "restart"]:
        continue  # conditional: printed by a plan, run only when no new revision came
    if tool == "terraform":
        keep = [a.split("/")[-1] for a in args if a.startswith("-chdir=")]
        keep += [a for a in args if not a.startswith("-")][:1]
        keep += sorted(a.split("=", 1)[0] + "=" + a.split("=", 1)[1].split("/")[-1]
                       for a in args if a.startswith(("-var-file=", "-backend-config=key")))
    elif tool == "curl":
        keep = [re.sub(r"^(<[^>]*>|https?://[^/]+)", "", args[-1])]
    else:
        keep = [a for a in itertools.takewhile(lambda a: not a.startswith("-"), args) if "<" not in a]
    print(tool, *keep)
PY
}

# 1. --plan-only: nothing runs, nothing is written, every command printed, no secret.
deploy "$sandbox/scripts/deploy.sh" dev --plan-only || { cat "$log"; fail "--plan-only failed"; }
plan=$log
[[ ! -s "$record" ]] || fail "--plan-only ran commands:"$'\n'"$(cat "$record")"
[[ ! -e "$sandbox/.deploy" ]] || fail "--plan-only wrote $(find "$sandbox/.deploy")"
no_secrets_in "$plan"
grep -q 'az keyvault secret set --vault-name \\<key_vault_name\\ from\\ 10-platform\\> --name gateway-client-key-0 --file <file holding GATEWAY_CLIENT_KEY_0 from .secrets.env.dev>' "$plan" ||
  fail "the plan does not show how a secret reaches Key Vault:"$'\n'"$(cat "$plan")"
grep -q '^+ az containerapp revision restart' "$plan" || fail "the plan does not show the conditional restart"
grep -q '"HYDRENV_KEY_VAULT_SECRETS": "azure-openai-key-0,gateway-client-key-0"' "$plan" ||
  fail "the plan does not show the app settings naming the Key Vault secrets"

# 2. The real run follows the plan, command for command.
deploy "$sandbox/scripts/deploy.sh" dev || { cat "$log"; fail "deploy failed"; }
no_secrets_in "$log" "$record"
diff <(commands plan "$plan") <(commands record "$record") >"$work/diff" ||
  fail "the run differs from its plan (< plan, > run):"$'\n'"$(cat "$work/diff")"
expected_order=(
  "terraform 00-bootstrap init" "terraform 00-bootstrap workspace" "terraform 00-bootstrap plan"
  "terraform 00-bootstrap apply" "terraform 00-bootstrap output"
  "terraform 10-platform init -backend-config=key=10-platform.tfstate"
  "terraform 10-platform plan -var-file=00-bootstrap.auto.tfvars.json -var-file=terraform.tfvars.dev"
  "terraform 20-openai plan -var-file=00-bootstrap.auto.tfvars.json -var-file=10-platform.auto.tfvars.json -var-file=terraform.tfvars.dev"
  "az acr build"
  "az keyvault secret set"
  "terraform 30-workload plan -var-file=00-bootstrap.auto.tfvars.json -var-file=10-platform.auto.tfvars.json -var-file=20-openai.auto.tfvars.json -var-file=sync.auto.tfvars.json -var-file=terraform.tfvars.dev"
  "az containerapp revision show"
  "curl /openai/v1/chat/completions"
)
commands record "$record" >"$work/ran"
line=0
for want in "${expected_order[@]}"; do
  found=$(awk -v want="$want" -v from="$line" 'NR > from && index($0, want) == 1 { print NR; exit }' "$work/ran")
  [[ -n "$found" ]] || fail "missing or out of order: '$want' in"$'\n'"$(cat "$work/ran")"
  line=$found
done
grep -q -- '-var=image=acrgwdev.azurecr.io/genai-gateway:t1' "$record" || fail "30-workload did not get the built image"
grep -q -- '--registry acrgwdev --image genai-gateway:t1' "$record" || fail "az acr build did not use the platform's registry"
! grep -q 'revision restart' "$record" || fail "a first deploy restarted a revision"
# Secrets arrived, through files: Key Vault got each value exactly, curl the client key.
[[ "$(cat "$work/kv/azure-openai-key-0")" == "$backend_key" ]] || fail "Key Vault got a wrong AZURE_OPENAI_KEY_0"
[[ "$(cat "$work/kv/gateway-client-key-0")" == "$client_key" ]] || fail "Key Vault got a wrong GATEWAY_CLIENT_KEY_0"
[[ "$(cat "$work/kv/curl-header")" == "api-key: $client_key" ]] || fail "the smoke request did not carry the client key"
# What the workload gets, and how the files are kept.
state=$sandbox/.deploy/dev
no_secrets_in "$state/sync.auto.tfvars.json"
python3 - "$state/sync.auto.tfvars.json" <<'PY' || fail "sync.auto.tfvars.json: $(cat "$state/sync.auto.tfvars.json")"
import json, sys
s = json.load(open(sys.argv[1]))["app_settings"]
assert s["HYDRENV_KEY_VAULT_SECRETS"] == "azure-openai-key-0,gateway-client-key-0", s
assert s["KEY_VAULT_URI"] == "https://kv-gw-dev.vault.azure.net/", s
assert s["ACA_MANAGED_IDENTITY_CLIENT_ID"] == "11111111-2222-3333-4444-555555555555", s
assert s["GATEWAY_LOG_MODE"] == "prod" and s["AZURE_OPENAI_NAME_0"] == "eus", s
assert "AZURE_OPENAI_KEY_0" not in s and "GATEWAY_CLIENT_KEY_0" not in s, s
PY
[[ "$(stat -c %a "$state")" == 700 ]] || fail ".deploy/dev is not private"
for file in "$state"/*.json "$state"/*.tfplan; do
  [[ ! -e "$file" || "$(stat -c %a "$file")" == 600 ]] || fail "$file is not 0600"
done
[[ -z "$(ls -A "$work/tmp")" ]] || fail "temporary files left: $(ls -A "$work/tmp")"

# 3. The workload alone, again: no new revision, so the revision is restarted (new Key Vault values).
deploy "$sandbox/scripts/deploy.sh" dev --stage 30-workload || { cat "$log"; fail "--stage 30-workload failed"; }
grep -q '^az containerapp revision restart --name ca-gw-dev --resource-group rg-gw-dev --revision ca-gw-dev--r1' "$record" ||
  fail "an unchanged revision was not restarted:"$'\n'"$(cat "$record")"
! grep -q -e '00-bootstrap init' -e 'acr build' -e 'keyvault' "$record" || fail "--stage 30-workload ran other steps"

# 4. Bring-your-own endpoints and a local docker build.
rm -rf "$state"
deploy "$sandbox/scripts/deploy.sh" dev --no-azure-openai --local-docker || { cat "$log"; fail "--no-azure-openai --local-docker failed"; }
no_secrets_in "$log" "$record"
! grep -q -e '20-openai' -e 'acr build' "$record" || fail "20-openai or az acr build ran:"$'\n'"$(cat "$record")"
for want in 'az acr login --name acrgwdev' 'docker build --build-arg PGO=1 --tag acrgwdev.azurecr.io/genai-gateway:t1' \
  'docker push acrgwdev.azurecr.io/genai-gateway:t1'; do
  grep -q "^$want" "$record" || fail "missing: $want"
done

# 5. A secret in the settings file is refused, by name, without its value; a reference is fine.
echo "AZURE_OPENAI_KEY_0=$backend_key" >>"$sandbox/.env.dev"
status=0
deploy "$sandbox/scripts/sync-env.sh" dev || status=$?
[[ $status == 64 ]] || { cat "$log"; fail "sync-env accepted a plain secret in .env.dev (status $status)"; }
grep -q 'AZURE_OPENAI_KEY_0: a secret' "$log" || fail "the refusal does not name AZURE_OPENAI_KEY_0: $(cat "$log")"
no_secrets_in "$log"
[[ ! -s "$record" ]] || fail "sync-env ran commands before refusing"
sed -i '$d' "$sandbox/.env.dev"
echo "AZURE_OPENAI_KEY_1=kv://aoai-key-1" >>"$sandbox/.env.dev"
deploy "$sandbox/scripts/sync-env.sh" dev --plan-only || { cat "$log"; fail "a Key Vault reference in .env.dev was refused"; }

echo "DEPLOY TEST OK"
