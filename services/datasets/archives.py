"""Unpack an uploaded archive (zip, tar, tar.gz) into platform-named files, refusing unsafe entries.

An entry's name is only ever metadata: every file is written as `part-NNNNN.<ext>` in the upload's own
folder. Entries that would escape a folder if unpacked naively (absolute paths, `..`, drive letters),
links, devices, FIFOs and sparse files are refused outright, so a crafted archive is reported, never half-used.

Archive bombs are stopped before they cost memory or disk: every member counts against the member limit, folders
included (a tar header is read and counted, never kept beyond the limit); names, folder depth and tar extended
headers are bounded before tarfile reads them; a zip's central directory is sized from its end record before it
is parsed. Data is copied in chunks, never a whole member in memory, and the bytes it expands to are counted
against the archive's own size times a ratio and against the upload's byte budget (the dataset cap or the
owner's quota). Text lines are measured while they are copied, so one endless line is refused at the line cap.
"""

from __future__ import annotations

import hashlib
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from tarfile import GNUTYPE_LONGLINK, GNUTYPE_LONGNAME, GNUTYPE_SPARSE, SOLARIS_XHDTYPE, XGLTYPE, XHDTYPE
from typing import IO

from services.common.errors import ApiError

from .readers import MAX_LINE_BYTES, file_type
from .uploads import Budget

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_ENTRIES = 1000
"""Data files one archive may hold (each becomes a part file)."""
MAX_NAME_CHARS = 1024
MAX_DEPTH = 32
MAX_HEADER_BYTES = 8 * 1024
"""A tar extended header (pax, GNU long name): it carries a name and a few attributes, nothing more."""
MAX_CHAINED_HEADERS = 4
CENTRAL_BYTES_PER_MEMBER = 512
"""What a zip's central directory may hold per member allowed (a record is 46 bytes and a name)."""
RATIO_FLOOR = 16 << 20
"""Any archive may unpack to this much, whatever its ratio: small archives of repetitive rows are common."""
COPY_CHUNK = 1 << 20
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
LINE_TYPES = ("jsonl", "csv")
_SKIPPED = ("__MACOSX/",)
_EXTENDED = (XHDTYPE, XGLTYPE, SOLARIS_XHDTYPE, GNUTYPE_LONGNAME, GNUTYPE_LONGLINK)


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass(frozen=True)
class Limits:
    """What one archive may hold and expand to."""

    max_members: int
    """Every member, folders included (LLMCT_ARCHIVE_MAX_MEMBERS)."""
    max_ratio: int
    """Unpacked bytes per byte of archive (LLMCT_ARCHIVE_MAX_RATIO)."""
    budget: Budget
    """Bytes the unpacked files may take: the dataset cap, or less when the owner's quota has less room."""


@dataclass
class Unpacked:
    original: str
    path: Path
    size: int
    sha256: str


def unsafe(entry: str, why: str) -> ApiError:
    return ApiError(422, "unsafe_archive_entry", f"archive entry {entry[:200]!r} {why}; nothing was saved", "file")


def too_many_members(name: str, limits: Limits) -> ApiError:
    return ApiError(
        422,
        "unsafe_archive",
        f"{name[:200]} lists more than {limits.max_members:,} entries, folders included "
        "(LLMCT_ARCHIVE_MAX_MEMBERS); nothing was saved",
        "file",
    )


def check_entry_name(name: str) -> None:
    """Refuse a name that would land outside the folder it is unpacked in, or one too long or deep to be data."""
    if not name or "\x00" in name:
        raise unsafe(name, "has no usable name")
    if len(name) > MAX_NAME_CHARS:
        raise unsafe(name, f"has a name longer than {MAX_NAME_CHARS} characters")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise unsafe(name, "is an absolute path")
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise unsafe(name, "climbs out of the archive with `..`")
    if len(parts) > MAX_DEPTH:
        raise unsafe(name, f"is nested deeper than {MAX_DEPTH} folders")


