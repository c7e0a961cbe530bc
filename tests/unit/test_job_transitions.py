"""The one table of job state changes (services/scheduler/jobs/transitions.py) and the vocabulary's types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args

import msgspec
import pytest

from services.common import contracts
from services.scheduler.jobs import transitions
from services.scheduler.jobs.transitions import TRANSITIONS, allowed_from, transition

pytestmark = pytest.mark.unit

TERMINAL = set(contracts.TERMINAL_JOB_STATES)


def test_the_table_names_every_state_and_only_states():
    states = set(get_args(contracts.JobState))
    assert set(TRANSITIONS) == states
    assert all(targets <= states for targets in TRANSITIONS.values())


def test_a_job_goes_pending_dispatched_running_then_ends():
    assert TRANSITIONS["pending"] == {"dispatched", "cancelled"}
    assert "running" in TRANSITIONS["dispatched"]
    assert TRANSITIONS["running"] >= TERMINAL
    assert TRANSITIONS["dispatched"] >= TERMINAL, "an engine may end before its start was heard"
    assert allowed_from("running") == {"dispatched"}


def test_requeue_and_cancel_paths():
    assert "pending" in TRANSITIONS["dispatched"] and "pending" in TRANSITIONS["running"]  # requeued
    assert allowed_from("cancelled") == {"pending", "dispatched", "running"}
    assert allowed_from("failed") == {"dispatched", "running"}  # the agent's JobFinished, or agent_lost
    assert set(transitions.ON_AGENT) == {"dispatched", "running"}


def test_terminal_states_have_no_way_out_but_a_rerun():
    assert TRANSITIONS["succeeded"] == frozenset()
    for state in transitions.RERUNNABLE:
        assert TRANSITIONS[state] == {"pending"}, "only a retry or resume, back to the queue"
    assert set(transitions.RERUNNABLE) < TERMINAL
    for state in TERMINAL:
        assert not TRANSITIONS[state] & TERMINAL and not TRANSITIONS[state] & {"dispatched", "running"}


async def test_a_caller_may_narrow_the_table_never_widen_it():
    class NoDatabase:
        async def fetchrow(self, *args):
            raise AssertionError("a refused transition must not reach the database")

    with pytest.raises(ValueError, match="no transition to running"):
        await transition(NoDatabase(), "job_1", "running", reason="started", from_states=("pending",))
    with pytest.raises(ValueError):
        await transition(NoDatabase(), "job_1", "pending", reason="retried", from_states=("succeeded",))


def test_messages_refuse_values_outside_the_vocabulary():
    now = datetime.now(UTC)
    finished = contracts.JobFinished(job_id="j", agent_id="a", state="failed", reason="out_of_memory", at=now)
    assert contracts.decode(contracts.encode(finished)) == finished
    data = contracts.encode(finished)
    for bad in (data.replace(b'"out_of_memory"', b'"melted"'), data.replace(b'"failed"', b'"running"')):
        with pytest.raises(msgspec.ValidationError):
            contracts.decode(bad)
    submitted = contracts.encode(contracts.JobSubmitted(job_id="j", kind="train", owner_id="u", submitted_at=now))
    with pytest.raises(msgspec.ValidationError):
        contracts.decode(submitted.replace(b'"train"', b'"bake"'))


def test_every_reason_the_agent_names_is_in_the_vocabulary():
    from services.agent.ending import EndCause, conclude

    causes = [
        EndCause(cancelled=True),
        EndCause(agent_stopping=True),
        EndCause(idle_timeout_s=1),
        EndCause(start_timeout_s=1),
        EndCause(exit_code=1, oom=True),
        EndCause(exit_code=137),
        EndCause(exit_code=1, missing_package="x"),
        EndCause(exit_code=1, config_refused=True),
        EndCause(exit_code=1),
    ]
    for cause in causes:
        outcome = conclude(cause)
        assert outcome.state in TERMINAL and outcome.reason in contracts.FINISH_REASONS
