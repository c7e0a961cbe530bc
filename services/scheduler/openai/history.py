"""A fine-tuning job's events and checkpoints, from what the platform already keeps: its history (`job_events`),
its progress (`job_progress`, one metrics event per logged step) and the checkpoints its trainer saved
(`job_checkpoints`, as its agent told them once whole; for a job that ran before agents told them: the output folder
in `shared` storage mode, the checkpoints bucket in `objects` mode, where a resume finds them)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError

from services.common.contracts import Buckets
from services.common.errors import ApiError
from services.common.storage import CHECKPOINT, TRAINER_STATE

from ..jobs.fetches import from_column
from . import mapping
from .schemas import FineTuningCheckpoint, FineTuningEvent
from .store import FineTuningRow

EVENT_ID = re.compile(r"^ftevent-([em])(\d{1,18})$")
EVENTS = """
    SELECT 'e' AS src, id AS seq, at, state, reason, message, NULL::int AS total_steps, NULL::float8 AS loss,
           NULL::float8 AS eval_loss, NULL::float8 AS learning_rate, NULL::float8 AS epoch
    FROM job_events WHERE job_id = $1
    UNION ALL
    SELECT 'm', step, at, NULL, NULL, NULL, total_steps, loss, eval_loss, learning_rate, epoch
    FROM job_progress WHERE job_id = $1
"""
STATE_TEXT = {
    "pending": "Job queued",
    "dispatched": "Job placed",
    "running": "Fine-tuning job started",
    "succeeded": "The job has successfully completed",
    "failed": "The job failed",
    "cancelled": "The job was cancelled",
}
REASON_TEXT = {
    "submitted": "Created fine-tuning job",
    "cancel_requested": "Stop requested",
    "pause_requested": "Pause requested",
    "paused": "The job was paused",
    "resumed": "Job resumed",
    "retried": "Job restarted",
    "requeued": "Job re-queued",
}
WARN_REASONS = frozenset({"requeued", "cancel_requested", "pause_requested", "agent_lost", "lost_on_agent"})


def event_cursor(after: str | None) -> tuple[str, int] | None:
    if after is None:
        return None
    match = EVENT_ID.match(after)
    if match is None:
        raise ApiError(400, "invalid_cursor", "after is not an event id this API returned", "after")
    return match.group(1), int(match.group(2))


async def events(conn, ftjob: FineTuningRow, after: str | None, limit: int) -> list[FineTuningEvent]:
    """The job's events newest first, those after the event `after` (older than it) when given; `limit + 1` at
    most, so the caller sees whether there are more."""
    cursor = event_cursor(after)
    rows = await conn.fetch(
        f"""
        WITH e AS ({EVENTS})
        SELECT * FROM e
        WHERE $2::text IS NULL OR (at, src, seq) < (SELECT at, src, seq FROM e WHERE src = $2 AND seq = $3)
        ORDER BY at DESC, src DESC, seq DESC LIMIT $4
        """,
        ftjob.job_id,
        cursor[0] if cursor else None,
        cursor[1] if cursor else 0,
        limit + 1,
    )
    if (
        cursor
        and not rows
        and not await conn.fetchval(
            f"WITH e AS ({EVENTS}) SELECT EXISTS (SELECT 1 FROM e WHERE src = $2 AND seq = $3)", ftjob.job_id, *cursor
        )
    ):
        raise ApiError(400, "invalid_cursor", "after is not an event of this job", "after")
    newest = await conn.fetchval("SELECT max(id) FROM job_events WHERE job_id = $1", ftjob.job_id)
    return [
        event_of(dict(row), paused=ftjob.pause_requested and (row["src"], row["seq"]) == ("e", newest)) for row in rows
    ]


def event_of(row: dict[str, Any], paused: bool = False) -> FineTuningEvent:
    """A history row as a message event, a progress row as a metrics event."""
    if row["src"] == "m":
        data = metrics_data(row)
        return FineTuningEvent(
            id=f"{mapping.EVENT_PREFIX}m{row['seq']}",
            created_at=mapping.unix(row["at"]) or 0,
            level="info",
            message=metrics_message(data),
            type="metrics",
            data=data,
        )
    state, reason = row["state"], row["reason"]
    text: str = REASON_TEXT.get(reason) or STATE_TEXT.get(state) or str(state)
    if paused and state == "cancelled":
        text = "The job was paused"
    level = "error" if state == "failed" else "warn" if reason in WARN_REASONS or state == "cancelled" else "info"
    return FineTuningEvent(
        id=f"{mapping.EVENT_PREFIX}e{row['seq']}",
        created_at=mapping.unix(row["at"]) or 0,
        level="warn" if paused and state == "cancelled" else level,
        message=f"{text}: {row['message']}" if row["message"] else text,
        type="message",
        data={"state": state, "reason": reason},
    )


def metrics_data(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "step": row["seq"],
        "total_steps": row["total_steps"],
        "train_loss": row["loss"],
        "valid_loss": row["eval_loss"],
        "learning_rate": row["learning_rate"],
        "epoch": row["epoch"],
    }


def metrics_message(data: dict[str, Any]) -> str:
    said = [f"Step {data['step']}/{data['total_steps']}"]
    if data["train_loss"] is not None:
        said.append(f"training loss={data['train_loss']:.4f}")
    if data["valid_loss"] is not None:
        said.append(f"validation loss={data['valid_loss']:.4f}")
    return ", ".join(said)


# --- checkpoints ---------------------------------------------------------------------------------------------------


def folder_steps(output_dir: str | None) -> list[int]:
    """The `checkpoint-<step>` folders the trainer finished writing (trainer_state.json is there)."""
    folder = Path(output_dir or "")
    if not output_dir or not folder.is_dir():
        return []
    return [
        int(m.group(1)) for p in folder.iterdir() if (m := CHECKPOINT.match(p.name)) and (p / TRAINER_STATE).is_file()
    ]


async def stored_steps(js: JetStreamContext, job_id: str) -> list[int]:
    """The whole checkpoints of a job in the checkpoints bucket (their trainer_state.json is there: put last)."""
    try:
        infos = await (await js.object_store(Buckets.CHECKPOINTS)).list(ignore_deletes=True)
    except (BucketNotFoundError, NotFoundError):
        return []
    steps = []
    for info in infos:
        checkpoint, _, relative = (info.name or "").removeprefix(f"{job_id}/").partition("/")
        match = CHECKPOINT.match(checkpoint)
        if not info.deleted and (info.name or "").startswith(f"{job_id}/") and match and relative == TRAINER_STATE:
            steps.append(int(match.group(1)))
    return steps


async def told_steps(conn, job_id: str) -> list[int]:
    """The steps of the checkpoints the job's agent told saved (and not deleted since), newest first."""
    return [r["step"] for r in await conn.fetch("SELECT step FROM job_checkpoints WHERE job_id = $1", job_id)]


