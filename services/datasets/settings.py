"""Settings of the datasets service, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

GIB = 1 << 30


@dataclass(frozen=True, kw_only=True)
class DatasetSettings:
    max_bytes: int = 10 * GIB
    """LLMCT_DATASET_MAX_BYTES: the largest dataset an upload may send (413 beyond it)."""
    hub_access: bool = False
    """LLMCT_DATASET_HUB_ACCESS: 1 when the engines' hosts can reach Hugging Face / ModelScope."""
    preview_rows: int = 5
    """LLMCT_DATASET_PREVIEW_ROWS: rows a preview shows unless the caller asks for more (at most 50)."""


def dataset_settings_from_env() -> DatasetSettings:
    env = os.environ.get
    return DatasetSettings(
        max_bytes=int(env("LLMCT_DATASET_MAX_BYTES") or 10 * GIB),
        hub_access=(env("LLMCT_DATASET_HUB_ACCESS") or "0").lower() in ("1", "true", "yes"),
        preview_rows=int(env("LLMCT_DATASET_PREVIEW_ROWS") or 5),
    )


@lru_cache(maxsize=1)
def get_dataset_settings() -> DatasetSettings:
    return dataset_settings_from_env()
