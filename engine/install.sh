#!/usr/bin/env bash
# Build .venv-engine: LLaMA-Factory's own Python environment, kept apart from the platform's .venv
# (the process runtime is pointed at its bin/ through LLMCT_ENGINE_BIN). Idempotent: does nothing
# when the stamp matches the hash of the files below. See docs/engine.md.
#
#   engine/install.sh            install or update (a changed hash rebuilds the venv from scratch)
#   engine/install.sh --force    rebuild even if the stamp matches
#
# Env: PYTHON (interpreter for the venv, default python3.11), LLMCT_ENGINE_VENV (default .venv-engine).
set -euo pipefail

ENGINE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$ENGINE_DIR")
VENV=${LLMCT_ENGINE_VENV:-$ROOT/.venv-engine}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP=$VENV/.engine-installed
TORCH_VERSION=2.13.0  # the CPU wheel this machine ships on disk; constraints.txt pins its +cpu build

FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

inputs_hash() {
  # Everything that decides what gets installed; the Python version too.
  {
    "$PYTHON" -c 'import sys; print(sys.version)'
    cat "$ENGINE_DIR/install.sh" "$ENGINE_DIR/requirements.txt" "$ENGINE_DIR/constraints.txt"
    find "$ENGINE_DIR/torchaudio-stub" -type f \( -name '*.py' -o -name '*.toml' \) -print0 | sort -z | xargs -0 cat
  } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [[ $FORCE == 0 && -f $STAMP && "$(cat "$STAMP")" == "$HASH" && -x $VENV/bin/llamafactory-cli ]]
}

# Where the CPU torch wheel lies on machines of this kind; pip's user config names it too, but an
# install run with another HOME or a scrubbed environment would not see that.
FIND_LINKS=()
[[ -d /opt/wheels ]] && FIND_LINKS=(--find-links /opt/wheels)

pip_install() {
  # This machine's pip config lists local indexes that lack most packages; their warnings are noise.
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${FIND_LINKS[@]}" "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

HASH=$(inputs_hash)
if up_to_date; then
  echo "engine: $VENV is up to date"
  exit 0
fi

# Two `make` targets (or CI and a developer) may run this at once: one builds, the other waits.
exec 9>"${TMPDIR:-/tmp}/llmct-engine-$(echo "$VENV" | sha256sum | cut -c1-12).lock"
flock 9
HASH=$(inputs_hash)
if up_to_date; then
  echo "engine: $VENV is up to date"
  exit 0
fi

started=$(date +%s)
echo "engine: building $VENV with $("$PYTHON" -V 2>&1)"
"$PYTHON" -m venv --clear "$VENV"
echo '*' > "$VENV/.gitignore"  # keeps the venv out of git without touching the repo's .gitignore

# 1. torch first, from the CPU wheel on disk. The constraint pins 2.13.0+cpu, so should that wheel be
#    missing pip fails here instead of downloading a multi-GB CUDA build.
pip_install -c "$ENGINE_DIR/constraints.txt" "torch==$TORCH_VERSION" || {
  echo "engine: no torch==$TORCH_VERSION+cpu wheel found (looked in pip's indexes and find-links); see docs/engine.md" >&2
  exit 1
}

# 2. The text-only torchaudio placeholder, built from a copy so no build/ or egg-info lands in the repo.
stub_copy=$(mktemp -d)
trap 'rm -rf "$stub_copy"' EXIT
cp -r "$ENGINE_DIR/torchaudio-stub/." "$stub_copy/"
pip_install --no-build-isolation -c "$ENGINE_DIR/constraints.txt" "$stub_copy"

# 3. LLaMA-Factory and the metric packages, every version pinned by the lock.
pip_install -c "$ENGINE_DIR/constraints.txt" -r "$ENGINE_DIR/requirements.txt"

# 4. llamafactory's metadata pulls PyPI's torchvision, which breaks `transformers` imports on this torch.
if "$VENV/bin/python" -m pip show -q torchvision >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip uninstall -y -q torchvision
fi

# 5. Check what must hold before stamping: CPU torch, the placeholder, no torchvision, imports work.
HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$TORCH_VERSION" <<'PY'
import importlib.metadata, importlib.util, sys
import torch, torchaudio
assert torch.__version__ == sys.argv[1] + "+cpu", f"wrong torch {torch.__version__}"
assert torchaudio.__version__.endswith("+textonly"), f"wrong torchaudio {torchaudio.__version__}"
assert importlib.util.find_spec("torchvision") is None, "torchvision is installed"
import transformers, peft, trl, llamafactory.train.tuner, jieba, nltk, rouge_chinese  # noqa: E401,F401
print(f"engine: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"llamafactory {importlib.metadata.version('llamafactory')}")
PY

echo "$HASH" > "$STAMP"
echo "engine: ready in $(( $(date +%s) - started ))s ($(du -sh "$VENV" | cut -f1)): $VENV/bin/llamafactory-cli"
