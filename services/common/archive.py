"""A folder (a job's outputs, a dataset of several files) as a zip whose every byte is known before it is read, so
that a broken download resumes.

The layout is fixed by the files' names and sizes alone: every file stored (no compression), zip64 records
throughout, one timestamp (1980-01-01 00:00), each file's CRC-32 in a data descriptor after its bytes and in the
central directory. So the archive's length and where each file's bytes lie are known from a listing, and a range is
served by seeking: headers are built, file bytes read where they lie. Only CRCs need reading a whole file; they are
computed while a file streams and kept (CrcCache), so a resumed download of the tail reads from disk again at most
the files it did not stream before (and only when another process served the first part).

The ETag covers every file's name, identity, size and modification time: a resumed download of a folder that changed
since starts over (If-Range). Files are opened as folders.open_own_file does (no link followed); one that is gone,
swapped or shorter than listed ends the answer early, which the client sees as a broken download.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from . import folders

log = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024
_DOS_DATE, _DOS_TIME = (0 << 9) | (1 << 5) | 1, 0  # 1980-01-01 00:00: no clock in the bytes
_VERSION = 45  # zip64
_FLAGS = 0x0808  # bit 3: sizes and CRC in a descriptor after the data; bit 11: names in UTF-8
_MADE_BY = (3 << 8) | _VERSION  # Unix
_FILE_MODE = 0o100644 << 16
_FULL32, _FULL16 = 0xFFFFFFFF, 0xFFFF
LOCAL_FIXED, DESCRIPTOR, CENTRAL_FIXED, END = 30 + 20, 24, 46 + 28, 56 + 20 + 22


class ArchiveChanged(RuntimeError):
    """A file listed for the archive is gone, swapped or shorter: the answer cannot be finished."""


@dataclass(frozen=True)
class Member:
    """One file of the archive and where its records lie."""

    parts: tuple[str, ...]
    name: bytes
    stat: os.stat_result
    offset: int  # of its local header

    @property
    def size(self) -> int:
        return self.stat.st_size

    @property
    def data_at(self) -> int:
        return self.offset + LOCAL_FIXED + len(self.name)

    @property
    def descriptor_at(self) -> int:
        return self.data_at + self.size

    @property
    def end(self) -> int:
        return self.descriptor_at + DESCRIPTOR

    def key(self, folder: Path) -> tuple:
        st = self.stat
        return (str(folder), self.parts, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Layout:
    """Where everything of the archive lies; `size` is its length in bytes."""

    folder: Path
    members: tuple[Member, ...]
    central_at: int
    central_size: int
    size: int
    etag: str


def plan(folder: Path, arcname: str, files: list[tuple[str, ...]]) -> Layout:
    """The layout of the zip of `files` (folders.own_files) of `folder` under `arcname/`; files gone since the
    listing are left out. Blocking (it stats each file): call it in a thread."""
    members: list[Member] = []
    at = 0
    for parts in files:
        st = folders.stat_own_file(folder, parts)
        if st is None:
            continue
        member = Member(parts, "/".join((arcname, *parts)).encode(), st, at)
        members.append(member)
        at = member.end
    central_size = sum(CENTRAL_FIXED + len(m.name) for m in members)
    seed = hashlib.sha256()
    for m in members:
        seed.update(repr((m.name, m.stat.st_dev, m.stat.st_ino, m.size, m.stat.st_mtime_ns)).encode())
    etag = '"zip-' + seed.hexdigest()[:32] + '"'
    return Layout(folder, tuple(members), at, central_size, at + central_size + END, etag)


class CrcCache:
    """CRC-32s of files as they were (name, identity, size, time), the most recent `limit` kept."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._crcs: OrderedDict[tuple, int] = OrderedDict()

    def get(self, key: tuple) -> int | None:
        crc = self._crcs.get(key)
        if crc is not None:
            self._crcs.move_to_end(key)
        return crc

    def put(self, key: tuple, crc: int) -> None:
        self._crcs[key] = crc
        self._crcs.move_to_end(key)
        while len(self._crcs) > self.limit:
            self._crcs.popitem(last=False)


CRCS = CrcCache()


def local_header(m: Member) -> bytes:
    fixed = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, _VERSION, _FLAGS, 0, _DOS_TIME, _DOS_DATE, 0, _FULL32, _FULL32, len(m.name), 20
    )
    return fixed + m.name + struct.pack("<HHQQ", 1, 16, m.size, m.size)


def descriptor(m: Member, crc: int) -> bytes:
    return struct.pack("<IIQQ", 0x08074B50, crc, m.size, m.size)