class _Header(tarfile.TarInfo):
    """A tar header that refuses, before tarfile reads on, what would cost memory: a large or endless chain of
    extended headers, and sparse files (whose maps tarfile keeps in memory)."""

    def _proc_member(self, tarfile):  # tarfile's documented hook for subclasses; `tarfile` is the _Tar read
        chain = tarfile.chained_headers
        if self.type in _EXTENDED:
            if self.size > MAX_HEADER_BYTES:
                raise unsafe(self.name, f"has an extended header of {self.size:,} bytes (at most {MAX_HEADER_BYTES})")
            if chain >= MAX_CHAINED_HEADERS:
                raise unsafe(self.name, f"has more than {MAX_CHAINED_HEADERS} extended headers in a row")
            tarfile.chained_headers = chain + 1
        else:
            tarfile.chained_headers = 0
        if self.type == GNUTYPE_SPARSE:
            raise unsafe(self.name, "is a sparse file")
        # The hook tarfile documents for subclasses; typeshed does not list it.
        return super()._proc_member(tarfile)  # pyright: ignore[reportAttributeAccessIssue]


class _Tar(tarfile.TarFile):
    tarinfo = _Header
    chained_headers = 0
    """Extended headers read in a row, for the member they describe (tarfile reads such a chain recursively)."""


@dataclass
class _Reading:
    """One archive being read: its name, limits, and what it has cost so far."""

    name: str
    limits: Limits
    allowed: int
    """Bytes its data may expand to: the ratio's bound or the budget, whichever is smaller."""
    members: int = 0
    expanded: int = 0

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise too_many_members(self.name, self.limits)

    def fits(self, size: int) -> None:
        """Refuse the archive when `size` more unpacked bytes would pass what it may expand to."""
        if self.expanded + size <= self.allowed:
            return
        budget = self.limits.budget
        if self.allowed >= budget.limit:
            raise budget.refusal("the archive's unpacked content")
        raise ApiError(
            422,
            "unsafe_archive",
            f"{self.name[:200]} unpacks to more than {self.limits.max_ratio} times its own size "
            "(LLMCT_ARCHIVE_MAX_RATIO): refused as an archive bomb; nothing was saved",
            "file",
        )

    def expand(self, size: int) -> None:
        self.fits(size)
        self.expanded += size


def _zip_members(archive: zipfile.ZipFile, reading: _Reading) -> Iterator[tuple[str, IO[bytes], int]]:
    infos = archive.infolist()
    if len(infos) > reading.limits.max_members:
        raise too_many_members(reading.name, reading.limits)
    for info in infos:
        check_entry_name(info.filename)
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise unsafe(info.filename, "is a symbolic link")
        if not info.is_dir() and info.compress_type not in ZIP_METHODS:
            raise unsafe(info.filename, "is compressed with a method other than deflate (or stored)")
    # Refused before anything is unpacked when the sizes it declares are already too much.
    reading.fits(sum(info.file_size for info in infos if not info.is_dir()))
    for info in infos:
        if not info.is_dir():
            yield info.filename, archive.open(info), 0


def _tar_members(archive: tarfile.TarFile, reading: _Reading) -> Iterator[tuple[str, IO[bytes], int]]:
    while (member := archive.next()) is not None:
        # Read in order, never looked up: no header is kept once used (typeshed does not list `members`).
        archive.members.clear()  # pyright: ignore[reportAttributeAccessIssue]
        reading.count_member()
        check_entry_name(member.name)
        if member.issym() or member.islnk():
            raise unsafe(member.name, "is a link")
        if member.isdir():
            continue
        if not member.isfile():
            raise unsafe(member.name, "is a device, FIFO or other special file")
        reading.fits(member.size)  # as its header says: refused before it is read
        source = archive.extractfile(member)
        assert source is not None  # extractfile gives None only for what isfile() refused above
        yield member.name, source, member.size  # skipping it still means decompressing it


def _zip_directory(path: Path) -> tuple[int, int] | None:
    """(entries, bytes) of a zip's central directory as its end record gives them; None when it has none."""
    with open(path, "rb") as handle:
        # The stdlib's own reader of the end record (zip64 included), which ZipFile calls first; not in typeshed.
        end = zipfile._EndRecData(handle)  # pyright: ignore[reportAttributeAccessIssue]
    return None if end is None else (end[4], end[5])  # zipfile's _ECD_ENTRIES_TOTAL, _ECD_SIZE


