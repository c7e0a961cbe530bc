"""Request and response shapes of /api/models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

# The scheduler's pattern for `base_model`, so every name here can be asked for in a job.
# msgspec matches with re.search, where `$` also matches before a final newline: (?!\n) stops "m\n".
ModelName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$(?!\n)",
        description="1-128 characters: letters, digits, '_', '.', '-', '/'",
    ),
]
HubPath = Annotated[
    str,
    Meta(
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$(?!\n)",
        description="a hub repository id: organisation/name",
    ),
]
LocalPath = Annotated[
    str,
    Meta(
        min_length=2,
        max_length=1024,
        pattern=r"^/[^\x00]*$(?!\n)",
        description="an absolute path on the shared storage",
    ),
]
Template = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$(?!\n)")]
ParameterCount = Annotated[int, Meta(ge=1, le=10**13)]
Remark = Annotated[str, Meta(max_length=2000, pattern=r"^[^\x00]*$")]

Kind = Literal["base", "lora", "full", "quantized"]
Source = Literal["preset", "train", "export"]
Sort = Literal["created_at", "updated_at", "name", "size_bytes", "parameter_count"]


class PresetCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A preset base model: at least one of path, hf_path, ms_path."""

    name: ModelName
    hf_path: HubPath | None = None
    ms_path: HubPath | None = None
    path: LocalPath | None = None
    parameter_count: ParameterCount | None = None
    template: Template = "default"
    remark: Remark | None = None


class CheckpointRegister(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A kept checkpoint of one of the caller's training jobs, to register as a model (again: the same model)."""

    job_id: Annotated[str, Meta(min_length=1, max_length=64, description="the training job, as /api/jobs names it")]
    step: Annotated[int, Meta(ge=0, le=10**9, description="the checkpoint's step (the job's `checkpoints`)")]
    name: ModelName | None = None
    """The model's name; by default `<base>-<stage>-step<step>-<job id suffix>`."""


class ModelPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Owners rename and remark their models; admins also edit presets' sources and retire them."""

    name: ModelName | UnsetType = UNSET
    remark: Remark | None | UnsetType = UNSET
    hf_path: HubPath | None | UnsetType = UNSET
    ms_path: HubPath | None | UnsetType = UNSET
    path: LocalPath | None | UnsetType = UNSET
    parameter_count: ParameterCount | None | UnsetType = UNSET
    template: Template | UnsetType = UNSET
    retired: bool | UnsetType = UNSET


class Model(msgspec.Struct, kw_only=True):
    id: str
    name: str
    kind: str
    source: str
    owner_id: str | None
    owner: str | None
    base_model_id: str | None
    base_model: str | None
    path: str | None
    hf_path: str | None
    ms_path: str | None
    visibility: str
    size_bytes: int | None
    parameter_count: int | None
    template: str
    job_id: str | None
    datasets: list[str]
    details: dict
    remark: str | None
    retired_at: datetime | None
    created_at: datetime
    updated_at: datetime
    usable_for: list[str]
    """The job kinds the caller may start from this model."""


class ModelPage(msgspec.Struct, kw_only=True):
    items: list[Model]
    page: int
    limit: int
    total: int
    next_page: int | None


class LineageEntry(Model, kw_only=True):
    depth: int
    """Steps away from the model asked about."""


class Lineage(msgspec.Struct, kw_only=True):
    model: Model
    ancestors: list[LineageEntry]
    """What it derives from, nearest first, up to its preset."""
    descendants: list[LineageEntry]
    """What derives from it (the caller's own; admins: everyone's), by depth; base_model_id builds the tree."""
    descendants_truncated: bool
