# shellcheck shell=bash
# Shared by scripts/deploy.sh and scripts/sync-env.sh (sourced, not run): how a command is shown
# and run, --plan-only, secret redaction, env files and the JSON files under .deploy/<env>/.
#
# Every command that reaches Azure (az, terraform, docker, curl) goes through `run` or `run_to`:
# it is printed first, as a shell would take it, then run; with PLAN_ONLY=1 it is only printed.
# Secret values are never an argument: they go through files (0600, in a private temporary
# directory removed on exit) or stdin, and any value registered with `secret` is replaced by
# <redacted> in everything these functions print.

PLAN_ONLY=${PLAN_ONLY:-0}
# Values that must never be printed.
secret_values=()
# Arguments printed as a label instead (temporary files that hold a secret): path -> label.
declare -A shown_as=()

die() {
  echo "${0##*/}: $*" >&2
  exit "${EXIT_CODE:-1}"
}

note() { echo "# $*"; }

secret() { [[ -z "$1" ]] || secret_values+=("$1"); }

redact() {
  local text=$1 value
  for value in "${secret_values[@]}"; do
    text=${text//"$value"/<redacted>}
  done
  printf '%s\n' "$text"
}

# An argument as printed: a secret file's label, else shell-quoted.
shown() {
  local arg=$1 path
  for path in "${!shown_as[@]}"; do
    if [[ "$arg" == *"$path"* ]]; then
      printf '%s\n' "${arg//"$path"/${shown_as[$path]}}"
      return 0
    fi
  done
  printf '%q\n' "$arg"
}

# The command line as it would be typed, with labels for secret files and secrets redacted.
show() {
  local words=() arg
  for arg in "$@"; do words+=("$(shown "$arg")"); done
  redact "+ ${words[*]}"
}

run() {
  show "$@"
  [[ "$PLAN_ONLY" == 1 ]] && return 0
  "$@"
}

# run_to FILE CMD...: the command's standard output goes to FILE (created 0600).
run_to() {
  local file=$1
  shift
  redact "$(show "$@") > $(shown "${file#"$ROOT"/}")"
  [[ "$PLAN_ONLY" == 1 ]] && return 0
  (umask 077 && "$@" >"$file")
}

# A private directory for files holding secrets, removed however the script ends. Called once by
# each script at its top level (a trap set in a command substitution would fire at once).
init_private_dir() {
  PRIVATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/deploy.XXXXXX")
  chmod 700 "$PRIVATE_DIR"
  # shellcheck disable=SC2064 # the path is fixed now
  trap "rm -rf '$PRIVATE_DIR'" EXIT
}

# secret_file FILE VALUE LABEL: writes VALUE (exactly, no newline added) to FILE, a path under
# $PRIVATE_DIR, and shows FILE as LABEL in printed commands. With --plan-only nothing is written.
# Call it directly, not in a command substitution (the label would be lost with the subshell).
secret_file() {
  if [[ "$PLAN_ONLY" != 1 ]]; then
    (umask 077 && printf '%s' "$2" >"$1")
  fi
  shown_as[$1]=$3
}

# read_env_file FILE: prints NAME<TAB>VALUE lines of a dotenv file (NAME=VALUE, `#` comments,
# blank lines, an optional `export `, one pair of surrounding quotes stripped). The file is
# parsed, never sourced: a value is text, not shell code.
read_env_file() {
  local file=$1 line name value n=0
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    line=${line%$'\r'}
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    line=${line#export }
    if [[ ! "$line" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      EXIT_CODE=64 die "$file:$n: not NAME=VALUE"
    fi
    name=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
      value=${BASH_REMATCH[1]}
    fi
    printf '%s\t%s\n' "$name" "$value"
  done <"$file"
}

# Outputs of applied stages, read once per stage from .deploy/<env>/<stage>.auto.tfvars.json
# (one python3 start per stage, not per value): "stage name" -> value (strings as they are,
# other values as JSON).
declare -A OUTPUTS=() OUTPUTS_READ=()
read_outputs() { # STAGE
  local stage=$1 file="$STATE/$1.auto.tfvars.json" name value
  [[ -z "${OUTPUTS_READ[$stage]:-}" ]] || return 0
  OUTPUTS_READ[$stage]=1
  [[ -f "$file" ]] || return 0
  while IFS=$'\t' read -r name value; do
    OUTPUTS["$stage $name"]=$value
  done < <(python3 - "$file" <<'PY'
import json, sys
for name, value in json.load(open(sys.argv[1])).items():
    text = value if isinstance(value, str) else json.dumps(value)
    if "\t" in text or "\n" in text:
        text = json.dumps(text)
    print(f"{name}\t{text}")
PY
  )
}

# forget_outputs STAGE: after an apply, the stage's outputs are read again when next asked for.
forget_outputs() {
  local key
  for key in "${!OUTPUTS[@]}"; do
    [[ "$key" != "$1 "* ]] || unset "OUTPUTS[$key]"
  done
  unset "OUTPUTS_READ[$1]"
}

# output_of VAR STAGE NAME: sets VAR to an output of an applied stage; with --plan-only and no
# such output yet, to a placeholder naming it. Call it directly (not in a command substitution),
# so the outputs are read once.
output_of() {
  read_outputs "$2"
  if [[ -n "${OUTPUTS["$2 $3"]+set}" ]]; then
    printf -v "$1" '%s' "${OUTPUTS["$2 $3"]}"
    return 0
  fi
  [[ "$PLAN_ONLY" == 1 ]] || die "$3: not an output of $2 (${STATE#"$ROOT"/}/$2.auto.tfvars.json); apply $2 first (scripts/deploy.sh $DEPLOY_ENV --stage $2)"
  printf -v "$1" '<%s from %s>' "$3" "$2"
}
