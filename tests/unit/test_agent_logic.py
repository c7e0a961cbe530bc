"""Progress parsing and failure classification of the agent, without an engine."""

import pytest

from services.agent import failures, progress
from services.agent.runtimes.base import ExitInfo

pytestmark = pytest.mark.unit


def test_trainer_log_line_becomes_progress():
    line = (
        '{"current_steps": 5, "total_steps": 20, "loss": 7.41, "lr": 9.5e-05, "epoch": 0.31, '
        '"percentage": 25.0, "elapsed_time": "0:00:03", "remaining_time": "0:01:09"}'
    )
    event = progress.parse_line("job_1", line)
    assert (event.step, event.total_steps, event.loss, event.learning_rate) == (5, 20, 7.41, 9.5e-05)
    assert event.elapsed_s == 3 and event.remaining_s == 69


def test_the_tokens_seen_come_with_the_step():
    """LLaMA-Factory logs `total_tokens` (transformers' num_input_tokens_seen) once counting is on."""
    line = '{"current_steps": 3, "total_steps": 9, "loss": 1.5, "throughput": 812.5, "total_tokens": 4096}'
    assert progress.parse_line("job_1", line).tokens_seen == 4096
    assert progress.parse_line("job_1", '{"current_steps": 3, "total_steps": 9, "loss": 1.5}').tokens_seen is None
    for odd in ('"x"', "-1", "true", "NaN"):
        line = '{"current_steps": 3, "total_steps": 9, "total_tokens": ' + odd + "}"
        assert progress.parse_line("job_1", line).tokens_seen is None


def test_a_validation_pass_is_a_point_of_its_own():
    line = '{"current_steps": 4, "total_steps": 12, "eval_loss": 2.25, "epoch": 0.5, "percentage": 33.3}'
    event = progress.parse_line("job_1", line, attempt=2)
    assert (event.step, event.eval_loss, event.loss, event.attempt) == (4, 2.25, None, 2)


@pytest.mark.parametrize("line", ["", "not json", '{"eval_loss": 1.0}'])
def test_other_lines_are_skipped(line):
    assert progress.parse_line("job_1", line) is None


@pytest.mark.parametrize(
    "exit_info, tail, reason",
    [
        (ExitInfo(exit_code=137, oom_killed=True), [], "out_of_memory"),
        (ExitInfo(exit_code=1), ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"], "out_of_memory"),
        (ExitInfo(exit_code=137), [], "out_of_memory"),
        (ExitInfo(exit_code=1), ["ValueError: Some keys are not used by the HfArgumentParser: ['x']"], "bad_config"),
        (ExitInfo(exit_code=2), ["Traceback", "KeyError"], "exit_code"),
        (ExitInfo(exit_code=-1, error="no image", error_reason="image_missing"), [], "image_missing"),
    ],
)
def test_failures_say_why(exit_info, tail, reason):
    got, message = failures.classify(exit_info, tail)
    assert got == reason and message
