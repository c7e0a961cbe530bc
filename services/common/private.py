"""Files and folders only the platform's own user may read: logs, saved state and secrets (0600 files, 0700
folders). Modes are given when a file is created, never fixed afterwards, so there is no moment where another user
of the machine could open it; an existing file or folder is narrowed too (one written by an older version)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """`path` made (with its parents) and closed to everyone but this user."""
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    path.chmod(FOLDER_MODE)
    return path


def open_private(path: Path, append: bool = True) -> BinaryIO:
    """A file opened for writing (appending by default) that only this user can read, unbuffered."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "ab" if append else "wb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` at once with `data`, readable only by this user: a crash leaves the old content or the new."""
    temp = path.with_name(path.name + ".tmp")
    temp.unlink(missing_ok=True)  # a leftover could carry a wider mode
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)
