"""Check a whole dataset: every row of every file against its format, without loading any file.

JSON lines, the usual shape of a big dataset, take the fast path (linescan.py): lines are decoded straight
into the format's msgspec row type, a block at a time. Other files are read row by row (readers.py) and
converted into it.
Blocking; callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import formats, linescan
from .linescan import BAD_ROWS_SHOWN, Partial
from .readers import (
    BadRow,
    DatasetProblem,
    csv_header,
    file_type,
    is_json_lines,
    iter_rows,
    line_too_long,
    parquet_columns,
)
from .rows import RowChecker, RowProblem


@dataclass
class ScanResult:
    rows: int = 0
    bad_rows: int = 0
    first_bad: list[str] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)
    """The mapped columns some row has (required ones, and optional ones at least one row holds)."""

    def note(self, where: str, problem: str) -> None:
        self.bad_rows += 1
        if len(self.first_bad) < BAD_ROWS_SHOWN:
            self.first_bad.append(f"{where}: {problem}")


def _check_header(path: Path, fmt: str, columns: dict[str, str]) -> None:
    """CSV and Parquet name their columns up front: a missing one is one message, not one per row."""
    kind = file_type(path.name)
    if kind not in ("csv", "parquet"):
        return
    if fmt == "sharegpt" and kind == "csv":
        raise DatasetProblem("sharegpt rows hold lists of messages, which CSV cannot: use JSON, JSON lines or Parquet")
    present = set(csv_header(path) if kind == "csv" else parquet_columns(path))
    for role in formats.spec(fmt).required:
        if columns[role] not in present:
            shown = ", ".join(sorted(present)[:20]) or "none"
            raise DatasetProblem(f"there is no `{columns[role]}` column ({role}); the columns are: {shown}")


def _add_lines(result: ScanResult, checker: RowChecker, found: Partial, prefix: str) -> None:
    """A JSON-lines file's check (linescan.py), added to the whole scan's."""
    if found.too_long:
        raise line_too_long(found.too_long)
    result.rows += found.rows
    result.bad_rows += found.bad_rows
    for line, problem in found.first_bad:
        if len(result.first_bad) < BAD_ROWS_SHOWN:
            result.first_bad.append(f"{prefix}line {line}: {problem}")
    checker.absent = [role for role in checker.absent if role in found.absent]


def _scan_rows(path: Path, checker: RowChecker, result: ScanResult, prefix: str) -> None:
    strict = file_type(path.name) != "csv"
    for where, row in iter_rows(path):
        result.rows += 1
        if isinstance(row, BadRow):
            result.note(prefix + where, row.problem)
            continue
        try:
            checked = checker.convert(row, strict=strict)
        except RowProblem as exc:
            result.note(prefix + where, str(exc))
            continue
        if checker.absent:
            checker.present(checked)


def scan(
    paths: Sequence[Path],
    fmt: str,
    columns: dict[str, str],
    tags: dict[str, str],
    checked_lines: Mapping[Path, Partial] | None = None,
) -> ScanResult:
    """Read every row of every file and check it against the format; raises DatasetProblem when unusable.

    `checked_lines`: JSON-lines files already checked (in worker processes, while they streamed in): their
    results are taken as they are, in the files' order, as if this pass had read them."""
    result, checker = ScanResult(), RowChecker(fmt, columns, tags)
    for path in paths:
        prefix = f"{path.name} " if len(paths) > 1 else ""
        try:
            _check_header(path, fmt, columns)
            if is_json_lines(path):
                found = (checked_lines or {}).get(path) or linescan.check_range(path, fmt, columns, tags)
                _add_lines(result, checker, found, prefix)
            else:
                _scan_rows(path, checker, result, prefix)
        except DatasetProblem as exc:
            raise DatasetProblem(prefix + str(exc)) from exc
    result.columns = {column for role, column in columns.items() if role not in checker.absent}
    return result
