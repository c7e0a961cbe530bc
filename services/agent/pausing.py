"""Pause a training job with a checkpoint. The engine still runs `llamafactory-cli train <config>`; the agent puts
a folder of ours first on its PYTHONPATH, holding `engine/sitecustomize.py`, which Python imports at start (in every
torchrun worker too) and which adds one callback to LLaMA-Factory's trainer. A pause asks it, through a file in the
job's output folder, to save a checkpoint at the next step's end and exit.

Files (in the job's output folder, removed before the engine starts and after it exited):
- PAUSE_FILE, made by the agent to ask (created, never written through: a link the job left there is not
  followed, `O_EXCL`);
- PAUSED_FILE, written by the engine's rank 0 once the checkpoint is saved: `{"step": N}`. Read as the job's word
  (at most 4 KiB, no link followed): it only says the job paused, and at which step; the job's own outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from services.common.contracts import EngineStage

PAUSED_EXIT = 75  # engine/sitecustomize.py's exit once it saved and stopped on a pause (under torchrun: any)
PAUSE_FILE = ".llmct-pause"
PAUSED_FILE = ".llmct-paused"
HOOK = Path(__file__).parent / "engine" / "sitecustomize.py"
TRAIN_COMMAND = ("llamafactory-cli", "train")


def pausable(kind: str, stage: EngineStage) -> bool:
    """A training stage run by `llamafactory-cli train`: the hook can pause it."""
    return kind == "train" and stage.serve is None and tuple(stage.command) == TRAIN_COMMAND


def place_hook(config_path: Path) -> Path:
    """The hook's folder beside the stage's config (temp/<job>[.<n>-<stage>].hook/sitecustomize.py), readable by
    the job's user (docker mounts the folder read-only)."""
    folder = config_path.with_name(config_path.name.removesuffix(".yaml") + ".hook")
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    shutil.copyfile(HOOK, folder / "sitecustomize.py")
    (folder / "sitecustomize.py").chmod(0o644)
    return folder


def environment(output_dir: Path, hook: Path, env: dict[str, str]) -> dict[str, str]:
    """What the engine is given: the hook first on PYTHONPATH (before any the stage had), the pause's files."""
    path = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH", "")]))
    return {
        "PYTHONPATH": path,
        "TRAINER_PAUSE_FILE": str(output_dir / PAUSE_FILE),
        "TRAINER_PAUSED_FILE": str(output_dir / PAUSED_FILE),
    }


def clear(output_dir: Path) -> None:
    """No pause asked or told from a run before (a resumed job's folder still has them)."""
    for name in (PAUSE_FILE, PAUSED_FILE, PAUSED_FILE + ".writing"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            (output_dir / name).unlink()


def ask(output_dir: Path) -> bool:
    """Ask the engine to pause; False when the file could not be made (there already: asked)."""
    try:
        fd = os.open(output_dir / PAUSE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return True
    except OSError:
        return False
    os.close(fd)
    return True


def paused_step(output_dir: Path) -> int | None:
    """The step the engine said it paused at, if it did."""
    try:
        fd = os.open(output_dir / PAUSED_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        text = file.read(4096)
    try:
        step = json.loads(text).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None
