"""/api/evals: thin views over evaluation jobs (kind "eval"): submit, list, detail with generated samples,
and a side-by-side comparison of several runs. The jobs themselves live in /api/jobs like any other."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from asyncpg import Pool
from litestar import Controller, Response, get, post
from litestar.params import Parameter
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common.contracts import JobState
from services.common.dependencies import Injected
from services.common.errors import ApiError, not_found
from services.common.security import Principal

from ..jobs import idempotency, service, store
from ..jobs.routes import cursor_after, next_cursor
from ..jobs.schemas import EvalRequest
from ..jobs.store import EvalRow, JobRow
from ..settings import SchedulerSettings

PREDICTIONS_FILE = "generated_predictions.jsonl"
DETAIL_SAMPLES = 20
MAX_COMPARED = 10
MAX_SAMPLE_CHARS = 4000


class Sample(msgspec.Struct, kw_only=True):
    index: int
    prompt: str
    prediction: str
    label: str


class EvalSummary(msgspec.Struct, kw_only=True):
    id: str
    state: str
    model: str
    evaluation: str
    datasets: list[str]
    task: str | None
    metrics: dict[str, float]
    reason: str | None
    created_at: datetime
    finished_at: datetime | None


class EvalDetail(EvalSummary, kw_only=True):
    message: str | None
    request: dict
    config_yaml: str
    samples: list[Sample]
    samples_total: int


class EvalPage(msgspec.Struct, kw_only=True):
    items: list[EvalSummary]
    next_cursor: str | None


class SamplePage(msgspec.Struct, kw_only=True):
    items: list[Sample]
    total: int


class ComparedSample(msgspec.Struct, kw_only=True):
    """The same example across runs: one prediction per run, in the order of `runs` (None: not there)."""

    index: int
    prompt: str
    label: str
    predictions: list[str | None]


class Comparison(msgspec.Struct, kw_only=True):
    runs: list[EvalSummary]
    metric_names: list[str]
    samples: list[ComparedSample]


def summary(row: EvalRow | JobRow) -> EvalSummary:
    request = row.request
    return EvalSummary(
        id=row.id,
        state=row.state,
        model=request.get("model", ""),
        evaluation=request.get("evaluation", "loss"),
        datasets=list(request.get("datasets") or []),
        task=request.get("task"),
        metrics=row.metrics or {},
        reason=row.reason,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _cut(text: object) -> str:
    text = str(text or "")
    return text if len(text) <= MAX_SAMPLE_CHARS else text[:MAX_SAMPLE_CHARS] + "…"


def read_samples(output_dir: str | None, offset: int, limit: int) -> tuple[list[Sample], int]:
    """Generated predictions `offset`..`offset+limit` and how many there are (blocking: run in a thread)."""
    if not output_dir:
        return [], 0
    path = Path(output_dir) / PREDICTIONS_FILE
    if not path.is_file():
        return [], 0
    items, total = [], 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for index, line in enumerate(filter(str.strip, handle)):
            total += 1
            if offset <= index < offset + limit:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                items.append(
                    Sample(
                        index=index,
                        prompt=_cut(row.get("prompt")),
                        prediction=_cut(row.get("predict")),
                        label=_cut(row.get("label")),
                    )
                )
    return items, total


async def _own_eval(db, principal: Principal, job_id: str) -> JobRow:
    """`db`: the pool, or a connection already held."""
    row = await store.job_detail(db, job_id, None if principal.is_admin else principal.user_id)
    if row is None or row.kind != "eval":
        raise not_found("evaluation")
    return row


async def eval_detail(db, principal: Principal, job_id: str) -> EvalDetail:
    row = await _own_eval(db, principal, job_id)
    items, total = await asyncio.to_thread(read_samples, row.output_dir, 0, DETAIL_SAMPLES)
    return EvalDetail(
        **msgspec.structs.asdict(summary(row)),
        message=row.message,
        request=row.request,
        config_yaml=row.config_yaml,
        samples=items,
        samples_total=total,
    )


class EvalController(Controller):
    path = "/api/evals"
    tags = ["evaluations"]

    @post(
        "/",
        status_code=201,
        summary="Submit an evaluation (the same as POST /api/jobs with kind 'eval')",
        response_headers=[idempotency.REPLAYED_HEADER],
    )
    async def submit(
        self,
        pool: Pool,
        nc: Client,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        data: EvalRequest,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[EvalDetail]:
        async def answer(conn, job_id: str) -> idempotency.Answer:
            return idempotency.Answer(201, msgspec.json.encode(await eval_detail(conn, principal, job_id)))

        submission = idempotency.Submission(principal, idempotency_key, "POST /api/evals", data, answer)
        return await idempotency.created(
            pool, submission, lambda: service.submit(pool, nc, js, settings, principal, data, submission)
        )

    @get("/", summary="The caller's evaluations (admins: everyone's), newest first, with their metrics")
    async def list_evals(
        self,
        pool: Pool,
        principal: Principal,
        job_state: Annotated[JobState | None, Parameter(query="state")] = None,
        evaluation: Literal["loss", "generation", "benchmark"] | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> EvalPage:
        rows = await store.list_evals(
            pool,
            owner_id=None if principal.is_admin else principal.user_id,
            state=job_state,
            evaluation=evaluation,
            before=cursor_after(cursor),
            limit=limit + 1,
        )
        return EvalPage(items=[summary(r) for r in rows[:limit]], next_cursor=next_cursor(rows, limit))

    @get("/compare", summary="Several evaluations side by side: metrics, and generated samples by example")
    async def compare(
        self,
        pool: Pool,
        principal: Principal,
        ids: Annotated[str, Parameter(description="comma-separated evaluation ids, 2 to 10")],
        samples: Annotated[int, Parameter(ge=0, le=100)] = 10,
    ) -> Comparison:
        wanted = list(dict.fromkeys(filter(None, (part.strip() for part in ids.split(",")))))
        if not 2 <= len(wanted) <= MAX_COMPARED:
            raise ApiError(422, "invalid_field", f"compare 2 to {MAX_COMPARED} distinct evaluations", "ids")
        rows = [await _own_eval(pool, principal, job_id) for job_id in wanted]
        runs = [summary(row) for row in rows]
        names = sorted({name for run in runs for name in run.metrics})
        read = [await asyncio.to_thread(read_samples, row.output_dir, 0, samples) for row in rows]
        by_index: dict[int, ComparedSample] = {}
        for position, (items, _) in enumerate(read):
            for item in items:
                entry = by_index.setdefault(
                    item.index,
                    ComparedSample(
                        index=item.index, prompt=item.prompt, label=item.label, predictions=[None] * len(rows)
                    ),
                )
                entry.predictions[position] = item.prediction
        return Comparison(runs=runs, metric_names=names, samples=[by_index[i] for i in sorted(by_index)])

    @get("/{job_id:str}", summary="An evaluation: metrics, config, and its first generated samples")
    async def detail(self, pool: Pool, principal: Principal, job_id: str) -> EvalDetail:
        return await eval_detail(pool, principal, job_id)

    @get("/{job_id:str}/samples", summary="An evaluation's generated samples (prompt, prediction, label), paged")
    async def samples(
        self,
        pool: Pool,
        principal: Principal,
        job_id: str,
        offset: Annotated[int, Parameter(ge=0)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> SamplePage:
        row = await _own_eval(pool, principal, job_id)
        items, total = await asyncio.to_thread(read_samples, row.output_dir, offset, limit)
        return SamplePage(items=items, total=total)
