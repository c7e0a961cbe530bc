"""Logic of the registry: browse, edit and retire models, follow lineage, register what jobs produce."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

import asyncpg
import msgspec

from services.common import readmodels
from services.common.contracts import ACTIVE_JOB_STATES
from services.common.errors import ApiError, not_found
from services.common.security import Principal, new_id, utcnow

from . import outputs, rules, store
from .schemas import Lineage, LineageEntry, Model, ModelPage, ModelPatch, PresetCreate

log = logging.getLogger(__name__)

MAX_DESCENDANTS = 1000
CATCH_UP_BATCH = 500
Outcome = Literal["registered", "known", "not_ready", "no_output", "no_parent", "no_job"]
M = TypeVar("M", bound=Model)


def to_model(row, principal: Principal, struct: type[M] = Model, **extra) -> M:
    """A response from a row, with the uses the caller may make of it."""
    fields = {f: row[f] for f in struct.__struct_fields__ if f not in ("usable_for", *extra)}
    usable = rules.uses_of(rules.ModelRef.from_row(row), principal.user_id)
    return struct(**fields, **extra, usable_for=usable)


def _viewer(principal: Principal) -> str | None:
    return None if principal.is_admin else principal.user_id


async def visible_row(conn, principal: Principal, model_id: str):
    """A model the caller may see; 404 otherwise (someone else's looks missing)."""
    row = await store.get(conn, model_id)
    if row is None or not rules.is_visible(rules.ModelRef.from_row(row), principal.user_id, principal.is_admin):
        raise not_found("model")
    return row


async def list_models(
    pool: asyncpg.Pool,
    principal: Principal,
    *,
    kind: str | None,
    source: str | None,
    search: str | None,
    retired: bool | None,
    sort: str,
    order: str,
    page: int,
    limit: int,
    base: str | None = None,
    job: str | None = None,
    checkpoint_step: int | None = None,
    checkpoint: bool | None = None,
) -> ModelPage:
    """The caller's models and the presets (admins: every model), filtered, sorted, one page. `base` names a model
    as the caller's jobs resolve a name (their own first, then a preset): only what was made directly from it. `job`:
    only what that job made (`checkpoint_step`: its checkpoint's model); `checkpoint`: only (or no) checkpoints'
    models."""
    base_id = None
    if base is not None:
        base_row = await store.by_name_for(pool, principal.user_id, base)
        base_id = base_row["id"] if base_row else ""  # no such model: nothing is made from it
    rows, total = await store.list_models(
        pool,
        viewer=_viewer(principal),
        kind=kind,
        source=source,
        search=search or None,
        retired=retired,
        base_id=base_id,
        job_id=job,
        checkpoint_step=checkpoint_step,
        checkpoint=checkpoint,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=(page - 1) * limit,
    )
    return ModelPage(
        items=[to_model(r, principal) for r in rows],
        page=page,
        limit=limit,
        total=total,
        next_page=page + 1 if page * limit < total else None,
    )


async def get_model(pool: asyncpg.Pool, principal: Principal, model_id: str) -> Model:
    async with pool.acquire() as conn:
        return to_model(await visible_row(conn, principal, model_id), principal)


async def lineage(pool: asyncpg.Pool, principal: Principal, model_id: str) -> Lineage:
    """Ancestors up to the preset, and the descendants the caller may see."""
    async with pool.acquire() as conn:
        row = await visible_row(conn, principal, model_id)
        up = await store.ancestors(conn, model_id)
        down = await store.descendants(conn, model_id, _viewer(principal), MAX_DESCENDANTS + 1)

    def entry(r) -> LineageEntry:
        return to_model(r, principal, LineageEntry, depth=r["depth"])

    return Lineage(
        model=to_model(row, principal),
        ancestors=[entry(r) for r in up],
        descendants=[entry(r) for r in down[:MAX_DESCENDANTS]],
        descendants_truncated=len(down) > MAX_DESCENDANTS,
    )


def check_local_path(path: str | None, models_root: Path, field: str = "path") -> None:
    """A preset's local copy: absolute, no '..', and under the models root once every link is resolved.

    The path ends up in every job's YAML, and the docker runtime mounts it into the job's container: a preset at
    /etc, at another user's dataset or at a link out of the models root would hand it to every job."""
    if path is None:
        return
    if ".." in PurePosixPath(path).parts:
        raise ApiError(422, "invalid_field", "path must be absolute and must not contain '..'", field)
    root = os.path.realpath(models_root)
    if os.path.commonpath([os.path.realpath(path), root]) != root:
        raise ApiError(
            422,
            "invalid_field",
            f"path must lie under the models folder {models_root} (links resolved): copy the model there",
            field,
        )


def _need_location(path, hf_path, ms_path) -> None:
    if not (path or hf_path or ms_path):
        raise ApiError(422, "missing_location", "a preset needs at least one of hf_path, ms_path or path", "hf_path")


async def create_preset(pool: asyncpg.Pool, principal: Principal, data: PresetCreate, models_root: Path) -> Model:
    """An admin adds a preset every user may train from; a local copy must lie under `models_root`."""
    _need_location(data.path, data.hf_path, data.ms_path)
    check_local_path(data.path, models_root)
    model_id = new_id("mdl")
    row = await store.insert_preset(
        pool,
        model_id=model_id,
        name=data.name,
        path=data.path,
        hf_path=data.hf_path,
        ms_path=data.ms_path,
        parameter_count=data.parameter_count,
        template=data.template,
        remark=data.remark,
        details={"created_by": principal.user_id},
    )
    if row is None:
        raise ApiError(409, "name_taken", f"a preset is already called {data.name!r}", "name")
    return await get_model(pool, principal, model_id)


PRESET_ONLY = ("hf_path", "ms_path", "path", "parameter_count", "template", "retired")


def _check_patch(row, principal: Principal, changes: dict, models_root: Path) -> None:
    """Who may change what: presets are the admins'; an output's owner (or an admin) renames and remarks it.

    `row` is already one the caller sees: a preset, their own, or (admins) anyone's.
    """
    if row["source"] == "preset":
        if not principal.is_admin:
            raise ApiError(403, "admins_only", "only admins edit presets")
        merged = {k: changes.get(k, row[k]) for k in ("path", "hf_path", "ms_path")}
        _need_location(**merged)
        check_local_path(changes.get("path"), models_root)
        return
    for field in PRESET_ONLY:
        if field in changes:
            raise ApiError(422, "preset_only", f"{field} can be changed on presets only", field)


async def update_model(
    pool: asyncpg.Pool, principal: Principal, model_id: str, data: ModelPatch, models_root: Path
) -> Model:
    """Rename, remark, or (presets, admins) edit sources (a local copy under `models_root`) and retire."""
    changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
    async with pool.acquire() as conn, conn.transaction():
        row = await visible_row(conn, principal, model_id)
        _check_patch(row, principal, changes, models_root)
        if "name" in changes and changes["name"] != row["name"]:
            await _check_name_free(conn, row, changes["name"])
        if "retired" in changes:
            # Retiring again keeps the first date.
            changes["retired_at"] = (row["retired_at"] or utcnow()) if changes.pop("retired") else None
        try:
            await store.update(conn, model_id, changes)
        except asyncpg.UniqueViolationError as exc:
            raise ApiError(409, "name_taken", f"a model is already called {changes.get('name')!r}", "name") from exc
    return await get_model(pool, principal, model_id)


async def _check_name_free(conn, row, name: str) -> None:
    # A user's model named like a preset would hide that preset from them: keep the names apart.
    if row["source"] != "preset" and await store.preset_named(conn, name):
        raise ApiError(409, "name_taken", f"{name!r} is a preset's name: pick another", "name")


async def delete_model(pool: asyncpg.Pool, principal: Principal, model_id: str) -> None:
    """Unregister a model nothing derives from and no unfinished job uses (its files stay with its job)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await visible_row(conn, principal, model_id)
        preset = row["source"] == "preset"
        if preset and not principal.is_admin:
            raise ApiError(403, "admins_only", "only admins delete presets")
        await store.lock(conn, model_id)
        hint = "retire it instead" if preset else "delete those first"
        if children := await store.live_children(conn, model_id):
            raise ApiError(409, "model_in_use", f"{children} model(s) derive from {row['name']!r}: {hint}")
        if jobs := await readmodels.active_jobs_using_model(conn, row["name"], None if preset else row["owner_id"]):
            raise ApiError(409, "model_in_use", f"{jobs} unfinished job(s) use {row['name']!r}: wait or cancel them")
        await store.soft_delete(conn, model_id)


# --- what jobs produce --------------------------------------------------------------------------


def measure(path: str) -> tuple[int | None, int | None]:
    """Size on disk and parameters counted from the safetensors headers (blocking)."""
    return outputs.folder_size(path), outputs.count_parameters(path)


async def register_job_output(pool: asyncpg.Pool, job_id: str) -> Outcome:
    """Register the model a succeeded job produced, linked to its parent, datasets and job. Idempotent."""
    job = await readmodels.job_output(pool, job_id)
    if job is None:
        return "no_job"
    if job.state in ACTIVE_JOB_STATES:
        return "not_ready"  # the scheduler has not recorded the result yet
    out = job.output
    if job.state != "succeeded" or out is None:
        return "no_output"
    if await store.model_of_job(pool, job_id):
        return "known"
    parent = await store.find_parent(pool, job.owner_id, out.parent_name, out.parent_location)
    if parent is None:
        log.warning("job %s succeeded but its parent model %r is gone: output not registered", job_id, out.parent_name)
        return "no_parent"
    size, counted = await asyncio.to_thread(measure, out.path)
    details = dict(out.details)
    if out.kind == "lora" and counted:
        details["adapter_parameter_count"] = counted
    fields: dict[str, Any] = {  # insert_output's arguments but the id and name, the same for each try
        "kind": out.kind,
        "source": out.source,
        "owner_id": job.owner_id,
        "base_model_id": parent["id"],
        "path": out.path,
        "size_bytes": size,
        "job_id": job_id,
        "details": details,
        "parameter_count": counted if out.kind == "full" and counted else parent["parameter_count"],
        "template": out.template or parent["template"],
        "datasets": list(out.datasets or parent["datasets"]),
    }
    for long in (False, True):
        name = outputs.default_name(parent["name"], out.label, job_id, long=long)
        if await store.insert_output(pool, model_id=new_id("mdl"), name=name, **fields):
            log.info("registered %s %s from job %s", out.kind, name, job_id)
            return "registered"
        if await store.model_of_job(pool, job_id):
            return "known"  # registered meanwhile by another delivery
    raise RuntimeError(f"no free name for the output of job {job_id}")


async def register_missed_outputs(pool: asyncpg.Pool) -> int:
    """Register succeeded jobs whose result never reached us (Postgres is the truth). Returns how many."""
    registered = 0
    for job_id in await readmodels.succeeded_outputs_unregistered(pool, CATCH_UP_BATCH):
        try:
            registered += await register_job_output(pool, job_id) == "registered"
        except Exception:
            log.exception("could not register the output of job %s", job_id)
    return registered
