"""Settings of the datasets service, declared once and read once at start (services.common.settings)."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import env

GIB = 1 << 30


@dataclass(frozen=True, kw_only=True)
class DatasetSettings:
    max_bytes: int = env(
        "LLMCT_DATASET_MAX_BYTES", 10 * GIB, doc="the largest dataset an upload may send (413 beyond it)"
    )
    hub_access: bool = env(
        "LLMCT_DATASET_HUB_ACCESS", False, doc="1 when the engines' hosts can reach Hugging Face / ModelScope"
    )
    preview_rows: int = env(
        "LLMCT_DATASET_PREVIEW_ROWS", 5, doc="rows a preview shows unless the caller asks for more (at most 50)"
    )
