"""Request and response shapes of /api/datasets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .formats import Format

# Also the dataset's key in dataset_info.json (public) or part of it (private: `<owner id>__<name>`),
# so `__` is kept for that separator. `(?!\n)`: msgspec's `$` would accept a final newline.
NAME_RULE = "1-64 characters: letters, digits, '.', '-' or single '_', starting with a letter or digit"
DatasetName = Annotated[
    str,
    Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]|_(?!_))*$(?!\n)", description=NAME_RULE),
]
Remark = Annotated[str, Meta(max_length=2000, pattern=r"^[^\x00]*$")]
Visibility = Literal["public", "private"]
HubId = Annotated[
    str,
    Meta(
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$(?!\n)",
        description="owner/name on the hub",
    ),
]
ShortText = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]*$")]


class StoredFile(msgspec.Struct, kw_only=True):
    name: str
    """The platform's name for the file, relative to the dataset's file_name."""
    size_bytes: int
    sha256: str
    original: str | None = None
    """The name the file had when it was uploaded (or its archive entry)."""


class Dataset(msgspec.Struct, kw_only=True):
    id: str
    name: str
    key: str
    """The dataset's name in dataset_info.json: what a job's `dataset:` says."""
    visibility: Visibility
    format: Format
    source: str
    owner_id: str | None
    owner: str | None
    can_edit: bool
    columns: dict[str, str]
    tags: dict[str, str]
    file_name: str | None
    files: list[StoredFile]
    rows: int | None
    size_bytes: int | None
    checksum: str | None
    remark: str
    dataset_info: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class DatasetPage(msgspec.Struct, kw_only=True):
    items: list[Dataset]
    total: int
    next_cursor: str | None
    """Pass as `cursor` to get the next page; null on the last one."""


class PreviewRow(msgspec.Struct, kw_only=True):
    where: str
    raw: Any
    rendered: dict[str, Any] | None
    """The row as the chat template receives it: system, prompt turns and the response(s)."""
    problem: str | None = None


class Preview(msgspec.Struct, kw_only=True):
    id: str
    format: Format
    columns: dict[str, str]
    rows: list[PreviewRow]


class RegisterRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An existing file or folder under the data folder (admins), or a dataset on a hub."""

    name: DatasetName
    format: Format
    path: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    hub: Literal["huggingface", "modelscope"] | None = None
    hub_id: HubId | None = None
    subset: ShortText | None = None
    split: ShortText = "train"
    columns: dict[ShortText, ShortText] = msgspec.field(default_factory=dict)
    tags: dict[ShortText, ShortText] = msgspec.field(default_factory=dict)
    visibility: Visibility = "private"
    remark: Remark = ""


class DatasetPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: DatasetName | None = None
    remark: Remark | None = None


class UploadFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The text parts of a multipart upload, checked like a JSON body."""

    name: DatasetName
    format: Format
    visibility: Visibility = "private"
    remark: Remark = ""
    columns: dict[ShortText, ShortText] = msgspec.field(default_factory=dict)
    tags: dict[ShortText, ShortText] = msgspec.field(default_factory=dict)
