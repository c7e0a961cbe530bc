"""Unpack an uploaded archive (zip, tar, tar.gz) into platform-named files, refusing unsafe entries.

An entry's name is only ever metadata: every file is written as `part-NNNNN.<ext>` in the upload's own
folder. Entries that would escape a folder if unpacked naively (absolute paths, `..`, drive letters),
links, devices and FIFOs are refused outright, so a crafted archive is reported, never half-used.
The unpacked size counts against the dataset cap, which defuses archive bombs.
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
from typing import IO

from services.common.errors import ApiError

from .readers import file_type
from .uploads import too_large

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_ENTRIES = 1000
COPY_CHUNK = 1 << 20
_SKIPPED = ("__MACOSX/",)


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass
class Unpacked:
    original: str
    path: Path
    size: int
    sha256: str


def unsafe(entry: str, why: str) -> ApiError:
    return ApiError(422, "unsafe_archive_entry", f"archive entry {entry[:200]!r} {why}; nothing was saved", "file")


def check_entry_name(name: str) -> None:
    """Refuse a name that would land outside the folder it is unpacked in."""
    if not name or "\x00" in name:
        raise unsafe(name, "has no usable name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise unsafe(name, "is an absolute path")
    if ".." in PurePosixPath(posix).parts:
        raise unsafe(name, "climbs out of the archive with `..`")


def _zip_members(archive: zipfile.ZipFile) -> Iterator[tuple[str, IO[bytes]]]:
    for info in archive.infolist():
        check_entry_name(info.filename)
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise unsafe(info.filename, "is a symbolic link")
        if info.is_dir():
            continue
        yield info.filename, archive.open(info)


def _tar_members(archive: tarfile.TarFile) -> Iterator[tuple[str, IO[bytes]]]:
    for member in archive:
        check_entry_name(member.name)
        if member.issym() or member.islnk():
            raise unsafe(member.name, "is a link")
        if member.isdir():
            continue
        if not member.isfile():
            raise unsafe(member.name, "is a device, FIFO or other special file")
        source = archive.extractfile(member)
        assert source is not None  # extractfile gives None only for what isfile() refused above
        yield member.name, source


def _open(path: Path, name: str):
    try:
        if name.lower().endswith(".zip"):
            archive = zipfile.ZipFile(path)
            return archive, _zip_members(archive)
        archive = tarfile.open(path, mode="r:*")
        return archive, _tar_members(archive)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise ApiError(422, "invalid_dataset", f"{name} is not a readable archive: {exc}", "file") from exc


def unpack(path: Path, name: str, folder: Path, start: int, max_bytes: int) -> list[Unpacked]:
    """Write the data files of archive `path` as part-NNNNN files in `folder` (blocking)."""
    archive, members = _open(path, name)
    unpacked: list[Unpacked] = []
    total = 0
    with closing(archive):
        try:
            for entry, source in members:
                if entry.startswith(_SKIPPED) or PurePosixPath(entry).name == ".DS_Store":
                    continue
                if file_type(entry) is None:
                    raise ApiError(
                        422,
                        "unsupported_file_type",
                        f"archive entry {entry[:200]!r} is not a dataset file (.json, .jsonl, .csv or .parquet)",
                        "file",
                    )
                if len(unpacked) >= MAX_ENTRIES:
                    raise ApiError(422, "invalid_dataset", f"the archive has more than {MAX_ENTRIES} files", "file")
                target = folder / f"part-{start + len(unpacked):05d}{Path(entry).suffix.lower()}"
                size, digest = _copy(source, target, max_bytes - total, max_bytes)
                total += size
                unpacked.append(Unpacked(original=entry, path=target, size=size, sha256=digest))
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise ApiError(422, "invalid_dataset", f"{name} is damaged: {exc}", "file") from exc
    if not unpacked:
        raise ApiError(422, "empty_dataset", f"{name} holds no dataset files", "file")
    return unpacked


def _copy(source: IO[bytes], target: Path, allowed: int, max_bytes: int) -> tuple[int, str]:
    hasher, size = hashlib.sha256(), 0
    with closing(source), open(target, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            size += len(chunk)
            if size > allowed:
                raise too_large(max_bytes, "the archive's unpacked content")
            hasher.update(chunk)
            out.write(chunk)
    return size, hasher.hexdigest()
