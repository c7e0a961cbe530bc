"""What the engine tests share: where the engine venv is, the environment an agent gives it, running it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENGINE_TOOLS = ROOT / "llmct" / "tiny"
TRAIN_TIMEOUT_S = 600


def engine_bin() -> Path:
    """The engine venv's bin/, or a test failure that says how to get one."""
    venv = Path(os.environ.get("LLMCT_ENGINE_VENV", ROOT / ".venv-engine"))
    if not (venv / "bin" / "llamafactory-cli").exists():
        pytest.fail(
            f"the engine environment is missing ({venv}/bin/llamafactory-cli): run engine/install.sh", pytrace=False
        )
    return venv / "bin"


def engine_env() -> dict[str, str]:
    """The environment an agent gives the engine: offline, nothing of the platform's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    # One OpenMP thread: on a 2-core machine shared with the rest of the suite, torch's default of one
    # thread per core made a 20-step run take 13-20 s of training instead of 1-3 s (docs/engine.md).
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    return env


def run_engine(args: list[str], cwd: Path, timeout: float = TRAIN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run an engine command, failing the test with its last output if it fails."""
    done = subprocess.run(args, cwd=cwd, env=engine_env(), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return done
