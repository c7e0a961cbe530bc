"""What the datasets service's routes and answers share, built once by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from services.common import lifecycle
from services.common.inputs import InputStore

from .checks import CheckPool
from .layout import DataLayout
from .service import Context
from .settings import DatasetSettings


@dataclass(frozen=True, kw_only=True)
class DatasetsContext(lifecycle.Context):
    """The shared context, and what every datasets operation needs (the pool, the data folder, the settings)."""

    datasets: Context
    inputs: InputStore | None = None  # `objects` storage mode: datasets' files go into their bucket for jobs


def datasets_context(dataset_settings: DatasetSettings):
    """The builder of the service's context, given the datasets service's own settings."""

    def build(base: lifecycle.Context) -> DatasetsContext:
        layout = DataLayout(base.settings.storage.data)
        objects = base.settings.storage_mode == "objects"
        inputs = InputStore(base.js, base.settings.storage.base) if objects else None
        return base.extended(
            DatasetsContext,
            datasets=Context(
                pool=base.pool,
                layout=layout,
                settings=dataset_settings,
                checks=CheckPool(dataset_settings.check_workers),
                inputs=inputs,
            ),
            inputs=inputs,
        )

    return build
