"""The one table of job state changes, and the one function that makes them.

Every change of `jobs.state` goes through `transition`: a conditional UPDATE (`WHERE state = ANY(from)`), so a
redelivered or late event, or a second scheduler racing this one, changes nothing, and a `job_events` row with
the reason, in the same transaction, with the webhook deliveries the change owes (webhooks/outbox.py).
`TRANSITIONS` says which changes exist at all; a caller may narrow the states it moves a job from (a stale dispatch
is re-queued only while still dispatched), never widen them.

    pending ──placed──► dispatched ──started──► running ──► succeeded | failed | cancelled (the agent's JobFinished)
       │                   │  └─────────────────────────────► succeeded | failed | cancelled (finished before started)
       │                   └──requeued (never taken, or its agent went offline)──► pending   (so does running)
       └──cancelled (before it started)──► cancelled    dispatched | running ──agent_lost | lost_on_agent──► failed
                                                         dispatched | running ──cancelled (unanswered cancel)──► …
    failed | cancelled ──retried | resumed──► pending   (a person runs it again; succeeded never leaves)
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from services.common.contracts import TERMINAL_JOB_STATES, FinishReason, JobState

from ..webhooks import outbox

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    "pending": frozenset({"dispatched", "cancelled"}),
    "dispatched": frozenset({"running", "pending", "succeeded", "failed", "cancelled"}),
    "running": frozenset({"pending", "succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset({"pending"}),  # retry or resume, on request
    "cancelled": frozenset({"pending"}),  # retry or resume, on request
}

ON_AGENT: tuple[JobState, ...] = ("dispatched", "running")  # placed on an agent, holding its GPUs or CPU slots
RERUNNABLE: tuple[JobState, ...] = ("failed", "cancelled")  # may be retried or resumed

# The reason of a job_events row (and of `jobs.reason` after the change): why a job ended (`FinishReason`), or
# what moved it. A JobFinished without a reason is recorded with its state as the reason.
EventReason = (
    FinishReason
    | Literal[
        "submitted",
        "placed",
        "started",
        "requeued",
        "retried",
        "resumed",
        "cancel_requested",
        "pause_requested",  # a fine-tuning job asked to pause (services/scheduler/openai)
        "ready",
        "succeeded",
        "failed",
    ]
)


def allowed_from(to: JobState) -> frozenset[JobState]:
    """The states a job may move to `to` from."""
    return frozenset(state for state, targets in TRANSITIONS.items() if to in targets)


class JobChange(msgspec.Struct, frozen=True, kw_only=True):
    """A job row as a committed change leaves it: what live feeds and dispatches are told."""

    id: str
    owner_id: str
    state: JobState
    agent_id: str | None = None
    attempt: int = 0
    reason: str | None = None  # why it changed (an EventReason), told to live feeds
    message: str | None = None


async def transition(
    conn,
    job_id: str,
    to: JobState,
    *,
    reason: EventReason,
    message: str | None = None,
    from_states: tuple[JobState, ...] | None = None,
    **columns: Any,
) -> JobChange | None:
    """Move a job to `to` if it is in one of `from_states` (default: every state the table allows), setting
    `columns` too, and record the change in job_events; None when the job was not in one of them (nothing is
    written: idempotent). Entering a terminal state sets finished_at."""
    allowed = allowed_from(to)
    sources = allowed if from_states is None else frozenset(from_states)
    if not sources <= allowed:
        raise ValueError(f"no transition to {to} from {sorted(sources - allowed)} (TRANSITIONS)")
    sets = ["state = $2", "reason = coalesce($4, reason)", "message = coalesce($5, message)", "updated_at = now()"]
    sets.append("unlisted_since = NULL")  # a new state starts the reconciliation against heartbeats afresh
    values: list[Any] = [job_id, to, sorted(sources), reason, message]
    for name, value in columns.items():
        values.append(value)
        sets.append(f"{name} = ${len(values)}")
    if to in TERMINAL_JOB_STATES:
        sets.append("finished_at = now()")
    row = await conn.fetchrow(
        f"UPDATE jobs SET {', '.join(sets)} WHERE id = $1 AND state = ANY($3::text[]) "
        f"RETURNING id, owner_id, state, agent_id, attempt, reason, message, kind",
        *values,
    )
    if row is None:
        return None
    await add_event(conn, job_id, to, reason, message)
    changed = dict(row)
    kind = changed.pop("kind")
    if event := outbox.job_event(kind, to):  # the webhooks it owes, in this transaction (an outbox)
        await outbox.for_owner(conn, row["owner_id"], event, "deployment" if kind == "deploy" else "job", job_id)
    if kind == "deploy" and to not in ON_AGENT:
        # A deployment that ended or went back to the queue has no engine load: what its agent last said is gone.
        await conn.execute(
            "UPDATE deployments SET engine_load = NULL WHERE id = $1 AND engine_load IS NOT NULL", job_id
        )
    return JobChange(**changed)


async def add_event(conn, job_id: str, state: JobState, reason: EventReason | None, message: str | None) -> None:
    """A job_events row: the job's history (a change, or a note such as a cancel asked, in its current state)."""
    await conn.execute(
        "INSERT INTO job_events (job_id, state, reason, message) VALUES ($1, $2, $3, $4)",
        job_id,
        state,
        reason,
        message,
    )
