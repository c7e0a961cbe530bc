"""HTTP routes of /api/datasets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from asyncpg import Pool
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.params import Parameter
from litestar.response import Stream

from services.common import archive, folders, ranges
from services.common.dependencies import Injected
from services.common.errors import ApiError
from services.common.security import ANYONE, Principal, authenticate, bearer_from

from . import ingest, quota, register, service
from .formats import Format
from .quota import DatasetQuota, QuotaSetting
from .schemas import Dataset, DatasetPage, DatasetPatch, Preview, RegisterRequest, Visibility
from .service import Context

PUBLIC = {"public": True}
UPLOAD_HELP = """multipart/form-data, streamed to disk. Parts: `file` (one or more: .json, .jsonl, .csv, .parquet,
or a .zip / .tar / .tar.gz of them), `name`, `format` (alpaca | sharegpt | text | pairwise), and optionally
`visibility` (private; public for admins), `remark`, `columns` (JSON: role -> column) and `tags` (JSON, sharegpt).
Send the text parts before the file to hear about a bad name before the file is sent."""

DOWNLOAD_HELP = f"""A dataset of one file comes as that file; one of several as a zip of them (stored, fixed timestamps:
the same files always give the same bytes, so the zip resumes too).

{ranges.RESUMABLE}"""


async def ranged_file(headers: Mapping[str, str], path: Path, filename: str) -> Stream:
    """A dataset's file, whole or the range asked."""
    opener = ranges.path_opener(path)
    st = await asyncio.to_thread(ranges.stat_opened, opener)
    if st is None:
        raise ApiError(409, "dataset_unreadable", "the dataset's file is missing from the data folder: tell an admin")
    return ranges.ranged(
        headers, st.st_size, ranges.file_etag(st), ranges.fd_reader(opener, st), extra=ranges.attachment(filename)
    )


async def ranged_folder(headers: Mapping[str, str], path: Path, filename: str) -> Stream:
    """A dataset of several files as a zip (archive.py: its length and ETag known up front), whole or a range."""
    files = await asyncio.to_thread(folders.own_files, path)
    layout = await asyncio.to_thread(archive.plan, path, filename.removesuffix(".zip"), files)
    if not layout.members:
        raise ApiError(409, "dataset_unreadable", "the dataset's files are missing from the data folder: tell an admin")
    return ranges.ranged(
        headers,
        layout.size,
        layout.etag,
        archive.reader(layout),
        media_type="application/zip",
        extra=ranges.attachment(filename),
    )


async def optional_caller(request: Request) -> Principal | None:
    """The caller when a credential is sent (a bad one is still a 401), else None for anonymous browsing."""
    if bearer_from(request) is None:
        return None
    return await authenticate(request)


class DatasetController(Controller):
    path = "/api/datasets"
    tags = ["datasets"]

    @get("/", opt=PUBLIC, security=ANYONE, summary="List datasets: public ones, plus the caller's own when logged in")
    async def list_datasets(
        self,
        request: Request,
        pool: Pool,
        q: Annotated[str | None, Parameter(max_length=64, description="part of the name")] = None,
        format: Format | None = None,
        visibility: Visibility | None = None,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> DatasetPage:
        return await service.list_datasets(
            pool,
            await optional_caller(request),
            search=q,
            fmt=format,
            visibility=visibility,
            cursor=cursor,
            limit=limit,
        )

    @get(
        "/{dataset_id:str}",
        opt=PUBLIC,
        security=ANYONE,
        summary="A dataset: format, columns, files, rows, dataset_info entry",
    )
    async def detail(self, request: Request, pool: Pool, dataset_id: str) -> Dataset:
        return await service.get_dataset(pool, await optional_caller(request), dataset_id)

    @get(
        "/{dataset_id:str}/preview",
        opt=PUBLIC,
        security=ANYONE,
        summary="The first rows, raw and as the chat template will see them",
    )
    async def preview(
        self,
        request: Request,
        datasets: Injected[Context],
        dataset_id: str,
        rows: Annotated[int | None, Parameter(ge=1, le=50)] = None,
    ) -> Preview:
        return await service.preview(datasets, await optional_caller(request), dataset_id, rows)

    @get(
        "/{dataset_id:str}/download",
        summary="The dataset's file (a zip when it has several), streamed",
        description=DOWNLOAD_HELP,
    )
    async def download(
        self, request: Request, datasets: Injected[Context], principal: Principal, dataset_id: str
    ) -> Stream:
        path, filename = await service.download_path(datasets, principal, dataset_id)
        if path.is_dir():
            return await ranged_folder(request.headers, path, filename)
        return await ranged_file(request.headers, path, filename)

    @post("/upload", status_code=201, request_max_body_size=None, summary="Upload a dataset", description=UPLOAD_HELP)
    async def upload(self, request: Request, datasets: Injected[Context], principal: Principal) -> Dataset:
        length = request.headers.get("content-length")
        return await ingest.upload(
            datasets,
            principal,
            request.stream(),
            request.headers.get("content-type"),
            int(length) if length and length.isdigit() else None,
        )

    @post("/register", status_code=201, summary="Register a file already in the data folder (admins) or a hub dataset")
    async def register(self, datasets: Injected[Context], principal: Principal, data: RegisterRequest) -> Dataset:
        return await register.register(datasets, principal, data)

    @patch("/{dataset_id:str}", summary="Rename a dataset or change its remark")
    async def change(
        self, datasets: Injected[Context], principal: Principal, dataset_id: str, data: DatasetPatch
    ) -> Dataset:
        return await service.patch_dataset(datasets, principal, dataset_id, data)

    @delete("/{dataset_id:str}", status_code=204, summary="Delete a dataset no pending or running job uses")
    async def remove(self, datasets: Injected[Context], principal: Principal, dataset_id: str) -> None:
        await service.delete_dataset(datasets, principal, dataset_id)


class QuotaController(Controller):
    path = "/api/datasets/quotas"
    tags = ["datasets"]

    @get("/me", summary="The caller's dataset quota and what their uploads take")
    async def mine(self, datasets: Injected[Context], principal: Principal) -> DatasetQuota:
        return await quota.show_quota(datasets.pool, datasets.settings, principal.user_id)

    @get("/{user_id:str}", opt={"admin": True}, summary="A user's dataset quota and use (admins)")
    async def of_user(self, datasets: Injected[Context], user_id: str) -> DatasetQuota:
        return await quota.show_quota(datasets.pool, datasets.settings, user_id)

    @put("/{user_id:str}", opt={"admin": True}, summary="Set a user's dataset quota (admins; null: the default)")
    async def set_quota(
        self, datasets: Injected[Context], principal: Principal, user_id: str, data: QuotaSetting
    ) -> DatasetQuota:
        return await quota.set_quota(datasets.pool, datasets.settings, principal.user_id, user_id, data)
