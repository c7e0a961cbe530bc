"""How a run ended: one `EndCause` per run, and the one pure function that says what the scheduler is told.

The runner, the re-attach on start and the failure text scan (failures.py) only gather facts into an
EndCause; `conclude` alone turns them into the final state, the reason code and the message a user reads.
The reason codes are a contract with the scheduler and the web client (`contracts.FinishReason`, where a new one
is added first, and reaches the scheduler before an agent sends it): never rename one.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from services.common.contracts import FinishReason, TerminalJobState

OOM_HINT = (
    "out of memory: lower per_device_train_batch_size or cutoff_len, use finetuning_type 'qlora', "
    "or keep gradient_checkpointing on"
)


class EndCause(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about why a run ended; the first fact that applies, in the order below, decides."""

    exit_code: int = 0
    cancelled: bool = False  # stopped on request (a cancel, or a newer attempt)
    paused: bool = False  # a pause: the engine saved a checkpoint and exited (PAUSED_EXIT)
    paused_step: int | None = None  # at this step, as the engine said
    pause_missed_s: float | None = None  # a pause: no checkpoint came within this long; stopped as a cancel
    agent_stopping: bool = False  # the agent stopped the engine as it stopped itself (a deployment)
    idle_timeout_s: float | None = None  # a deployment stopped itself after this long without a request
    start_timeout_s: float | None = None  # a deployment's server did not answer within this long
    error_reason: FinishReason | None = None  # the runtime's or agent's code: image_missing, container_lost, ...
    error: str | None = None  # what went wrong, in words, with `error_reason`
    oom: bool = False  # killed for memory (Docker says so), or the engine said it ran out
    missing_package: str | None = None  # a package the engine could not import
    config_refused: bool = False  # the engine refused its YAML


class Outcome(NamedTuple):
    """What JobFinished says: the final `state`, a `reason` code and a `message`."""

    state: TerminalJobState
    reason: FinishReason | None
    message: str | None


def conclude(cause: EndCause) -> Outcome:
    """The final state, reason and message of a run that ended for `cause` (pure: facts in, words out)."""
    if cause.paused:
        at = "" if cause.paused_step is None else f" at step {cause.paused_step}"
        return Outcome("cancelled", "paused", f"paused{at} (checkpoint saved)")
    if cause.cancelled and cause.pause_missed_s is not None:
        return Outcome(
            "cancelled",
            "cancelled",
            f"paused without a new checkpoint: none was written within {cause.pause_missed_s:.0f} s, so the job was "
            "stopped (the checkpoints saved before are kept)",
        )
    if cause.cancelled:
        return Outcome("cancelled", "cancelled", "stopped on request")
    if cause.agent_stopping:
        return Outcome("failed", "agent_stopped", "the agent stopped, and a deployment ends with its agent")
    if cause.idle_timeout_s is not None:
        return Outcome("succeeded", "idle_timeout", f"stopped after {cause.idle_timeout_s:.0f} s without a request")
    if cause.start_timeout_s is not None:
        return Outcome(
            "failed", "start_timeout", f"the model server did not answer within {cause.start_timeout_s:.0f} s"
        )
    if cause.exit_code == 0 and not cause.error:
        return Outcome("succeeded", None, None)
    return Outcome("failed", *failure(cause))


def failure(cause: EndCause) -> tuple[FinishReason, str]:
    """(reason, message) of a run that did not succeed, whatever its exit code (conclude's last branch)."""
    if cause.error_reason:
        return cause.error_reason, cause.error or "the engine could not be started"
    if cause.oom:
        return "out_of_memory", OOM_HINT
    if cause.exit_code == 137:  # SIGKILL: on a host without OOM reports, most likely the kernel's OOM killer
        return "out_of_memory", "killed (exit 137), most likely out of memory: " + OOM_HINT
    if cause.missing_package:
        return "missing_dependency", (
            f"the engine environment on this agent lacks {cause.missing_package!r}, which "
            "this job needs: use an agent or image that has it (it was not installed, and "
            "nothing was substituted for it)"
        )
    if cause.config_refused:
        return "bad_config", f"the engine refused the config (exit {cause.exit_code}); see the last log lines"
    return "exit_code", f"the engine exited with code {cause.exit_code}; see the last log lines"
