"""What an engine run's exit and last log lines say about why it ended (the words are ending.py's)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .ending import OOM_HINT, EndCause, failure
from .runtimes.base import ExitInfo

__all__ = ["OOM_HINT", "classify", "end_cause", "missing_package"]

OOM_TEXT = ("CUDA out of memory", "OutOfMemoryError", "torch.OutOfMemoryError", "Cannot allocate memory", "MemoryError")
CONFIG_TEXT = (
    "are not used by the HfArgumentParser",
    "yaml.scanner",
    "yaml.parser",
    "Unrecognized configuration",
    "Please specify",
    "is not supported",
    "Cannot find valid samples",
    "Undefined dataset",
)
# An engine environment without a package a stage needs (GPTQ's optimum/gptqmodel, bitsandbytes...).
MISSING_PACKAGE = (
    re.compile(r"The '([^']+)' distribution was not found"),  # LLaMA-Factory's mandatory version checks
    re.compile(r"No module named '([^']+)'"),
    re.compile(
        r"(?:ImportError|PackageNotFoundError).*?pip install (?:-U |--upgrade )?([A-Za-z0-9_.\-]+(?:[<>=]=?[0-9.]+)?)"
    ),
)
# A package whose missing part the engine reports by another name: ModelScope datasets need the `datasets` extra
# of `modelscope` (addict, oss2...), and "No module named 'addict'" would not say what to install.
MISSING_EXTRA = ((re.compile(r"Failed to import modelscope\.msdatasets\b"), "modelscope[datasets]"),)


def end_cause(exit_info: ExitInfo, tail: Iterable[str], **facts) -> EndCause:
    """The EndCause of an engine run: its exit, what its last log lines say, and `facts` the runner knows
    (cancelled, agent_stopping, idle_timeout_s, start_timeout_s)."""
    text = "\n".join(tail)
    return EndCause(
        exit_code=exit_info.exit_code,
        error_reason=exit_info.error_reason,
        error=exit_info.error,
        oom=exit_info.oom_killed or any(marker in text for marker in OOM_TEXT),
        missing_package=missing_package(text),
        config_refused=any(marker in text for marker in CONFIG_TEXT),
        **facts,
    )


def classify(exit_info: ExitInfo, tail: Iterable[str]) -> tuple[str, str]:
    """(reason, message) of a run that did not succeed."""
    return failure(end_cause(exit_info, tail))


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
