"""Downloads that resume: byte ranges (RFC 9110 §14) over files and stored objects, streamed.

One range per request: `bytes=a-b`, `bytes=a-` and `bytes=-n` get 206 with Content-Range; a range that starts past
the end gets 416 with `Content-Range: bytes */<size>`. A request naming several ranges, another unit or a range that
cannot be read gets the whole file (200), as RFC 9110 allows a server to ignore Range. Every answer carries
`Accept-Ranges: bytes` and a strong ETag; `If-Range` with any other validator (a stale ETag, a weak one, a date) gets
the whole file, so a download resumed after the file changed starts over instead of splicing two versions.

Litestar 2.25's File response answers no ranges, and the parsers at hand either pull in a framework (werkzeug) or
treat several ranges like an unsatisfiable one; the grammar for one range is short.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from litestar.response import Stream
from nats.js import JetStreamContext

from . import objects
from .errors import ApiError

READ_BYTES = 1024 * 1024
RESUMABLE = """Streamed; resumable with one byte range: `Range: bytes=<first>-[<last>]` or `bytes=-<suffix>` gets 206
with Content-Range, a range starting past the end gets 416 (`Content-Range: bytes */<size>`), several ranges get the
whole file (200). Send the ETag you got back as `If-Range`: if the file changed since, the whole new file comes (200)
instead of a range of it."""
_ONE_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d{0,18})\s*-\s*(\d{0,18})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    """Bytes `start` to `end` of a file, both included (as Content-Range counts them)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class Unsatisfiable(Exception):
    """A range that starts at or past the end of the file: 416."""


def requested_span(header: str | None, size: int) -> Span | None:
    """The one range a `Range` header asks of a file of `size` bytes; None for the whole file (no header, several
    ranges, another unit, bad syntax, an empty file). Unsatisfiable when it starts past the end."""
    if not header or size == 0:
        return None
    found = _ONE_RANGE.match(header)
    if found is None:
        return None
    first, last = found.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None  # invalid: ignored
        if start >= size:
            raise Unsatisfiable
        return Span(start, end)
    if not last:
        return None  # "bytes=-": no range at all
    suffix = int(last)
    if suffix == 0:
        raise Unsatisfiable
    return Span(max(size - suffix, 0), size - 1)


def file_etag(st: os.stat_result) -> str:
    """A strong validator of a file as it is: a new one when it is replaced, grows or is rewritten."""
    seed = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return '"' + hashlib.sha256(seed).hexdigest()[:32] + '"'


def content_etag(sha256_hex: str) -> str:
    """The validator of an object named by its content."""
    return f'"sha256-{sha256_hex}"'


def resume_span(headers: Mapping[str, str], size: int, etag: str) -> Span | None:
    """The span to send for these request headers: None for the whole file. A stale If-Range means the whole file;
    ApiError 416 when the range starts past the end."""
    condition = headers.get("if-range")
    if condition is not None and condition.strip() != etag:
        return None
    try:
        return requested_span(headers.get("range"), size)
    except Unsatisfiable:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"the range starts past the end: the file has {size} bytes",
            "Range",
            headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
        ) from None


Reader = Callable[[int, int], AsyncIterator[bytes]]  # (start, length) -> the bytes, in chunks


def ranged(
    headers: Mapping[str, str],
    size: int,
    etag: str,
    read: Reader,
    media_type: str = "application/octet-stream",
    extra: Mapping[str, str] | None = None,
) -> Stream:
    """A streamed answer of the whole file (200) or of the range asked (206), with the headers a resuming client
    needs."""
    span = resume_span(headers, size, etag)
    out = {**(extra or {}), "accept-ranges": "bytes", "etag": etag}
    if span is None:
        out["content-length"] = str(size)
        return Stream(read(0, size), media_type=media_type, headers=out)
    out["content-length"] = str(span.length)
    out["content-range"] = f"bytes {span.start}-{span.end}/{size}"
    return Stream(read(span.start, span.length), status_code=206, media_type=media_type, headers=out)


async def ranged_object(
    headers: Mapping[str, str],
    js: JetStreamContext,
    bucket: str,
    name: str,
    media_type: str = "application/octet-stream",
    extra: Mapping[str, str] | None = None,
) -> Stream:
    """`ranged` for an object of the store (`objects` mode): its sha256 is its ETag, and only the chunks that hold
    the range asked are read (objects.read_range). objects.ObjectMissing when there is none."""
    stored = await objects.describe(js, bucket, name)

    async def read(start: int, length: int) -> AsyncIterator[bytes]:
        if length > 0:
            async for piece in objects.read_range(js, bucket, name, start, start + length - 1, stored.sha256):
                yield piece

    return ranged(headers, stored.size, content_etag(stored.sha256), read, media_type, extra)


def attachment(filename: str) -> dict[str, str]:
    """The Content-Disposition of a download saved as `filename`: plain when it is safe ASCII, else RFC 5987's
    UTF-8 form (a header carries latin-1 only, and a job may name its files anything)."""
    quoted = quote(filename, safe="")
    if quoted == filename:
        return {"content-disposition": f'attachment; filename="{filename}"'}
    return {"content-disposition": f"attachment; filename*=utf-8''{quoted}"}


def fd_reader(opener: Callable[[], int | None], expected: os.stat_result) -> Reader:
    """Bytes of the file `opener` opens (a descriptor, or None when it is gone), read in a thread; the answer ends
    short (the client sees a broken download it can resume) when the file is no longer the one announced."""

    async def read(start: int, length: int) -> AsyncIterator[bytes]:
        fd = await asyncio.to_thread(opener)
        if fd is None:
            return
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (expected.st_dev, expected.st_ino):
                return
            left, at = length, start
            while left > 0:
                data = await asyncio.to_thread(os.pread, fd, min(READ_BYTES, left), at)
                if not data:
                    return
                left -= len(data)
                at += len(data)
                yield data
        finally:
            os.close(fd)

    return read


def path_opener(path: os.PathLike[str] | str) -> Callable[[], int | None]:
    """Opens `path` for reading without following a link at its last component; None when it is not there."""

    def open_() -> int | None:
        try:
            return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None

    return open_


def stat_opened(opener: Callable[[], int | None]) -> os.stat_result | None:
    """What `opener` opens, as fstat sees it (so the ETag is the opened file's); None when it opens nothing."""
    fd = opener()
    if fd is None:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)
