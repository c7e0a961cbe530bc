"""What an agent keeps on disk about each job whose engine outlives it (docker), to pick the job up again.

Two files per job in the agent's state folder (`<LLMCT_STATE_PATH>/agents/<agent id>/`, 0700, files 0600):
`<job>.order`, the JobDispatched as received (written before the first container starts), and
`<job>.cursor`, how far the job's output got: the last log line number shipped and the log file's
length after it, the runtime's position in the engine's output, how far trainer_log.jsonl was read,
and whether JobStarted went out. The cursor is rewritten (atomically) after every batch of log lines
the shipper sends, so it is at most one batch behind what viewers saw. Both go when JobFinished is out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec

from services.common import contracts
from services.common.private import private_folder, write_private

log = logging.getLogger(__name__)


class Cursor(msgspec.Struct, kw_only=True):
    """How far a job's output was shipped."""

    seq: int = 0
    log_bytes: int | None = None  # the log file's length after line `seq`; None: not known
    engine: dict[str, Any] | None = None  # the runtime's position in the engine's output (DockerRun.position)
    progress_bytes: int = 0  # trainer_log.jsonl read up to here
    started: bool = False  # JobStarted was published


_encode = msgspec.json.Encoder().encode
_decode_cursor = msgspec.json.Decoder(Cursor).decode


class SavedJob:
    """The agent's saved record of a job it runs (not the job's state: contracts.JobState): its order and cursor;
    with `folder=None` (engines die with the agent) nothing is written."""

    def __init__(self, folder: Path | None, order: contracts.JobDispatched, cursor: Cursor | None = None):
        self.folder = folder
        self.order = order
        self.cursor = cursor or Cursor()

    @classmethod
    def begin(cls, folder: Path | None, order: contracts.JobDispatched) -> SavedJob:
        """A job dispatched to this agent: its order written, its cursor empty."""
        state = cls(folder, order)
        if folder is not None:
            private_folder(folder)  # orders name datasets, models and paths: this user's only (0700, files 0600)
            _write(folder / f"{order.job_id}.order", contracts.encode(order))
            state.save()
        return state

    @classmethod
    def load(cls, folder: Path, job_id: str) -> SavedJob | None:
        """The saved state of a job, or None when there is none (or it cannot be read)."""
        try:
            order = contracts.decode((folder / f"{job_id}.order").read_bytes())
            cursor = _decode_cursor((folder / f"{job_id}.cursor").read_bytes())
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("state of job %s unreadable: %s", job_id, exc)
            return None
        if not isinstance(order, contracts.JobDispatched) or order.job_id != job_id:
            return None
        return cls(folder, order, cursor)

    @staticmethod
    def saved_jobs(folder: Path) -> list[str]:
        """Jobs with a saved order in `folder`."""
        return sorted(path.stem for path in folder.glob("*.order")) if folder.is_dir() else []

    def save(self) -> None:
        if self.folder is not None:
            _write(self.folder / f"{self.order.job_id}.cursor", _encode(self.cursor))

    def shipped(self, seq: int, log_bytes: int, mark: Any) -> None:
        """The shipper sent lines up to `seq` (LogShipper.on_shipped)."""
        self.cursor.seq, self.cursor.log_bytes = seq, log_bytes
        if mark is not None:
            self.cursor.engine = mark
        self.save()

    def progress_read(self, offset: int) -> None:
        """trainer_log.jsonl was read up to `offset` (saved with the next batch of lines)."""
        self.cursor.progress_bytes = offset

    def mark_started(self) -> None:
        self.cursor.started = True
        self.save()

    def forget(self) -> None:
        """The job ended and was reported: nothing is left to pick up."""
        if self.folder is not None:
            for suffix in ("order", "cursor"):
                (self.folder / f"{self.order.job_id}.{suffix}").unlink(missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    """Replace a file at once: a crash leaves the old content or the new, never half of either."""
    try:
        write_private(path, data)
    except OSError as exc:  # a full disk must not stop the job; only a restart would lose its place
        log.warning("could not save %s: %s", path, exc)


def count_lines(path: Path) -> tuple[int, int]:
    """(lines, bytes) of a log file, for a job found running without a cursor; (0, 0) when missing."""
    lines = size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")
                size += len(chunk)
    except OSError:
        pass
    return lines, size
