"""Which base models and datasets a caller may train on.

One function each, so the datasets and registry services can take the rule over later: a base model
is a preset or one of the caller's own successful outputs; a dataset is public or the caller's own
(the datasets service's table), and of a format the training stage can use.
"""

from __future__ import annotations

import json

import asyncpg
import msgspec

from services.common.errors import ApiError
from services.common.security import Principal
from services.datasets import store as datasets_store
from services.datasets.formats import stage_problem
from services.registry import rules


class BaseModel(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    path: str
    parameter_count: int | None
    template: str


async def usable_base_model(pool: asyncpg.Pool, principal: Principal, name: str) -> BaseModel:
    """The model `name` if the caller may train from it (the registry's rule); 422 on `base_model` otherwise.

    Someone else's model looks unknown; the name maps to the model's local copy, else its hub path.
    """
    model = await rules.model_for_use(pool, principal.user_id, name, use="train", field="base_model")
    return BaseModel(name=model.name, path=model.location, parameter_count=model.parameter_count,
                     template=model.template)


async def usable_datasets(pool: asyncpg.Pool, principal: Principal, names: list[str], stage: str) -> list[str]:
    """The dataset_info.json keys of `names` for the job's YAML; 422 naming `datasets[i]` when one is unknown.

    A name is public or one of the caller's own (theirs wins over a public one of the same name);
    someone else's private dataset looks exactly like one that does not exist.
    """
    rows = {row["name"]: row for row in await datasets_store.usable_keys(pool, principal.user_id, names)}
    keys = []
    for index, name in enumerate(names):
        row = rows.get(name)
        if row is None:
            raise ApiError(422, "unknown_dataset", f"dataset {name!r} is not public or yours", f"datasets[{index}]")
        problem = stage_problem(row["format"], json.loads(row["columns"]), stage)
        if problem:
            raise ApiError(422, "dataset_not_for_stage", f"dataset {name!r}: {problem}", f"datasets[{index}]")
        keys.append(row["info_key"])
    return keys
