"""Check the rows of a JSON-lines file, or of one byte range of it, a block of lines at a time.

The hot path of a big upload. A block (256 KiB of whole lines, so that its rows stay in the CPU's cache) is
split into lines and every line decoded into the format's row type by one C-level `map` over the decoder: no
Python frame per row. Only when some line of the block fails (not JSON, not a row of the format, blank, a BOM)
or a row needs a closer look (an empty alpaca prompt, sharegpt turns that do not alternate) is the block read
again line by line, the way the row-at-a-time reader always did, so the messages and their numbers are the
same as ever. A range starts and ends at line boundaries, so several processes can check one file at once
(checks.py); `Partial` is what one range found, with line numbers counted from the range's first line, and
`combine` joins ranges in order. Blocking; callers run it in a thread or a worker process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from . import readers
from .readers import TOO_DEEP
from .rows import RowChecker, RowProblem

BLOCK_BYTES = 256 << 10
BAD_ROWS_SHOWN = 5
BOM = b"\xef\xbb\xbf"


@dataclass
class Partial:
    """What the check of one range of a JSON-lines file found; line numbers count from the range's first line."""

    lines: int = 0
    rows: int = 0
    bad_rows: int = 0
    first_bad: list[tuple[int, str]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    """The optional roles no row of the range has."""
    too_long: int = 0
    """The first line longer than MAX_LINE_BYTES (the check stops there); 0: none."""

    def note(self, line: int, problem: str) -> None:
        self.bad_rows += 1
        if len(self.first_bad) < BAD_ROWS_SHOWN:
            self.first_bad.append((line, problem))


def combine(parts: Iterable[Partial]) -> Partial:
    """The ranges of one file, in order, as if it had been checked in one pass."""
    whole: Partial | None = None
    for part in parts:
        if whole is None:
            whole = Partial(absent=list(part.absent))
        before = whole.lines
        whole.lines += part.lines
        whole.rows += part.rows
        whole.bad_rows += part.bad_rows
        for line, problem in part.first_bad:
            if len(whole.first_bad) < BAD_ROWS_SHOWN:
                whole.first_bad.append((before + line, problem))
        whole.absent = [role for role in whole.absent if role in part.absent]
        if part.too_long:
            whole.too_long = before + part.too_long
            break  # a one-pass check stops at the long line
    return whole or Partial()


class _RangeCheck:
    def __init__(self, checker: RowChecker, at_start: bool) -> None:
        self.checker, self.at_start = checker, at_start
        self.result = Partial()

    def block(self, lines: list[bytes], last_has_newline: bool) -> None:
        """Check whole lines (without their newlines); `lines` follow the range's first `result.lines` lines."""
        checker = self.checker
        try:
            rows = list(map(checker.decoder.decode, lines))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # a ValidationError is a DecodeError
            self.one_by_one(lines, last_has_newline)
            return
        if not checker.extras_hold(rows):
            self.one_by_one(lines, last_has_newline)
            return
        self.result.lines += len(lines)
        self.result.rows += len(rows)
        if checker.absent:
            checker.present_in(rows)

    def one_by_one(self, lines: list[bytes], last_has_newline: bool) -> None:
        """The row-at-a-time check: what readers and the scan always did, line for line."""
        checker, result = self.checker, self.result
        last = len(lines) - 1
        for index, line in enumerate(lines):
            number = result.lines + index + 1
            if number == 1 and self.at_start and line.startswith(BOM):
                line = line[3:]
            if not line.strip():
                continue
            result.rows += 1
            if index < last or last_has_newline:
                line += b"\n"  # as a line was read: the decoder's messages are the same
            try:
                row = checker.decode(line)
            except RowProblem as exc:
                result.note(number, str(exc))
                continue
            except msgspec.DecodeError as exc:
                result.note(number, f"not valid JSON ({exc})")
                continue
            except UnicodeDecodeError as exc:  # msgspec checks UTF-8 only as it builds a string
                result.note(number, f"not UTF-8 text ({exc.reason})")
                continue
            except RecursionError:
                result.note(number, TOO_DEEP)
                continue
            if checker.absent:
                checker.present(row)
        result.lines += len(lines)


def check_range(
    path: Path,
    fmt: str,
    columns: Mapping[str, str],
    tags: Mapping[str, str],
    start: int = 0,
    end: int | None = None,
) -> Partial:
    """Check the lines of `path` from byte `start` (0 or just after a newline) to `end` (just after a newline,
    or None: the end of the file)."""
    checker = RowChecker(fmt, columns, tags)
    check = _RangeCheck(checker, at_start=start == 0)
    result = check.result
    with open(path, "rb") as handle:
        handle.seek(start)
        left = end - start if end is not None else None
        carry = b""
        while True:
            block = handle.read(BLOCK_BYTES if left is None else min(BLOCK_BYTES, left))
            if left is not None:
                left -= len(block)
            done = not block or left == 0
            buffer = carry + block if carry else block
            if done:
                _last_lines(check, buffer)
                break
            cut = buffer.rfind(b"\n")
            if cut < 0:
                carry = buffer
                if len(carry) > readers.MAX_LINE_BYTES:
                    result.too_long = result.lines + 1
                    break
                continue
            whole, carry = buffer[:cut], buffer[cut + 1 :]
            if not _block(check, whole, True):
                break
    result.absent = list(checker.absent)
    return result


def _too_long(lines: list[bytes], last_has_newline: bool) -> int:
    """The first of `lines` over MAX_LINE_BYTES with its newline (as readline measured a line), from 1; 0: none."""
    limit, last = readers.MAX_LINE_BYTES, len(lines) - 1
    if max(map(len, lines)) < limit:
        return 0
    for index, line in enumerate(lines):
        if len(line) + (index < last or last_has_newline) > limit:
            return index + 1
    return 0


def _block(check: _RangeCheck, whole: bytes, has_newline: bool) -> bool:
    """Check a block of whole lines; False when one is too long (the check stops there)."""
    lines = whole.split(b"\n")
    if len(whole) >= readers.MAX_LINE_BYTES and (long := _too_long(lines, has_newline)):
        check.result.too_long = check.result.lines + long
        return False
    check.block(lines, has_newline)
    return True


def _last_lines(check: _RangeCheck, buffer: bytes) -> None:
    if buffer:
        has_newline = buffer.endswith(b"\n")
        _block(check, buffer[:-1] if has_newline else buffer, has_newline)
