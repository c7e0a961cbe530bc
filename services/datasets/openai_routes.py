"""HTTP routes of OpenAI's Files and Uploads APIs (/v1/files, /v1/uploads), errors in OpenAI's shape."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter
from litestar.response import Stream

from services.common import ranges
from services.common.dependencies import Injected
from services.common.openai_errors import OPENAI_EXCEPTION_HANDLERS
from services.common.security import Principal

from . import openai_files, openai_results, openai_uploads
from .openai_files import DeletedFile, FileList, FileObject
from .openai_uploads import CompleteRequest, PartObject, UploadObject, UploadRequest
from .routes import ranged_file
from .service import Context

FILE_HELP = """OpenAI's Files API. multipart/form-data: `purpose` (`fine-tune`), then `file`: OpenAI's chat JSONL
(`{"messages": [...]}` per line) or its preference JSONL (`{"input": {"messages"}, "preferred_output",
"non_preferred_output"}`), up to LLMCT_OPENAI_FILE_MAX_BYTES (512 MiB; larger files: /v1/uploads). Stored as a
private dataset of yours named by the file id; a bad line is refused with a 400 naming it (docs/openai.md)."""


def _length(request: Request) -> int | None:
    length = request.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


class FilesController(Controller):
    path = "/v1/files"
    tags = ["openai"]
    exception_handlers = OPENAI_EXCEPTION_HANDLERS  # pyright: ignore[reportAssignmentType] - handlers by class

    @post("/", status_code=200, request_max_body_size=None, summary="OpenAI: upload a file", description=FILE_HELP)
    async def create(self, request: Request, datasets: Injected[Context], principal: Principal) -> FileObject:
        return await openai_files.create_file(
            datasets, principal, request.stream(), request.headers.get("content-type"), _length(request)
        )

    @get("/", summary="OpenAI: the caller's files, newest first unless `order=asc`")
    async def list_files(
        self,
        datasets: Injected[Context],
        principal: Principal,
        after: Annotated[str | None, Parameter(max_length=100, description="a file id: the files after it")] = None,
        limit: Annotated[int, Parameter(ge=1, le=10_000)] = 10_000,
        order: Literal["asc", "desc"] = "desc",
        purpose: Annotated[str | None, Parameter(max_length=40)] = None,
    ) -> FileList:
        return await openai_files.list_files(
            datasets, principal, after=after, limit=limit, order=order, purpose=purpose
        )

    @get("/{file_id:str}", summary="OpenAI: a file of the caller's")
    async def retrieve(self, datasets: Injected[Context], principal: Principal, file_id: str) -> FileObject:
        return await openai_files.get_file(datasets, principal, file_id)

    @get("/{file_id:str}/content", summary="OpenAI: a file's bytes as uploaded (ranges resume)")
    async def content(
        self, request: Request, datasets: Injected[Context], principal: Principal, file_id: str
    ) -> Stream:
        path, filename = await openai_files.content_path(datasets, principal, file_id)
        if isinstance(path, bytes):  # a results file: its CSV is kept in its row
            etag, read = openai_results.held_bytes(path)
            return ranges.ranged(
                request.headers, len(path), etag, read, media_type="text/csv", extra=ranges.attachment(filename)
            )
        return await ranged_file(request.headers, path, filename)

    @delete("/{file_id:str}", status_code=200, summary="OpenAI: delete a file no pending or running job uses")
    async def remove(self, datasets: Injected[Context], principal: Principal, file_id: str) -> DeletedFile:
        return await openai_files.delete_file(datasets, principal, file_id)


class UploadsController(Controller):
    path = "/v1/uploads"
    tags = ["openai"]
    exception_handlers = OPENAI_EXCEPTION_HANDLERS  # pyright: ignore[reportAssignmentType] - handlers by class

    @post("/", status_code=200, summary="OpenAI: start an upload of `bytes` bytes sent in parts (expires in 1 h)")
    async def create(self, datasets: Injected[Context], principal: Principal, data: UploadRequest) -> UploadObject:
        return await openai_uploads.create_upload(datasets, principal, data)

    @post(
        "/{upload_id:str}/parts",
        status_code=200,
        request_max_body_size=None,
        summary="OpenAI: one part of an upload (multipart `data`, up to 64 MiB), streamed to disk",
    )
    async def part(
        self, request: Request, datasets: Injected[Context], principal: Principal, upload_id: str
    ) -> PartObject:
        return await openai_uploads.add_part(
            datasets, principal, upload_id, request.stream(), request.headers.get("content-type")
        )

    @post("/{upload_id:str}/complete", status_code=200, summary="OpenAI: join the parts in order into a file")
    async def complete(
        self, datasets: Injected[Context], principal: Principal, upload_id: str, data: CompleteRequest
    ) -> UploadObject:
        return await openai_uploads.complete(datasets, principal, upload_id, data)

    @post("/{upload_id:str}/cancel", status_code=200, summary="OpenAI: cancel an upload; its parts are removed")
    async def cancel(self, datasets: Injected[Context], principal: Principal, upload_id: str) -> UploadObject:
        return await openai_uploads.cancel(datasets, principal, upload_id)
