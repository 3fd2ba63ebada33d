#!/usr/bin/env bash
# Lints what cargo does not: the Dockerfile (hadolint) and every shell script of the repository
# (shellcheck). Both come from .venv (scripts/setup-python.sh installs them from
# scripts/lint-requirements.txt, idempotently), so every machine runs the same versions.
# Last line: `LINT OK`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
bin=.venv/bin
"$bin/hadolint" Dockerfile
shopt -s nullglob
"$bin/shellcheck" --external-sources scripts/*.sh .ci/run bench/run.sh
echo "LINT OK"