def _zip_directory_fits(path: Path, name: str, limits: Limits) -> None:
    """Size the central directory from the end record before zipfile parses (and keeps) every record of it."""
    directory = _zip_directory(path)
    if directory is None:
        return  # not a zip: ZipFile says so
    entries, size = directory
    if entries > limits.max_members:
        raise too_many_members(name, limits)
    if size > limits.max_members * CENTRAL_BYTES_PER_MEMBER:
        raise ApiError(
            422,
            "unsafe_archive",
            f"{name[:200]} has a central directory of {size:,} bytes, more than its "
            f"{limits.max_members:,} entries may need; nothing was saved",
            "file",
        )


def _open(path: Path, reading: _Reading):
    name = reading.name
    try:
        if name.lower().endswith(".zip"):
            _zip_directory_fits(path, name, reading.limits)
            archive = zipfile.ZipFile(path)
            return archive, _zip_members(archive, reading)
        archive = _Tar.open(path, mode="r:*")
        return archive, _tar_members(archive, reading)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise ApiError(422, "invalid_dataset", f"{name} is not a readable archive: {exc}", "file") from exc


def _data_entry(entry: str) -> bool:
    """A data file to unpack; False for what archivers add on their own (macOS metadata)."""
    if entry.startswith(_SKIPPED) or PurePosixPath(entry).name == ".DS_Store":
        return False
    if file_type(entry) is None:
        raise ApiError(
            422,
            "unsupported_file_type",
            f"archive entry {entry[:200]!r} is not a dataset file (.json, .jsonl, .csv or .parquet)",
            "file",
        )
    return True


def unpack(path: Path, name: str, folder: Path, start: int, limits: Limits) -> list[Unpacked]:
    """Write the data files of archive `path` as part-NNNNN files in `folder` (blocking)."""
    allowed = min(limits.budget.limit, max(limits.max_ratio * path.stat().st_size, RATIO_FLOOR))
    reading = _Reading(name=name, limits=limits, allowed=allowed)
    archive, members = _open(path, reading)
    unpacked: list[Unpacked] = []
    with closing(archive):
        try:
            for entry, source, skip_cost in members:
                if not _data_entry(entry):
                    source.close()
                    reading.expand(skip_cost)
                    continue
                if len(unpacked) >= MAX_ENTRIES:
                    raise ApiError(422, "invalid_dataset", f"the archive has more than {MAX_ENTRIES} files", "file")
                target = folder / f"part-{start + len(unpacked):05d}{Path(entry).suffix.lower()}"
                size, digest = _copy(source, target, entry, reading)
                unpacked.append(Unpacked(original=entry, path=target, size=size, sha256=digest))
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise ApiError(422, "invalid_dataset", f"{name} is damaged: {exc}", "file") from exc
    if not unpacked:
        raise ApiError(422, "empty_dataset", f"{name} holds no dataset files", "file")
    return unpacked


class _Lines:
    """The length of the line being copied, so a text file's endless line is refused while it streams."""

    def __init__(self, entry: str) -> None:
        self.entry, self.number, self.open = entry, 1, 0

    def feed(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        ended = self.open + (len(chunk) if first < 0 else first)
        if ended > MAX_LINE_BYTES:
            raise ApiError(
                422,
                "invalid_dataset",
                f"archive entry {self.entry[:200]!r}: line {self.number} is longer than "
                f"{MAX_LINE_BYTES >> 20} MiB, the longest row a dataset may hold; nothing was saved",
                "file",
            )
        if first < 0:
            self.open = ended
            return
        self.number += chunk.count(b"\n")
        self.open = len(chunk) - chunk.rfind(b"\n") - 1


def _copy(source: IO[bytes], target: Path, entry: str, reading: _Reading) -> tuple[int, str]:
    hasher, size = hashlib.sha256(), 0
    lines = _Lines(entry) if file_type(entry) in LINE_TYPES else None
    with closing(source), open(target, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            size += len(chunk)
            reading.expand(len(chunk))
            if lines is not None:
                lines.feed(chunk)
            hasher.update(chunk)
            out.write(chunk)
    return size, hasher.hexdigest()
