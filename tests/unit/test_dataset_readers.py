"""The row readers on their own: a JSON array read through a small window gives exactly json.loads' rows."""

from __future__ import annotations

import json
import random

import pytest

from services.datasets import formats, readers
from services.datasets.scan import scan

pytestmark = pytest.mark.unit


def _rows(seed: int) -> list:
    rng = random.Random(seed)
    text = lambda: "".join(rng.choice('ab"\\\n é漢😀') for _ in range(rng.randint(0, 300)))
    return [
        {
            "instruction": text() or "q",
            "input": text(),
            "output": text() or "a",
            "n": rng.random(),
            "flag": rng.choice([True, False, None]),
            "nested": [{"k": [1, 2.5, -3e-7]}],
        }
        for _ in range(200)
    ]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("window", [7, 64, 1000])
def test_json_array_window_matches_json_loads(tmp_path, monkeypatch, seed, window):
    monkeypatch.setattr(readers, "CHUNK_CHARS", window)
    rows = _rows(seed)
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, indent=seed % 3 or None, ensure_ascii=seed % 2 == 0), encoding="utf-8")
    assert [row for _, row in readers.iter_rows(path)] == json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ('[{"a": 1}, {"a": tru', "row 2: not valid JSON"),
        ('[{"a": 1}, {"a": nul}' + " " * 100 + "]", "row 2: not valid JSON"),
        ('[{"a": "unterminated]', "row 1: not valid JSON"),
        ('[{"a": 1},]', "trailing comma"),
        ('[{"a": 1}] {"b": 2}', "after the end"),
        ('[{"a": 1}', "truncated"),
        ('[{"a": 1} {"a": 2}]', "expected `,` or `]`"),
        ("42", "array of objects"),
    ],
)
def test_json_array_problems(tmp_path, monkeypatch, text, problem):
    monkeypatch.setattr(readers, "CHUNK_CHARS", 8)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(readers.DatasetProblem, match=problem.replace("`", ".").replace("[", ".").replace("]", ".")):
        list(readers.iter_rows(path))


def test_a_row_over_the_limit_is_refused_without_reading_on(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK_CHARS", 16)
    monkeypatch.setattr(readers, "MAX_ROW_CHARS", 100)
    path = tmp_path / "huge.json"
    path.write_text('[{"instruction": "' + "x" * 1000 + '", "output": "y"}]')
    with pytest.raises(readers.DatasetProblem, match="row 1 is larger than"):
        list(readers.iter_rows(path))


def test_json_lines_in_a_json_file_and_a_bom(tmp_path):
    path = tmp_path / "lines.json"
    path.write_bytes(b'\xef\xbb\xbf{"instruction": "q", "output": "a"}\n\n{"instruction": "q2", "output": "b"}\n')
    result = scan([path], "alpaca", formats.spec("alpaca").columns({}), {})
    assert (result.rows, result.bad_rows, result.columns) == (2, 0, {"instruction", "output"})


def test_kto_tags_from_csv_text(tmp_path):
    path = tmp_path / "kto.csv"
    path.write_text("instruction,output,label\nq,a,true\nq,a,false\nq,a,maybe\n")
    columns = formats.spec("alpaca").columns({"kto_tag": "label"})
    result = scan([path], "alpaca", columns, {})
    assert result.rows == 3 and result.first_bad == ["row 3: `label` must be true or false"]
