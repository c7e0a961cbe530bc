"""Read dataset files row by row, whatever their size: JSON arrays, JSON lines, CSV and Parquet.

Nothing here loads a whole file: JSON arrays are split with the C decoder over a sliding buffer, JSON
lines and CSV are read line by line, Parquet batch by batch. A line is read up to MAX_LINE_BYTES and no further,
so a file that is one endless line is refused, never held in memory; a JSON array's row is bounded likewise, and
a row nested too deep to decode is a bad row. Blocking; callers run it in a thread.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, AnyStr

import msgspec

FILE_TYPES = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
CHUNK_CHARS = 1 << 20
MAX_ROW_CHARS = 64 << 20
MAX_LINE_BYTES = 16 << 20
"""The longest line of a JSON-lines or CSV file (a row of text far longer than any model's context)."""
PARQUET_MAX_RATIO = 100
PARQUET_RATIO_FLOOR = 16 << 20
"""A Parquet file may decompress to PARQUET_MAX_RATIO times its size, and to this much whatever its size."""
# A truncated value fails a few characters before the end of the buffer (`tr` of `true`, `\u12`).
_TRUNCATION_MARGIN = 16
_SPACE = re.compile(r"[ \t\n\r]*")

csv.field_size_limit(MAX_ROW_CHARS)


TOO_DEEP = "nested too deep to read"


class DatasetProblem(Exception):
    """The file as a whole cannot be used; the message says what and where."""


class BadRow(msgspec.Struct, frozen=True):
    """A row that could not even be decoded (a broken JSON line)."""

    problem: str


def file_type(name: str) -> str | None:
    """json, jsonl, csv or parquet from a file name's extension; None for anything else."""
    return FILE_TYPES.get(Path(name).suffix.lower())


def iter_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) for every row of a data file; `where` is "row N" or "line N" for messages."""
    kind = file_type(path.name)
    if kind == "parquet":
        yield from _parquet_rows(path)
    elif kind == "csv":
        yield from _csv_rows(path)
    elif kind in ("json", "jsonl"):
        yield from _json_rows(path)
    else:
        raise DatasetProblem(f"{path.name}: not a dataset file (use .json, .jsonl, .csv or .parquet)")


def _open_text(path: Path):
    return open(path, encoding="utf-8-sig", newline="")


def _first_char(path: Path) -> str:
    with _open_text(path) as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]
    return ""


def _json_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        first = _first_char(path)
        if first == "[":
            yield from _json_array_rows(path)
        elif first == "{" or file_type(path.name) == "jsonl":
            yield from _json_lines_rows(path)
        elif first:
            raise DatasetProblem("a JSON dataset must be an array of objects, or one object per line (JSON lines)")
    except UnicodeDecodeError as exc:
        raise DatasetProblem(f"the file is not UTF-8 text (byte {exc.start} of a chunk: {exc.reason})") from exc


def line_too_long(number: int) -> DatasetProblem:
    return DatasetProblem(
        f"line {number} is longer than {MAX_LINE_BYTES >> 20} MiB, the longest row a dataset may hold"
    )


def bounded_lines(handle: IO[AnyStr]) -> Iterator[AnyStr]:
    """The lines of `handle`, each read up to MAX_LINE_BYTES (characters, for text) and never further."""
    number = 0
    while line := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise line_too_long(number)
        yield line


def json_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every non-blank line of a JSON-lines file."""
    with open(path, "rb") as handle:
        for number, line in enumerate(bounded_lines(handle), start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if line.strip():
                yield number, line


def _json_lines_rows(path: Path) -> Iterator[tuple[str, Any]]:
    for number, line in json_lines(path):
        try:
            yield f"line {number}", msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            yield f"line {number}", BadRow(f"not valid JSON ({exc})")
        except RecursionError:
            yield f"line {number}", BadRow(TOO_DEEP)


def is_json_lines(path: Path) -> bool:
    """JSON lines: by extension, or a .json file whose first value is an object rather than an array."""
    kind = file_type(path.name)
    try:
        return kind == "jsonl" or (kind == "json" and _first_char(path) == "{")
    except UnicodeDecodeError as exc:
        raise DatasetProblem(f"the file is not UTF-8 text ({exc.reason})") from exc


class _Window:
    """A sliding window over a text file, for the JSON array reader."""

    def __init__(self, handle) -> None:
        self.handle, self.text, self.pos, self.eof = handle, "", 0, False
        self.decode = json.JSONDecoder().raw_decode

    def more(self) -> bool:
        chunk = self.handle.read(CHUNK_CHARS)
        self.text, self.pos, self.eof = self.text[self.pos :] + chunk, 0, not chunk
        return bool(chunk)

    def peek(self) -> str:
        """The next character that is not white space ("" at the end of the file)."""
        while True:
            space = _SPACE.match(self.text, self.pos)
            assert space is not None  # `*` matches the empty string too
            self.pos = space.end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def value(self, number: int) -> Any:
        """One JSON value, reading more of the file while the window may have cut it."""
        while True:
            try:
                value, self.pos = self.decode(self.text, self.pos)
                return value
            except RecursionError as exc:
                raise DatasetProblem(f"row {number}: {TOO_DEEP}") from exc
            except json.JSONDecodeError as exc:
                cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.text) - _TRUNCATION_MARGIN
                if self.eof or not cut:
                    raise DatasetProblem(f"row {number}: not valid JSON ({exc.msg})") from exc
                if len(self.text) - self.pos > MAX_ROW_CHARS:
                    raise DatasetProblem(f"row {number} is larger than {MAX_ROW_CHARS >> 20} MiB") from exc
                self.more()


