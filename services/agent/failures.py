"""Why an engine run failed, in words a user can act on."""

from __future__ import annotations

from collections.abc import Iterable

from .runtimes.base import ExitInfo

OOM_TEXT = ("CUDA out of memory", "OutOfMemoryError", "torch.OutOfMemoryError", "Cannot allocate memory",
            "MemoryError")
CONFIG_TEXT = ("are not used by the HfArgumentParser", "yaml.scanner", "yaml.parser", "Unrecognized configuration",
               "Please specify", "is not supported", "Cannot find valid samples", "Undefined dataset")
OOM_HINT = ("out of memory: lower per_device_train_batch_size or cutoff_len, use finetuning_type 'qlora', "
            "or keep gradient_checkpointing on")


def classify(exit_info: ExitInfo, tail: Iterable[str]) -> tuple[str, str]:
    """(reason, message) of a run that did not succeed."""
    text = "\n".join(tail)
    if exit_info.error_reason:
        return exit_info.error_reason, exit_info.error or "the engine could not be started"
    if exit_info.oom_killed or any(marker in text for marker in OOM_TEXT):
        return "out_of_memory", OOM_HINT
    if exit_info.exit_code == 137:
        return "out_of_memory", "killed (exit 137), most likely out of memory: " + OOM_HINT
    if any(marker in text for marker in CONFIG_TEXT):
        return "bad_config", f"the engine refused the config (exit {exit_info.exit_code}); see the last log lines"
    return "exit_code", f"the engine exited with code {exit_info.exit_code}; see the last log lines"
