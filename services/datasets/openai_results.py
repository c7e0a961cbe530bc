"""Results files of fine-tuning jobs (OpenAI's `result_files`, purpose `fine-tune-results`): the scheduler asks,
the datasets service (which owns files) stores. A results file is a file of the job's owner whose CSV is kept in
its row (no dataset behind it: it is not training data); one per job, so asking again answers the same file."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import asyncpg

from services.common import ranges
from services.common.contracts import ResultFileAsked, ResultFileStored
from services.common.errors import ApiError

from .context import DatasetsContext
from .openai_files import new_file_id

PURPOSE = "fine-tune-results"


async def result_file(context: DatasetsContext, asked: ResultFileAsked) -> ResultFileStored:
    """Answer a `ResultFileAsked`: the job's results file, stored now or found from an earlier ask."""
    async with context.pool.acquire() as conn:
        try:
            await conn.execute(
                """INSERT INTO openai_files (id, dataset_id, owner_id, filename, purpose, kind, bytes, source_job,
                                             content)
                   VALUES ($1, NULL, $2, $3, $4, 'results', $5, $6, $7) ON CONFLICT (source_job) DO NOTHING""",
                new_file_id(),
                asked.user_id,
                asked.filename,
                PURPOSE,
                len(asked.content),
                asked.job_id,
                asked.content,
            )
        except asyncpg.ForeignKeyViolationError as exc:
            said = f"no user {asked.user_id!r} to own the results file"
            raise ApiError(404, "unknown_user", said, "user_id") from exc
        row = await conn.fetchrow("SELECT id, owner_id FROM openai_files WHERE source_job = $1", asked.job_id)
    if row is None or row["owner_id"] != asked.user_id:  # deleted meanwhile, or another owner's job id
        raise ApiError(409, "result_file_conflict", f"job {asked.job_id!r} has no results file of this user", "job_id")
    return ResultFileStored(file_id=row["id"])


def held_bytes(content: bytes) -> tuple[str, ranges.Reader]:
    """The ETag and reader of a file kept in its row, for `ranges.ranged`."""

    async def read(start: int, length: int) -> AsyncIterator[bytes]:
        yield content[start : start + length]

    return ranges.content_etag(hashlib.sha256(content).hexdigest()), read
