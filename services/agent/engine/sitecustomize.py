"""The pause hook, run by the engine's own interpreter (the engine venv's python, the engine image's; every torchrun
worker too): the agent places this file as `sitecustomize.py` in a folder of the job's (services/agent/pausing.py)
and puts that folder first on PYTHONPATH, so Python imports it at start. The engine still runs `llamafactory-cli
train <config>`, unchanged (same launcher, same torchrun on several GPUs, same outputs); this only adds one
callback to the trainer's, when LLaMA-Factory's `train.tuner` is imported. Imports nothing of the platform.

The callback: once the file named by TRAINER_PAUSE_FILE exists, at the next step's end every rank saves a checkpoint
(transformers' own `checkpoint-<step>`, written whole with LLaMA-Factory's on-save files) and stops; rank 0 writes
TRAINER_PAUSED_FILE (`{"step": N}`) and every rank exits (PAUSED_EXIT; under torchrun 0, so that torchrun and the
launcher end quietly). The agent reads that file: "paused at step N (checkpoint saved)".
"""

import importlib.abc
import importlib.machinery
import json
import os
import sys

PAUSED_EXIT = 75  # EX_TEMPFAIL: stopped on request, to be resumed
TUNER = "llamafactory.train.tuner"


def make_callback():
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback

    class PauseCallback(TrainerCallback):
        """Save a checkpoint and stop at the first step's end after the pause file appeared (every rank at the
        same step: rank 0's look decides, broadcast to the others)."""

        def __init__(self, pause_file, paused_file):
            self.pause_file, self.paused_file = pause_file, paused_file
            self.pausing = False

        def on_step_end(self, args, state, control, **kwargs):
            if self.pausing:
                return control
            asked = os.path.lexists(self.pause_file)
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                flag = torch.tensor([1 if asked else 0], device=args.device)
                dist.broadcast(flag, src=0)
                asked = bool(flag.item())
            if asked:
                self.pausing = True
                control.should_save = True
                control.should_training_stop = True
                if state.is_world_process_zero:
                    print(f"[llmct] pause asked: saving checkpoint-{state.global_step}, then stopping", flush=True)
            return control

        def on_epoch_end(self, args, state, control, **kwargs):
            # The loop stopped: after the checkpoint's save and every on_save callback (LLaMA-Factory's too).
            if self.pausing:
                self._leave(args, state)
            return control

        def on_train_end(self, args, state, control, **kwargs):
            if self.pausing:
                self._leave(args, state)
            return control

        def _leave(self, args, state):
            if state.is_world_process_zero:
                if self.paused_file:
                    folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
                    with open(self.paused_file + ".writing", "w", encoding="utf-8") as out:
                        json.dump({"step": state.global_step, "checkpoint": folder}, out)
                    os.replace(self.paused_file + ".writing", self.paused_file)
                print(f"[llmct] paused at step {state.global_step} (checkpoint saved)", flush=True)
            if dist.is_available() and dist.is_initialized():
                dist.barrier()
            sys.stdout.flush()
            # Under torchrun a worker's failure is a traceback of torchrun's and LLaMA-Factory's launcher: there the
            # workers end well, and the agent reads TRAINER_PAUSED_FILE (as it always does).
            sys.exit(0 if os.environ.get("TORCHELASTIC_RUN_ID") else PAUSED_EXIT)

    return PauseCallback(os.environ["TRAINER_PAUSE_FILE"], os.environ.get("TRAINER_PAUSED_FILE", ""))


def patch(tuner) -> None:
    """`run_exp` (what `llamafactory-cli train` calls) with our callback among the trainer's."""
    training = tuner._training_function

    def with_pause(config):
        config = dict(config)
        config["callbacks"] = [*(config.get("callbacks") or []), make_callback()]
        return training(config)

    tuner._training_function = with_pause


class PatchTuner(importlib.abc.MetaPathFinder):
    """Finds LLaMA-Factory's tuner as Python would, and patches it once loaded."""

    def find_spec(self, name, path, target=None):
        if name != TUNER:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("TRAINER_PAUSE_FILE"):
    sys.meta_path.insert(0, PatchTuner())
