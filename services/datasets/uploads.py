"""Receive a multipart upload straight to disk: never more than two network chunks of a file in memory.

The body is fed chunk by chunk to a push parser (the `multipart` package); file parts go to files in
the upload's private incoming folder, hashed and counted as they arrive (hashing and writing in a thread,
one chunk behind the network), so the size cap is enforced on bytes really received, whatever
Content-Length said, and the file's sha256 is known when its last byte is in. In `objects` storage mode a file
part may also stream into its bucket as it arrives (an ObjectWriter, which then hashes it): the caller commits it
once the upload is accepted, and a part given up is aborted here (nothing of it stays in the store).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Protocol

from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from services.common.errors import ApiError
from services.common.object_writer import ObjectWriter
from services.common.objects import file_sha256

log = logging.getLogger(__name__)

FILE_FIELD = "file"
TEXT_FIELDS = frozenset({"name", "format", "visibility", "remark", "columns", "tags"})
MAX_TEXT_FIELD = 64 * 1024
MAX_PARTS = 64
MAX_FILE_PARTS = 32
WRITE_BUFFER = 1 << 20


DATASET_CAP = "this platform's dataset cap of {:,} bytes (LLMCT_DATASET_MAX_BYTES)"


def too_large(max_bytes: int, what: str = "the upload", cap: str = DATASET_CAP, field: str = "file") -> ApiError:
    return ApiError(413, "payload_too_large", f"{what} is larger than {cap.format(max_bytes)}", field)


def over_quota(quota: int, used: int, what: str = "the upload", field: str = "file") -> ApiError:
    return ApiError(
        413,
        "dataset_quota_exceeded",
        f"{what} does not fit in your dataset quota: your datasets use {used:,} of your {quota:,} bytes "
        f"({max(quota - used, 0):,} left; LLMCT_DATASET_QUOTA_BYTES or an admin's setting for you). Delete "
        "datasets you no longer need, or ask an admin for more",
        field,
    )


@dataclass(frozen=True)
class Budget:
    """The bytes one upload may store: the dataset cap, or less when the owner's quota has less room left."""

    cap: int
    quota: int | None = None
    """The owner's dataset quota; None: no quota applies."""
    used: int = 0
    """What the owner's stored datasets take already."""
    spent: int = 0
    """What this upload's files unpacked so far take (a later archive gets only the rest)."""
    cap_said: str = DATASET_CAP
    """The cap in words, `{:,}` standing for its bytes (a request's own limit is not the dataset cap)."""
    field: str = "file"

    @property
    def limit(self) -> int:
        room = self.cap if self.quota is None else min(self.cap, max(self.quota - self.used, 0))
        return max(room - self.spent, 0)

    def after(self, spent: int) -> Budget:
        """This budget once `spent` bytes of the upload are unpacked."""
        return replace(self, spent=spent)

    def refusal(self, what: str = "the upload") -> ApiError:
        """The 413 for going past `limit`: it names the quota when that is what is short."""
        if self.quota is not None and self.quota - self.used < self.cap:
            return over_quota(self.quota, self.used, what, self.field)
        return too_large(self.cap, what, self.cap_said, self.field)


@dataclass(frozen=True)
class Form:
    """The parts a multipart body may have: the datasets upload's by default."""

    file_field: str = FILE_FIELD
    text_fields: frozenset[str] = TEXT_FIELDS
    max_files: int = MAX_FILE_PARTS
    what: str = "dataset"


@dataclass
class ReceivedFile:
    original: str
    """The client's file name: metadata only, never used as a path."""
    path: Path
    size: int = 0
    sha256: str = ""


@dataclass
class Received:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)


def safe_client_name(filename: str) -> str:
    """The client's file name if it is a plain name; 422 for anything with a path in it."""
    if not filename or "/" in filename or "\\" in filename or "\x00" in filename or filename in (".", ".."):
        raise ApiError(
            422, "unsafe_file_name", f"the file name {filename[:100]!r} must be a plain name, without folders", "file"
        )
    if len(filename) > 255:
        raise ApiError(422, "unsafe_file_name", "the file name is longer than 255 characters", "file")
    return filename


