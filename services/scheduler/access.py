"""Which base models and datasets a caller may train on.

One function each, so the datasets and registry services can take the rule over later: a base model
is a preset or one of the caller's own successful outputs; a dataset is public (listed in the shared
`dataset_info.json`) or the caller's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import msgspec

from services.common.errors import ApiError
from services.common.security import Principal

from . import store


class BaseModel(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    path: str
    parameter_count: int | None
    template: str


async def usable_base_model(pool: asyncpg.Pool, principal: Principal, name: str) -> BaseModel:
    """The model `name` if the caller may use it; 422 otherwise (someone else's model looks unknown)."""
    row = await store.model_by_name(pool, name)
    if row is None or (row["source"] != "preset" and row["owner_id"] != principal.user_id):
        raise ApiError(422, "unknown_model", f"base model {name!r} is not a preset or one of your models",
                       "base_model")
    return BaseModel(name=row["name"], path=row["path"], parameter_count=row["parameter_count"],
                     template=row["template"])


def check_datasets(data_dir: Path, names: list[str]) -> None:
    """Every dataset must be registered in the shared dataset_info.json."""
    info_path = data_dir / "dataset_info.json"
    try:
        known = json.loads(info_path.read_text()) if info_path.exists() else {}
    except ValueError:
        known = {}
    for index, name in enumerate(names):
        if name not in known:
            raise ApiError(422, "unknown_dataset", f"dataset {name!r} is not public or yours", f"datasets[{index}]")