async def saved_steps(js: JetStreamContext, ftjob: FineTuningRow) -> list[int]:
    """The steps of the job's saved checkpoints, newest first, where a resume would look for them: for a job of
    which none was told (it ran before agents told them)."""
    if from_column(ftjob.fetches).base:
        steps = await stored_steps(js, ftjob.job_id)
    else:
        steps = await asyncio.to_thread(folder_steps, ftjob.output_dir)
    return sorted(set(steps), reverse=True)


METRICS_AT = """
    SELECT s.step,
        (SELECT p.at FROM job_progress p WHERE p.job_id = $1 AND p.step <= s.step ORDER BY p.step DESC LIMIT 1) AS at,
        (SELECT p.loss FROM job_progress p WHERE p.job_id = $1 AND p.step <= s.step AND p.loss IS NOT NULL
         ORDER BY p.step DESC LIMIT 1) AS train_loss,
        (SELECT p.eval_loss FROM job_progress p WHERE p.job_id = $1 AND p.step <= s.step AND p.eval_loss IS NOT NULL
         ORDER BY p.step DESC LIMIT 1) AS valid_loss
    FROM unnest($2::int[]) AS s(step)
"""


TOLD = "SELECT step, saved_at AS at, train_loss, valid_loss FROM job_checkpoints WHERE job_id = $1 AND step = ANY($2)"


async def checkpoints(conn, ftjob: FineTuningRow, steps: list[int], model: str) -> list[FineTuningCheckpoint]:
    """The checkpoints at `steps`, with the metrics its agent read in its trainer state (a checkpoint not told:
    the progress logged at or before its step)."""
    rows = {row["step"]: row for row in await conn.fetch(METRICS_AT, ftjob.job_id, steps)}
    rows |= {row["step"]: row for row in await conn.fetch(TOLD, ftjob.job_id, steps)}
    return [checkpoint_of(ftjob, step, rows[step]["at"], dict(rows[step]), model) for step in steps]


def checkpoint_of(
    ftjob: FineTuningRow, step: int, at: datetime | None, metrics: dict[str, Any], model: str
) -> FineTuningCheckpoint:
    return FineTuningCheckpoint(
        id=mapping.checkpoint_id(ftjob.id, step),
        created_at=mapping.unix(at or ftjob.created_at) or 0,
        fine_tuned_model_checkpoint=mapping.checkpoint_model(model, step),
        step_number=step,
        metrics={"step": float(step), "train_loss": metrics["train_loss"], "valid_loss": metrics["valid_loss"]},
        fine_tuning_job_id=ftjob.id,
    )
