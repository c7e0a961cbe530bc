"""Settings of the datasets service, declared once and read once at start (services.common.settings)."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import env

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class DatasetSettings:
    max_bytes: int = env(
        "LLMCT_DATASET_MAX_BYTES", 10 * GIB, doc="the largest dataset an upload may send (413 beyond it)"
    )
    openai_file_max_bytes: int = env(
        "LLMCT_OPENAI_FILE_MAX_BYTES",
        512 * MIB,
        doc="the largest file one POST /v1/files may send (413 beyond it: the Uploads API takes more, in parts)",
    )
    quota_bytes: int = env(
        "LLMCT_DATASET_QUOTA_BYTES",
        50 * GIB,
        doc="what one user's uploaded datasets may take in all, unless an admin set otherwise for them (413 beyond)",
    )
    archive_max_members: int = env(
        "LLMCT_ARCHIVE_MAX_MEMBERS", 10_000, doc="entries an uploaded archive may list, folders included"
    )
    archive_max_ratio: int = env(
        "LLMCT_ARCHIVE_MAX_RATIO", 100, doc="how many times its own size an uploaded archive may unpack to"
    )
    upload_max_age_s: float = env(
        "LLMCT_UPLOAD_MAX_AGE_S", 6 * 3600.0, doc="an unfinished upload with no progress for this long is removed"
    )
    upload_sweep_s: float = env("LLMCT_UPLOAD_SWEEP_S", 600.0, doc="how often unfinished uploads are looked for")
    hub_access: bool = env(
        "LLMCT_DATASET_HUB_ACCESS", False, doc="1 when the engines' hosts can reach Hugging Face / ModelScope"
    )
    check_workers: int = env(
        "LLMCT_DATASET_CHECK_WORKERS",
        0,
        doc="processes that check a large JSON-lines upload's rows while it streams in "
        "(0: one per CPU but one, at least 1, at most 4)",
    )
    preview_rows: int = env(
        "LLMCT_DATASET_PREVIEW_ROWS", 5, doc="rows a preview shows unless the caller asks for more (at most 50)"
    )
