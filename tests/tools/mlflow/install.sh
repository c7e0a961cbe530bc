#!/usr/bin/env bash
# Build .venv-mlflow: a full MLflow (its tracking server) for the tests that report to one
# (tests/conftest_tracking.py starts `mlflow server` from it). Kept apart from the platform's .venv, whose
# pyarrow full `mlflow` would change, and from the engine's, which has only `mlflow-skinny` (the client).
# Idempotent: does nothing when the stamp matches the hash of this script, the requirements and constraints.
#
#   tests/tools/mlflow/install.sh            install or update
#   tests/tools/mlflow/install.sh --force    rebuild even if the stamp matches
#
# Env: PYTHON (interpreter, default python3.11), LLMCT_MLFLOW_VENV (default .venv-mlflow).
set -euo pipefail

TOOL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$TOOL_DIR/../../.." && pwd)
VENV=${LLMCT_MLFLOW_VENV:-$ROOT/.venv-mlflow}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP=$VENV/.mlflow-installed

FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

inputs_hash() {
  {
    "$PYTHON" -c 'import sys; print(sys.version)'
    cat "$TOOL_DIR/install.sh" "$TOOL_DIR/requirements.txt" "$TOOL_DIR/constraints.txt"
  } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [[ $FORCE == 0 && -f $STAMP && "$(cat "$STAMP")" == "$HASH" && -x $VENV/bin/mlflow ]]
}

HASH=$(inputs_hash)
if up_to_date; then
  echo "mlflow: $VENV is up to date"
  exit 0
fi

# Two `make` targets (or CI and a developer) may run this at once: one builds, the other waits.
exec 9>"${TMPDIR:-/tmp}/llmct-mlflow-$(echo "$VENV" | sha256sum | cut -c1-12).lock"
flock 9
HASH=$(inputs_hash)
if up_to_date; then
  echo "mlflow: $VENV is up to date"
  exit 0
fi

started=$(date +%s)
echo "mlflow: building $VENV with $("$PYTHON" -V 2>&1)"
"$PYTHON" -m venv --clear "$VENV"
echo '*' > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q \
  -c "$TOOL_DIR/constraints.txt" -r "$TOOL_DIR/requirements.txt" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$VENV/bin/mlflow" --version
echo "$HASH" > "$STAMP"
echo "mlflow: ready in $(( $(date +%s) - started ))s: $VENV/bin/mlflow"
