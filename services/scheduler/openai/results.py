"""A succeeded fine-tuning job's results file (OpenAI's `result_files`): its metrics, one CSV row per logged step,
stored as a file of the job's owner by the datasets service (which owns files: asked over NATS, never imported).

Made once, when the job succeeds (`on_success`, after the event is stored) and, should that have failed (the
scheduler restarted mid-way, the datasets service did not answer), on the next retrieve of the job (`ensure`). The
datasets service keeps one file per job, so asking twice gives the same file; the job remembers its id
(`fine_tuning_jobs.result_file`), so a file the owner deleted stays listed, as OpenAI's does, and is not made again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging

import asyncpg
import msgspec
from nats.aio.client import Client

from services.common import contracts
from services.common.contracts import Subjects
from services.common.errors import ApiError
from services.common.requests import ask

from ..jobs import store as jobs_store
from .store import FineTuningRow, by_job

log = logging.getLogger(__name__)

COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
MAX_ROWS = 10_000  # more logged steps are thinned evenly (first and last kept): the CSV travels in one NATS message
_pending: set[asyncio.Task] = set()


def filename_of(ftjob_id: str) -> str:
    return f"{ftjob_id}-results.csv"


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def metrics_csv(points: list[dict]) -> bytes:
    """OpenAI's results CSV: a row per logged step; a column the engine reports nothing for is left empty (token
    accuracies: LLaMA-Factory logs none), as is a loss not logged at that step."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for point in points:
        loss, valid = point.get("loss"), point.get("eval_loss")
        writer.writerow([point["step"], _number(loss), "", _number(valid), ""])
    return out.getvalue().encode()


async def ensure(pool: asyncpg.Pool, nc: Client, row: FineTuningRow) -> FineTuningRow:
    """`row` with its results file: asked for when the job succeeded and has none yet. Unchanged when it did not
    succeed, or the datasets service could not store it now (the next read asks again)."""
    if row.state != "succeeded" or row.result_file is not None or not await _make(pool, nc, row):
        return row
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT result_file FROM fine_tuning_jobs WHERE id = $1", row.id)
    return msgspec.structs.replace(row, result_file=stored)


async def _make(pool: asyncpg.Pool, nc: Client, row: FineTuningRow) -> bool:
    async with pool.acquire() as conn:
        points = [dict(r) for r in await jobs_store.progress_series(conn, row.job_id, -1, MAX_ROWS)]
    asked = contracts.ResultFileAsked(
        user_id=row.owner_id, job_id=row.id, filename=filename_of(row.id), content=metrics_csv(points)
    )
    try:
        stored = await ask(nc, Subjects.RESULT_FILE, asked, contracts.ResultFileStored, owner="datasets")
    except ApiError as exc:
        log.warning("fine-tuning job %s: its results file was not stored (%s); asked again on next read", row.id, exc)
        return False
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE fine_tuning_jobs SET result_file = $2 WHERE id = $1 AND result_file IS NULL", row.id, stored.file_id
        )
    return True


def on_success(pool: asyncpg.Pool, nc: Client, job_id: str) -> None:
    """The platform job `job_id` succeeded: when it is a fine-tuning job, make its results file (in the
    background: the event consumer does not wait on the datasets service)."""

    async def make() -> None:
        try:
            async with pool.acquire() as conn:
                row = await by_job(conn, job_id)
            if row is not None:
                await ensure(pool, nc, row)
        except Exception:
            log.exception("job %s: its results file was not made (asked again on next read)", job_id)

    task = asyncio.create_task(make())
    _pending.add(task)
    task.add_done_callback(_pending.discard)
