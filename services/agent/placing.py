"""Where the agent's cache places a job's input (services/agent/cache.py): a hard link to the cache's entry at the
job's path, or a copy beside it when the cache is on another filesystem; a file already there with the same bytes is
left as it is."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from services.common import objects


def same_bytes_elsewhere(source: Path, target: Path, size: int, sha256: str) -> bool:
    """Whether `target` is a file that is not `source` (the cache's entry) but holds its very bytes (`size`,
    `sha256`)."""
    try:
        if target.samefile(source) or not target.is_file() or target.stat().st_size != size:
            return False
    except OSError:
        return False
    return objects.file_sha256(target) == sha256


def link_beside(source: Path, target: Path) -> Path | None:
    """`source` linked at `target` (replacing what is there); when it cannot be linked (another filesystem), the
    temporary path beside `target` a copy should be written to and moved from."""
    with contextlib.suppress(OSError):
        if target.samefile(source):
            return None
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.placing-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        return temporary
    os.replace(temporary, target)
    return None
