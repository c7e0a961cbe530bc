"""Where dataset files live in the data folder, and the rules that keep every path inside it.

data/
  dataset_info.json          written from the database after every change (LLaMA-Factory reads it)
  dataset_info_public.json   the operator's list of public datasets, synced in at start-up
  uploads/<dataset id>.<ext>         an uploaded file, under a name the platform chose
  uploads/<dataset id>/part-NNNNN.<ext>  several files (or an archive's entries), one dataset
  .incoming/<token>/         uploads being received and checked; never referenced by dataset_info
  .originals/<dataset id>    an OpenAI file's bytes as uploaded (its dataset is the converted file), for /content
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

INFO_FILE = "dataset_info.json"
PUBLIC_INFO_FILE = "dataset_info_public.json"
UPLOADS = "uploads"
INCOMING = ".incoming"
ORIGINALS = ".originals"
STALE_INCOMING_S = 24 * 3600


class UnsafePath(ValueError):
    """A path that would leave the data folder, or one the platform keeps for itself."""


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def info_path(self) -> Path:
        return self.root / INFO_FILE

    @property
    def public_info_path(self) -> Path:
        return self.root / PUBLIC_INFO_FILE

    @property
    def uploads(self) -> Path:
        return self.root / UPLOADS

    def new_incoming(self) -> Path:
        """A fresh private folder for one upload, on the same filesystem as its final place."""
        folder = self.root / INCOMING / secrets.token_hex(12)
        folder.mkdir(parents=True, mode=0o700)
        return folder

    def incoming_folder(self, token: str) -> Path:
        """The incoming folder `new_incoming` made under this name (an OpenAI upload keeps its parts there)."""
        if not token.isalnum():
            raise UnsafePath(f"{token!r} is not an incoming folder's name")
        return self.root / INCOMING / token

    def upload_target(self, dataset_id: str, suffix: str | None) -> tuple[Path, str]:
        """(absolute path, file_name relative to the data folder) for a dataset's stored file(s)."""
        name = f"{dataset_id}{suffix}" if suffix else dataset_id
        return self.uploads / name, f"{UPLOADS}/{name}"

    def original_path(self, dataset_id: str) -> Path:
        """Where an OpenAI file's bytes as uploaded are kept (the dataset itself is their conversion)."""
        return self.root / ORIGINALS / dataset_id

    def resolve(self, relative: str) -> Path:
        """An existing path under the data folder named by `relative`; UnsafePath if it escapes or is reserved."""
        pure = PurePosixPath(relative)
        if not relative or "\x00" in relative or "\\" in relative or pure.is_absolute():
            raise UnsafePath("give a path relative to the data folder, such as `corpora/web.jsonl`")
        if any(part in ("..", ".") or part.startswith(".") for part in pure.parts):
            raise UnsafePath("the path must not contain `..` or hidden (dot) folders")
        if pure.parts[0] == UPLOADS or pure.name in (INFO_FILE, PUBLIC_INFO_FILE):
            raise UnsafePath(f"`{relative}` is kept by the platform")
        root = self.root.resolve()
        target = (root / pure).resolve()  # follows symlinks: a link pointing outside is refused too
        if not target.is_relative_to(root) or target == root:
            raise UnsafePath("the path leaves the data folder")
        return target

    def stored_path(self, file_name: str) -> Path:
        """The absolute path of a stored `file_name`; UnsafePath if it does not stay inside the data folder."""
        root = self.root.resolve()
        target = (root / file_name).resolve()
        if not target.is_relative_to(root) or target == root:
            raise UnsafePath(f"{file_name!r} leaves the data folder")
        return target

    def sweep_incoming(self, older_than_s: float = STALE_INCOMING_S) -> int:
        """Remove uploads a crash or a vanished client left unfinished: folders in which nothing was written for
        `older_than_s` (a live upload writes all the time). Returns how many folders went."""
        folder, removed = self.root / INCOMING, 0
        if not folder.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        for entry in folder.iterdir():
            if _last_written(entry) < cutoff:
                remove_stored(entry)
                removed += 1
        return removed


def _last_written(folder: Path) -> float:
    """The newest modification time of a folder and the files in it (infinite when it went meanwhile)."""
    try:
        newest = folder.lstat().st_mtime
    except FileNotFoundError:
        return math.inf
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, entry.lstat().st_mtime)
    return newest


def data_files(path: Path) -> list[Path]:
    """The files a dataset's file_name stands for: the file itself, or a folder's files in name order."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return [path]


def write_json_atomically(path: Path, payload: object) -> None:
    """Write then rename, so a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stored(path: Path) -> None:
    """Delete a stored file or folder (missing is fine)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