def central_header(m: Member, crc: int) -> bytes:
    fixed = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        _MADE_BY,
        _VERSION,
        _FLAGS,
        0,
        _DOS_TIME,
        _DOS_DATE,
        crc,
        _FULL32,
        _FULL32,
        len(m.name),
        28,
        0,
        0,
        0,
        _FILE_MODE,
        _FULL32,
    )
    return fixed + m.name + struct.pack("<HHQQQ", 1, 24, m.size, m.size, m.offset)


def end_records(layout: Layout) -> bytes:
    count, at, size = len(layout.members), layout.central_at, layout.central_size
    zip64_end = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, _MADE_BY, _VERSION, 0, 0, count, count, size, at)
    locator = struct.pack("<IIQI", 0x07064B50, 0, at + size, 1)
    return zip64_end + locator + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, _FULL16, _FULL16, _FULL32, _FULL32, 0)


def _clip(data: bytes, at: int, start: int, stop: int) -> bytes:
    """The part of `data` (lying at `at`) inside [start, stop)."""
    return data[max(start - at, 0) : max(min(stop - at, len(data)), 0)]


class _Reader:
    """Reads one range of an archive, keeping the CRCs of the files it streams whole."""

    def __init__(self, layout: Layout, crcs: CrcCache) -> None:
        self.layout = layout
        self.crcs = crcs

    async def read(self, start: int, length: int) -> AsyncIterator[bytes]:
        stop = start + length
        for m in self.layout.members:
            if m.end <= start or m.offset >= stop:
                continue
            if piece := _clip(local_header(m), m.offset, start, stop):
                yield piece
            if m.data_at < stop and m.descriptor_at > start:
                async for piece in self._data(m, max(start - m.data_at, 0), min(stop, m.descriptor_at) - m.data_at):
                    yield piece
            if m.descriptor_at < stop and m.end > start:
                yield _clip(descriptor(m, await self._crc(m)), m.descriptor_at, start, stop)
        if self.layout.central_at < stop:
            for piece in await self._central(start, stop):
                yield piece

    async def _data(self, m: Member, first: int, last: int) -> AsyncIterator[bytes]:
        """Bytes [first, last) of a member's file; its CRC is kept when they are all of it."""
        fd = await asyncio.to_thread(folders.open_own_file, self.layout.folder, m.parts)
        if fd is None:
            raise ArchiveChanged(f"{'/'.join(m.parts)} is no longer a file of the folder")
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (m.stat.st_dev, m.stat.st_ino):
                raise ArchiveChanged(f"{'/'.join(m.parts)} was replaced")
            crc, at = 0, first
            while at < last:
                data, crc = await asyncio.to_thread(_read_crc, fd, at, min(READ_BYTES, last - at), crc)
                if not data:
                    raise ArchiveChanged(f"{'/'.join(m.parts)} is shorter than when listed")
                at += len(data)
                yield data
            if first == 0 and last == m.size:
                self.crcs.put(m.key(self.layout.folder), crc)
        finally:
            os.close(fd)

    async def _crc(self, m: Member) -> int:
        crc = self.crcs.get(m.key(self.layout.folder))
        if crc is None:
            async for _ in self._data(m, 0, m.size):
                pass
            crc = self.crcs.get(m.key(self.layout.folder))
        if crc is None:  # pragma: no cover - _data keeps it or raises
            raise ArchiveChanged(f"no CRC for {'/'.join(m.parts)}")
        return crc

    async def _central(self, start: int, stop: int) -> list[bytes]:
        pieces, at = [], self.layout.central_at
        for m in self.layout.members:
            width = CENTRAL_FIXED + len(m.name)
            if at + width > start and at < stop:
                pieces.append(_clip(central_header(m, await self._crc(m)), at, start, stop))
            at += width
        pieces.append(_clip(end_records(self.layout), at, start, stop))
        return [p for p in pieces if p]


def _read_crc(fd: int, at: int, count: int, crc: int) -> tuple[bytes, int]:
    data = os.pread(fd, count, at)
    return data, zlib.crc32(data, crc)


def reader(layout: Layout, crcs: CrcCache = CRCS):
    """The (start, length) -> bytes reader of an archive, for services.common.ranges.ranged."""

    async def read(start: int, length: int) -> AsyncIterator[bytes]:
        try:
            async for piece in _Reader(layout, crcs).read(start, length):
                yield piece
        except ArchiveChanged as exc:
            log.warning("zip of %s: %s; the download ends early", layout.folder, exc)
            raise

    return read
