"""A folder's own files, never what a link in it points to: a job's outputs (served by the scheduler, zipped by
archive.py) and a dataset's folder.

A job writes its output folder as it likes (the engine runs the user's config), so a link in it may name /etc/passwd,
the platform's secrets or another job's folder. The walk keeps regular files and folders only, never following a
link; each file is opened again when it is streamed, one path component at a time relative to its folder's
descriptor with O_NOFOLLOW, so a file or folder swapped for a link between the walk and the read is not followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from . import ranges
from .errors import ApiError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO the job left there must not hang the stream (it is then refused as not a file).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def own_files(folder: Path) -> list[tuple[str, ...]]:
    """The regular files under `folder` as path components relative to it; links and special files left out."""
    found: list[tuple[str, ...]] = []
    try:
        root = os.open(folder, _DIR_FLAGS)
    except OSError:
        return found  # gone, or itself a link
    try:
        _walk(root, (), found)
    finally:
        os.close(root)
    return sorted(found)


def _walk(fd: int, prefix: tuple[str, ...], found: list[tuple[str, ...]]) -> None:
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                found.append((*prefix, entry.name))
            elif entry.is_dir(follow_symlinks=False):
                try:
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except OSError:  # swapped for a link (or removed) since the listing
                    continue
                try:
                    _walk(child, (*prefix, entry.name), found)
                finally:
                    os.close(child)


def open_own_file(folder: Path, parts: tuple[str, ...]) -> int | None:
    """A descriptor of the regular file `parts` under `folder`, reached without following any link; else None."""
    try:
        fd = os.open(folder, _DIR_FLAGS)
    except OSError:
        return None
    try:
        for name in parts[:-1]:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        return None
    return file_fd


def relative_parts(path: str) -> tuple[str, ...]:
    """The components of a file's path inside a folder, as a client names it; 400 for one that would leave the
    folder or name none."""
    parts = tuple(p for p in path.split("/") if p)
    if not parts or any(p in (".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise ApiError(
            400,
            "invalid_path",
            "name a file inside the folder: no '.' or '..' segments, no backslash",
            "path",
        )
    return parts


def stat_own_file(folder: Path, parts: tuple[str, ...]) -> os.stat_result | None:
    """What open_own_file would open (a regular file reached without a link), or None."""
    return ranges.stat_opened(lambda: open_own_file(folder, parts))
