"""How a run's end is reported: every EndCause, mapped by the one pure function (services/agent/ending.py), and the
facts an engine's exit and last lines give (services/agent/failures.py). The reasons are a contract with the
scheduler and the web client: these are the exact strings sent."""

from __future__ import annotations

import pytest

from services.agent import failures
from services.agent.ending import OOM_HINT, EndCause, Outcome, conclude
from services.agent.runtimes.base import ExitInfo

pytestmark = pytest.mark.unit

FAILED_TO_START = "the engine image x is not on this host"


@pytest.mark.parametrize(
    "cause, outcome",
    [
        (EndCause(), ("succeeded", None, None)),
        (EndCause(exit_code=143, cancelled=True), ("cancelled", "cancelled", "stopped on request")),
        (EndCause(exit_code=0, cancelled=True), ("cancelled", "cancelled", "stopped on request")),
        (
            EndCause(exit_code=143, agent_stopping=True),
            ("failed", "agent_stopped", "the agent stopped, and a deployment ends with its agent"),
        ),
        (
            EndCause(exit_code=143, idle_timeout_s=300.0),
            ("succeeded", "idle_timeout", "stopped after 300 s without a request"),
        ),
        (
            EndCause(exit_code=143, start_timeout_s=179.6),
            ("failed", "start_timeout", "the model server did not answer within 180 s"),
        ),
        (
            EndCause(exit_code=-1, error_reason="image_missing", error=FAILED_TO_START),
            ("failed", "image_missing", FAILED_TO_START),
        ),
        (
            EndCause(exit_code=-1, error_reason="start_failed"),
            ("failed", "start_failed", "the engine could not be started"),
        ),
        (
            EndCause(exit_code=-1, error_reason="agent_error", error="agent error: boom"),
            ("failed", "agent_error", "agent error: boom"),
        ),
        (
            EndCause(error_reason="container_lost", error="the job's container was gone when the agent restarted"),
            ("failed", "container_lost", "the job's container was gone when the agent restarted"),
        ),
        (
            EndCause(error_reason="agent_restarted", error="stopped: deploy the model again"),
            ("failed", "agent_restarted", "stopped: deploy the model again"),
        ),
        (
            EndCause(exit_code=75, cancelled=True, paused=True, paused_step=42),
            ("cancelled", "paused", "paused at step 42 (checkpoint saved)"),
        ),
        (
            EndCause(exit_code=143, cancelled=True, pause_missed_s=60.0),
            (
                "cancelled",
                "cancelled",
                "paused without a new checkpoint: none was written within 60 s, so the job was stopped (the "
                "checkpoints saved before are kept)",
            ),
        ),
        (EndCause(exit_code=1, oom=True), ("failed", "out_of_memory", OOM_HINT)),
        (
            EndCause(exit_code=137),
            ("failed", "out_of_memory", "killed (exit 137), most likely out of memory: " + OOM_HINT),
        ),
        (
            EndCause(exit_code=1, missing_package="bitsandbytes"),
            (
                "failed",
                "missing_dependency",
                (
                    "the engine environment on this agent lacks 'bitsandbytes', which this job "
                    "needs: use an agent or image that has it (it was not installed, and nothing "
                    "was substituted for it)"
                ),
            ),
        ),
        (
            EndCause(exit_code=2, config_refused=True),
            ("failed", "bad_config", "the engine refused the config (exit 2); see the last log lines"),
        ),
        (EndCause(exit_code=3), ("failed", "exit_code", "the engine exited with code 3; see the last log lines")),
        (
            EndCause(exit_code=0, error="lost"),
            ("failed", "exit_code", "the engine exited with code 0; see the last log lines"),
        ),
    ],
)
def test_every_end_cause_has_one_state_reason_and_message(cause, outcome):
    assert conclude(cause) == Outcome(*outcome)


@pytest.mark.parametrize(
    "cause, reason",
    [
        # The first fact that applies decides: a cancel beats whatever the stopped engine said, and so on down.
        (EndCause(exit_code=137, cancelled=True, agent_stopping=True, oom=True), "cancelled"),
        (EndCause(exit_code=143, agent_stopping=True, idle_timeout_s=1.0), "agent_stopped"),
        (EndCause(exit_code=143, idle_timeout_s=1.0, start_timeout_s=1.0), "idle_timeout"),
        (EndCause(exit_code=-1, start_timeout_s=1.0, error_reason="container_lost"), "start_timeout"),
        (EndCause(exit_code=137, error_reason="engine_missing", oom=True), "engine_missing"),
        (EndCause(exit_code=137, missing_package="x", config_refused=True), "out_of_memory"),
        (EndCause(exit_code=1, missing_package="x", config_refused=True), "missing_dependency"),
    ],
)
def test_the_first_fact_that_applies_decides(cause, reason):
    assert conclude(cause).reason == reason


@pytest.mark.parametrize(
    "exit_info, tail, facts",
    [
        (ExitInfo(exit_code=0), [], {}),
        (ExitInfo(exit_code=137, oom_killed=True), [], {"oom": True}),
        (ExitInfo(exit_code=1), ["torch.OutOfMemoryError: CUDA out of memory."], {"oom": True}),
        (ExitInfo(exit_code=1), ["ModuleNotFoundError: No module named 'optimum'"], {"missing_package": "optimum"}),
        (
            ExitInfo(exit_code=1),
            ["Failed to import modelscope.msdatasets because"],
            {"missing_package": "modelscope[datasets]"},
        ),
        (ExitInfo(exit_code=2), ["ValueError: Undefined dataset x"], {"config_refused": True}),
        (
            ExitInfo(exit_code=-1, error="no image", error_reason="image_missing"),
            [],
            {"error": "no image", "error_reason": "image_missing"},
        ),
    ],
)
def test_an_engine_runs_exit_and_last_lines_become_facts(exit_info, tail, facts):
    cause = failures.end_cause(exit_info, tail, cancelled=False)
    assert cause == EndCause(exit_code=exit_info.exit_code, **facts)


def test_classify_is_the_failure_branch_of_the_same_mapping():
    tail = ["Traceback (most recent call last):", "RuntimeError: CUDA out of memory"]
    assert failures.classify(ExitInfo(exit_code=1), tail) == ("out_of_memory", OOM_HINT)
    assert failures.classify(ExitInfo(exit_code=0), []) == (
        "exit_code",
        "the engine exited with code 0; see the last log lines",
    )
