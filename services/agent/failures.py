"""Why an engine run failed, in words a user can act on."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .runtimes.base import ExitInfo

OOM_TEXT = ("CUDA out of memory", "OutOfMemoryError", "torch.OutOfMemoryError", "Cannot allocate memory",
            "MemoryError")
CONFIG_TEXT = ("are not used by the HfArgumentParser", "yaml.scanner", "yaml.parser", "Unrecognized configuration",
               "Please specify", "is not supported", "Cannot find valid samples", "Undefined dataset")
# An engine environment without a package a stage needs (GPTQ's optimum/gptqmodel, bitsandbytes...).
MISSING_PACKAGE = (
    re.compile(r"The '([^']+)' distribution was not found"),  # LLaMA-Factory's mandatory version checks
    re.compile(r"No module named '([^']+)'"),
    re.compile(r"(?:ImportError|PackageNotFoundError).*?pip install (?:-U |--upgrade )?([A-Za-z0-9_.\-]+(?:[<>=]=?[0-9.]+)?)"),
)
# A package whose missing part the engine reports by another name: ModelScope datasets need the `datasets` extra
# of `modelscope` (addict, oss2...), and "No module named 'addict'" would not say what to install.
MISSING_EXTRA = ((re.compile(r"Failed to import modelscope\.msdatasets\b"), "modelscope[datasets]"),)
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
    missing = missing_package(text)
    if missing:
        return "missing_dependency", (f"the engine environment on this agent lacks {missing!r}, which this job needs: "
                                      "use an agent or image that has it (it was not installed, and nothing was "
                                      "substituted for it)")
    if any(marker in text for marker in CONFIG_TEXT):
        return "bad_config", f"the engine refused the config (exit {exit_info.exit_code}); see the last log lines"
    return "exit_code", f"the engine exited with code {exit_info.exit_code}; see the last log lines"


def missing_package(text: str) -> str | None:
    """The package an engine run said it could not import, if any."""
    for pattern, package in MISSING_EXTRA:
        if pattern.search(text):
            return package
    for pattern in MISSING_PACKAGE:
        found = pattern.search(text)
        if found:
            return found.group(1)
    return None