def _json_array_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with _open_text(path) as handle:
        window = _Window(handle)
        window.peek()
        window.pos += 1  # the opening '['
        number, done = 0, window.peek() == "]"
        if done:
            window.pos += 1
        while not done:
            number += 1
            yield f"row {number}", window.value(number)
            nxt = window.peek()
            window.pos += 1
            if nxt == ",":
                if window.peek() == "]":
                    raise DatasetProblem(f"row {number}: a trailing comma before `]` is not valid JSON")
            elif nxt == "]":
                done = True
            elif not nxt:
                raise DatasetProblem(f"the JSON array ends early, after row {number} (the file is truncated)")
            else:
                raise DatasetProblem(f"after row {number}: expected `,` or `]`, found {nxt!r}")
        if window.peek():
            raise DatasetProblem("there is data after the end of the JSON array")


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        with _open_text(path) as handle:
            reader = csv.reader(bounded_lines(handle))
            header = next(reader, None)
            if header is None:
                return
            # Not DictReader: it copies the cells beyond the header into a list of their own, and a line of
            # 16 million commas is that many cells.
            rows = (cells for cells in reader if cells)
            for number, cells in enumerate(rows, start=1):
                row: dict[str, str | None] = dict(zip(header, cells, strict=False))  # cells beyond the header: dropped
                row.update(dict.fromkeys(header[len(cells) :]))  # cells a short row lacks are None
                yield f"row {number}", row
    except csv.Error as exc:
        raise DatasetProblem(f"not a readable CSV file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetProblem(f"the file is not UTF-8 text ({exc.reason})") from exc


def csv_header(path: Path) -> list[str]:
    with _open_text(path) as handle:
        try:
            return next(csv.reader(bounded_lines(handle)), [])
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DatasetProblem(f"not a readable CSV file: {exc}") from exc


def _parquet_file(path: Path, read_dictionary: list[str] | None = None):
    import pyarrow
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path, read_dictionary=read_dictionary)
    except (pyarrow.ArrowException, OSError) as exc:
        raise DatasetProblem(f"not a readable Parquet file: {exc}") from exc


def parquet_columns(path: Path) -> list[str]:
    return list(_parquet_file(path).schema_arrow.names)


def _parquet_bomb(what: str, size: int) -> DatasetProblem:
    return DatasetProblem(
        f"the Parquet file's {what} more than {PARQUET_MAX_RATIO} times its own size of {size:,} bytes: refused as a "
        "decompression bomb"
    )


def _bounded_parquet(path: Path):
    """The file, refused when its footer says its pages decompress past the ratio; top-level text columns are
    read as dictionaries, so a value is not copied out for every row that names it before it is counted."""
    import pyarrow

    schema = _parquet_file(path).schema_arrow
    kinds = (pyarrow.types.is_string, pyarrow.types.is_large_string, pyarrow.types.is_binary)
    text = [field.name for field in schema if any(kind(field.type) for kind in kinds)]
    parquet = _parquet_file(path, read_dictionary=text)
    size, meta = path.stat().st_size, parquet.metadata
    allowed = max(PARQUET_MAX_RATIO * size, PARQUET_RATIO_FLOOR)
    if sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > allowed:
        raise _parquet_bomb("pages decompress to", size)
    return parquet, allowed


def _text_bytes(batch) -> int:
    """What the batch's dictionary-read text cells hold in all, each value counted for every row that names it."""
    import pyarrow
    import pyarrow.compute as pc

    total = 0
    for column in batch.columns:
        if pyarrow.types.is_dictionary(column.type):
            lengths = pc.call_function("binary_length", [column.dictionary])
            total += pc.call_function("sum", [lengths.take(column.indices)]).as_py() or 0
    return total


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow

    number, text = 0, 0
    try:
        parquet, allowed = _bounded_parquet(path)
        for batch in parquet.iter_batches(batch_size=1024):
            text += _text_bytes(batch)
            if text > allowed:
                raise _parquet_bomb("rows hold", path.stat().st_size)
            for row in batch.to_pylist():
                number += 1
                yield f"row {number}", row
    except pyarrow.ArrowException as exc:
        raise DatasetProblem(f"not a readable Parquet file after row {number}: {exc}") from exc


def first_rows(paths: Sequence[Path], limit: int) -> list[tuple[str, Any]]:
    """The first `limit` rows across the files, in order."""
    rows: list[tuple[str, Any]] = []
    for path in paths:
        for where, row in iter_rows(path):
            if len(rows) >= limit:
                return rows
            rows.append((f"{path.name} {where}" if len(paths) > 1 else where, row))
    return rows


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
