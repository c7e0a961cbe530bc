"""The block-at-a-time JSON-lines check gives exactly what the row-at-a-time check gave: the same rows, the
same bad rows with the same numbers and messages, the same optional columns, the same long-line refusal,
whether a file is checked in one pass or in ranges joined afterwards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pytest

from services.datasets import formats, linescan, readers
from services.datasets.rows import RowChecker, RowProblem
from services.datasets.scan import ScanResult, scan

pytestmark = pytest.mark.unit

GOOD = [
    {"instruction": "q", "input": "", "output": "a"},
    {"instruction": "", "input": "only the input", "output": "a"},
    {"instruction": "q", "output": "a", "system": "be brief"},
    {"instruction": "q", "output": "a", "history": [["h1", "a1"]]},
    {"instruction": 'é 漢 😀 \\ " \n', "output": '},{"x": 1}'},
]
LINES = [
    *(json.dumps(row) for row in GOOD),
    *(json.dumps(row, ensure_ascii=False) for row in GOOD),
    json.dumps({"instruction": "", "input": "", "output": "a"}),
    json.dumps({"instruction": "q", "output": ""}),
    json.dumps({"instruction": "q"}),
    json.dumps({"instruction": 3, "output": "a"}),
    json.dumps({"instruction": "q", "output": "a", "history": "no"}),
    json.dumps([1, 2]),
    '{"instruction": "q", "output": "a"} {"instruction": "q", "output": "a"}',
    '{"instruction": "q", "output": "a"},{"instruction": "q", "output": "a"}',
    '{"instruction": "q",',
    '"output": "a"}',
    '{"instruction": "q", "output": "a", "n": [[1',
    "2]]}",
    "",
    "   ",
    "\r",
    "\x0c",
    "not json",
    '{"instruction": "q", "output": "a"}\r',
    "[" * 3000 + "]" * 3000,
    '{"instruction": "q", "output": "' + "x" * 400 + '"}',
]


def reference(path: Path, fmt: str = "alpaca") -> tuple:
    """The row-at-a-time JSON-lines check as it was before linescan.py (readers.json_lines, one decode a line)."""
    columns = formats.spec(fmt).columns({})
    checker, result = RowChecker(fmt, columns, {}), ScanResult()
    try:
        for number, line in readers.json_lines(path):
            result.rows += 1
            try:
                row = checker.decode(line)
            except RowProblem as exc:
                result.note(f"line {number}", str(exc))
                continue
            except msgspec.DecodeError as exc:
                result.note(f"line {number}", f"not valid JSON ({exc})")
                continue
            except UnicodeDecodeError as exc:  # a 500 before linescan.py: now a bad row
                result.note(f"line {number}", f"not UTF-8 text ({exc.reason})")
                continue
            except RecursionError:
                result.note(f"line {number}", readers.TOO_DEEP)
                continue
            if checker.absent:
                checker.present(row)
    except readers.DatasetProblem as exc:
        return ("problem", str(exc))
    absent = set(checker.absent)
    return (result.rows, result.bad_rows, result.first_bad, {c for r, c in columns.items() if r not in absent})


def checked(path: Path, fmt: str = "alpaca") -> tuple:
    try:
        result = scan([path], fmt, formats.spec(fmt).columns({}), {})
    except readers.DatasetProblem as exc:
        return ("problem", str(exc))
    return (result.rows, result.bad_rows, result.first_bad, result.columns)


def in_ranges(path: Path, rng: random.Random, fmt: str = "alpaca") -> tuple:
    """The file cut at random line ends, each range checked on its own, then joined."""
    data = path.read_bytes()
    ends = sorted({i + 1 for i, byte in enumerate(data) if byte == 10 and rng.random() < 0.2})
    bounds = [0, *[e for e in ends if e < len(data)], None]
    columns = formats.spec(fmt).columns({})
    parts = [linescan.check_range(path, fmt, columns, {}, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    try:
        result = scan([path], fmt, columns, {}, {path: linescan.combine(parts)})
    except readers.DatasetProblem as exc:
        return ("problem", str(exc))
    return (result.rows, result.bad_rows, result.first_bad, result.columns)


def _file(rng: random.Random, good_share: float) -> bytes:
    lines = [rng.choice(LINES[:10]) if rng.random() < good_share else rng.choice(LINES) for _ in range(300)]
    body = "\n".join(lines).encode()
    if rng.random() < 0.3:
        body = b"\xef\xbb\xbf" + body
    if rng.random() < 0.2:
        body = body.replace(b"a", b"\xff", 1)  # not UTF-8
    return body + (b"\n" if rng.random() < 0.5 else b"")


@pytest.mark.parametrize("seed", range(40))
def test_block_check_matches_the_row_at_a_time_check(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    monkeypatch.setattr(linescan, "BLOCK_BYTES", rng.choice([16, 100, 1000, 1 << 20]))
    if seed % 4 == 0:
        monkeypatch.setattr(readers, "MAX_LINE_BYTES", rng.choice([300, 420, 2000]))
    path = tmp_path / "rows.jsonl"
    path.write_bytes(_file(rng, good_share=rng.choice([1.0, 0.99, 0.9, 0.5])))
    expected = reference(path)
    assert checked(path) == expected
    assert in_ranges(path, rng) == expected


@pytest.mark.parametrize(
    "content",
    [b"", b"\n", b"\n\n  \n", b'{"instruction": "q", "output": "a"}', b"\xef\xbb\xbf\n" + json.dumps(GOOD[0]).encode()],
)
def test_edges_match(tmp_path, monkeypatch, content):
    monkeypatch.setattr(linescan, "BLOCK_BYTES", 7)
    path = tmp_path / "edge.jsonl"
    path.write_bytes(content)
    assert checked(path) == reference(path)


@pytest.mark.parametrize("length", [99, 100, 101, 250])
@pytest.mark.parametrize("newline", [True, False])
def test_a_long_line_is_refused_where_it_was(tmp_path, monkeypatch, length, newline):
    """A line is measured with its newline, as readline(MAX + 1) measured it, in a block or across blocks."""
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(linescan, "BLOCK_BYTES", 32)
    row = b'{"instruction": "q", "output": "' + b"x" * (length - 35) + b'"}'
    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"instruction": "q", "output": "a"}\n' + row + (b"\n" if newline else b""))
    assert checked(path) == reference(path)


def test_sharegpt_turns_are_checked_in_blocks(tmp_path):
    turn = lambda role, text: {"from": role, "value": text}
    rows = [{"conversations": [turn("human", "hi"), turn("gpt", "hello")]}] * 50
    rows.insert(30, {"conversations": [turn("human", "hi"), turn("human", "again")]})
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert checked(path, "sharegpt") == reference(path, "sharegpt")
    assert checked(path, "sharegpt")[:3] == (
        51,
        1,
        ["line 31: message 2 of `conversations` has role 'human' where 'function_call' or 'gpt' is expected"],
    )
