"""HTTP routes of /api/models."""

from __future__ import annotations

from typing import Annotated, Literal

from asyncpg import Pool
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import Parameter
from nats.js import JetStreamContext

from services.common.dependencies import Injected
from services.common.security import Principal
from services.common.settings import Settings

from . import checkpoints, service
from .schemas import (
    CheckpointRegister,
    Kind,
    Lineage,
    Model,
    ModelPage,
    ModelPatch,
    PresetCreate,
    Sort,
    Source,
)


class ModelController(Controller):
    path = "/api/models"
    tags = ["models"]

    @get("/", summary="List the caller's models and the presets (admins: every model)")
    async def list_models(
        self,
        pool: Pool,
        principal: Principal,
        kind: Kind | None = None,
        source: Source | None = None,
        q: Annotated[str | None, Parameter(max_length=128, description="part of the name or hub path")] = None,
        retired: Annotated[bool | None, Parameter(description="only retired (true) or active (false) models")] = None,
        base: Annotated[
            str | None,
            Parameter(
                min_length=1,
                max_length=128,
                description="only models made directly from the model of this name (with kind=lora: its adapters)",
            ),
        ] = None,
        job: Annotated[
            str | None, Parameter(min_length=1, max_length=64, description="only models this job made")
        ] = None,
        checkpoint_step: Annotated[
            int | None,
            Parameter(ge=0, le=10**9, description="only the model of the job's checkpoint at this step (with job)"),
        ] = None,
        checkpoint: Annotated[
            bool | None, Parameter(description="only models registered from checkpoints (true) or none of them (false)")
        ] = None,
        sort: Sort = "created_at",
        order: Literal["asc", "desc"] = "desc",
        page: Annotated[int, Parameter(ge=1, le=100_000)] = 1,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> ModelPage:
        return await service.list_models(
            pool,
            principal,
            kind=kind,
            source=source,
            search=q,
            retired=retired,
            base=base,
            job=job,
            checkpoint_step=checkpoint_step,
            checkpoint=checkpoint,
            sort=sort,
            order=order,
            page=page,
            limit=limit,
        )

    @post("/", opt={"admin": True}, status_code=201, summary="Add a preset base model (admins)")
    async def create_preset(
        self, pool: Pool, settings: Injected[Settings], principal: Principal, data: PresetCreate
    ) -> Model:
        return await service.create_preset(pool, principal, data, settings.storage.models)

    @post(
        "/checkpoints",
        summary="Register a kept checkpoint of your training job as a model (201), or answer the model it is (200)",
    )
    async def register_checkpoint(
        self,
        pool: Pool,
        js: JetStreamContext,
        settings: Injected[Settings],
        principal: Principal,
        data: CheckpointRegister,
    ) -> Response[Model]:
        model, created = await checkpoints.register_checkpoint(pool, js, settings, principal, data)
        return Response(model, status_code=201 if created else 200)

    @get("/{model_id:str}", summary="A model: kind, source, parent, job, datasets, and what the caller may use it for")
    async def detail(self, pool: Pool, principal: Principal, model_id: str) -> Model:
        return await service.get_model(pool, principal, model_id)

    @get("/{model_id:str}/lineage", summary="What a model derives from, up to its preset, and what derives from it")
    async def lineage(self, pool: Pool, principal: Principal, model_id: str) -> Lineage:
        return await service.lineage(pool, principal, model_id)

    @patch("/{model_id:str}", summary="Rename or remark a model; admins also edit and retire presets")
    async def update(
        self, pool: Pool, settings: Injected[Settings], principal: Principal, model_id: str, data: ModelPatch
    ) -> Model:
        return await service.update_model(pool, principal, model_id, data, settings.storage.models)

    @delete(
        "/{model_id:str}",
        status_code=204,
        summary="Unregister a model nothing derives from and no unfinished job uses (files stay with the job)",
    )
    async def remove(self, pool: Pool, principal: Principal, model_id: str) -> None:
        await service.delete_model(pool, principal, model_id)