def boundary_of(content_type: str | None) -> str:
    kind, options = parse_options_header(content_type or "")
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the upload as multipart/form-data with a `file` part and the dataset's fields",
        )
    return options["boundary"]


class FileTap(Protocol):
    """Sees a file's bytes as they are written (the row check of a large upload starts before its end)."""

    def data(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...


OnFile = Callable[[ReceivedFile, dict[str, str], Callable[[], None]], FileTap | None]
"""Called as a file part starts, with the text fields received so far and a function that flushes what the
receiver buffered of the file to disk; returns a tap for its bytes, or None."""

WriterFor = Callable[[ReceivedFile], ObjectWriter | None]
"""Called as a file part starts: the object its bytes stream into as they arrive, or None. The caller commits
or aborts it once `receive` returned; a part `receive` gives up (an error, a client gone) is aborted here."""


class _FileSink:
    """One file part going to disk: each chunk is hashed and written (and shown to the tap) in a thread, while
    the event loop receives the next one. Both hashing and writing let go of the GIL, so they really overlap
    with the network; one chunk at most is in flight, so memory stays flat and the order is kept. With a writer,
    each chunk also goes to the object store meanwhile, and the writer's hash is the file's (it is not hashed
    twice)."""

    def __init__(self, handle: BinaryIO, writer: ObjectWriter | None = None) -> None:
        self.handle = handle
        self.hasher = hashlib.sha256()
        self.tap: FileTap | None = None
        self.writer = writer
        self.hashed_here = writer is None
        self.pending: asyncio.Future[None] | None = None

    async def write(self, chunk: bytes) -> None:
        if self.pending is not None:
            await self.pending
        self.pending = asyncio.get_running_loop().run_in_executor(None, self._write, chunk)
        if self.writer is not None:
            try:
                await self.writer.write(chunk)
            except Exception as exc:  # noqa: BLE001 - the store is a shortcut: the upload itself goes on
                await self._drop_writer(exc)

    async def _drop_writer(self, exc: Exception) -> None:
        """The store failed: the file goes on to disk alone (a job's first use copies it into the store)."""
        log.warning("an upload goes on without streaming into the object store: %s", exc)
        writer, self.writer = self.writer, None
        if writer is not None:
            await writer.abort()

    def _write(self, chunk: bytes) -> None:
        if self.hashed_here:
            self.hasher.update(chunk)
        self.handle.write(chunk)
        if self.tap is not None:
            self.tap.data(chunk)

    async def finish(self) -> str:
        """Wait for the last chunk, tell the tap, close the file; returns the file's sha256."""
        await self.settle()
        if self.tap is not None:
            self.tap.end()  # may flush the file: before it is closed
        self.handle.close()
        if self.hashed_here:
            return self.hasher.hexdigest()
        if self.writer is not None:
            try:
                return await self.writer.finish()
            except Exception as exc:  # noqa: BLE001 - as in write
                await self._drop_writer(exc)
        return await asyncio.to_thread(file_sha256, Path(self.handle.name))

    async def settle(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending

    async def abandon(self) -> None:
        try:
            await self.settle()
        finally:
            self.handle.close()
            if self.writer is not None:
                await self.writer.abort()


class _Receiver:
    """State of one multipart body being received."""

    def __init__(
        self,
        folder: Path,
        budget: Budget,
        on_field: Callable[[str, str], Awaitable[None]],
        on_file: OnFile | None = None,
        writer_for: WriterFor | None = None,
        form: Form | None = None,
    ):
        self.form = form or Form()
        self.folder = folder
        self.budget = budget
        self.on_field = on_field
        self.on_file = on_file
        self.writer_for = writer_for
        self.received = Received()
        self.total = 0
        self.segment: MultipartSegment | None = None
        self.text: bytearray | None = None
        self.text_field = ""  # the name of the field `text` is received for
        self.sink: _FileSink | None = None

    def start(self, segment: MultipartSegment) -> None:
        self.segment = segment
        form = self.form
        if segment.filename is not None or segment.name == form.file_field:
            if segment.name != form.file_field:
                raise ApiError(422, "invalid_field", f"file parts must be named `{form.file_field}`", segment.name)
            if len(self.received.files) >= form.max_files:
                raise ApiError(422, "invalid_field", f"at most {form.max_files} files per upload", form.file_field)
            original = safe_client_name(segment.filename or "")
            path = self.folder / f"received-{len(self.received.files):05d}"
            self.received.files.append(ReceivedFile(original=original, path=path))
            writer = self.writer_for(self.received.files[-1]) if self.writer_for is not None else None
            self.sink = _FileSink(open(path, "wb", buffering=WRITE_BUFFER), writer)
            if self.on_file is not None:
                self.sink.tap = self.on_file(
                    self.received.files[-1], dict(self.received.fields), self.sink.handle.flush
                )
        elif segment.name in form.text_fields:
            if segment.name in self.received.fields:
                raise ApiError(422, "invalid_field", f"`{segment.name}` is given twice", segment.name)
            self.text = bytearray()
            self.text_field = segment.name
        else:
            raise ApiError(
                422,
                "invalid_field",
                f"unknown field `{segment.name}`; the fields are `{form.file_field}`"
                + "".join(f", `{n}`" for n in sorted(form.text_fields)),
                segment.name or None,
            )

    async def data(self, chunk: bytes) -> None:
        if self.sink is not None:
            self.total += len(chunk)
            if self.total > self.budget.limit:
                raise self.budget.refusal()
            await self.sink.write(chunk)
        elif self.text is not None:
            self.text += chunk
            if len(self.text) > MAX_TEXT_FIELD:
                raise ApiError(
                    422, "invalid_field", f"`{self.text_field}` is longer than {MAX_TEXT_FIELD} bytes", self.text_field
                )

    async def end(self) -> None:
        if self.sink is not None:
            sink, self.sink = self.sink, None
            assert self.segment is not None  # a file is open only within its segment
            done = self.received.files[-1]
            done.size, done.sha256 = self.segment.size, await sink.finish()
        elif self.text is not None:
            name = self.text_field
            try:
                value = self.text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ApiError(422, "invalid_field", f"`{name}` is not UTF-8 text", name) from exc
            self.received.fields[name] = value
            self.text = None
            await self.on_field(name, value)  # refuse a bad name before gigabytes follow it
        self.segment = None

    async def close(self) -> None:
        if self.sink is not None:
            sink, self.sink = self.sink, None
            await sink.abandon()


async def receive(
    stream: AsyncIterator[bytes],
    content_type: str | None,
    folder: Path,
    budget: Budget,
    on_field: Callable[[str, str], Awaitable[None]],
    on_file: OnFile | None = None,
    writer_for: WriterFor | None = None,
    form: Form | None = None,
) -> Received:
    """Parse a multipart body into text fields and files written under `folder`, no more than `budget` allows."""
    form = form or Form()
    receiver = _Receiver(folder, budget, on_field, on_file, writer_for, form)
    parser = PushMultipartParser(boundary_of(content_type), max_segment_count=MAX_PARTS, strict=False)
    try:
        async for chunk in stream:
            for event in parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    receiver.start(event)
                elif event:
                    await receiver.data(event)
                else:
                    await receiver.end()
            if parser.closed:
                break
        if not parser.closed:
            raise ApiError(400, "bad_request", "the multipart body ended early (the upload was cut off)")
    except MultipartError as exc:
        raise ApiError(400, "bad_request", f"the multipart body is malformed: {exc}") from exc
    finally:
        await receiver.close()
    if not receiver.received.files:
        raise ApiError(422, "invalid_field", f"attach the {form.what} as a `{form.file_field}` part", form.file_field)
    return receiver.received
