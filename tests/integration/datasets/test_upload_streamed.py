"""A large JSON-lines upload is checked in worker processes while it streams in, with exactly the verdict of one
pass over the file: the same rows, bad rows numbered across the ranges the workers took, the same refusals."""

from __future__ import annotations

import hashlib
import json
import logging

import psutil
import pytest

from services.common.errors import ApiError
from services.common.security import Principal
from services.datasets import checks, ingest
from services.datasets.checks import CheckPool
from services.datasets.layout import DataLayout
from services.datasets.service import Context
from services.datasets.settings import DatasetSettings
from tests.helpers import eventually
from tests.integration.datasets.helpers import as_tar, assert_error, leftovers, unique

pytestmark = pytest.mark.integration

BOUNDARY = "streamedboundary"
ROW = json.dumps({"instruction": "Add the two numbers.", "input": "24 and 48", "output": "72"}).encode() + b"\n"
ROWS = 3 * checks.SEGMENT_BYTES // len(ROW)  # about three ranges' worth


@pytest.fixture
async def ctx(pool, data_dir):
    # repeated rows compress far beyond the archive ratio's default
    context = Context(
        pool=pool,
        layout=DataLayout(data_dir),
        settings=DatasetSettings(max_bytes=1 << 30, archive_max_ratio=100_000),
        checks=CheckPool(2),
    )
    yield context
    context.checks.close()


@pytest.fixture
def caller(alice) -> Principal:
    return Principal(user_id=alice.user_id, username="alice", role="user", via="token")


def body(
    content: bytes,
    fields: dict[str, str],
    after: dict[str, str] | None = None,
    chunk: int = 256 << 10,
    filename: str = "big.jsonl",
):
    """A multipart body streamed in chunks as a server hands it on; `after`: text fields sent after the file."""

    def text(items: dict[str, str]) -> bytes:
        return "".join(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in items.items()
        ).encode()

    head = (
        text(fields)
        + (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n').encode()
    )
    whole = head + content + b"\r\n" + text(after or {}) + f"--{BOUNDARY}--\r\n".encode()

    async def stream():
        for start in range(0, len(whole), chunk):
            yield whole[start : start + chunk]
        yield b""

    return stream()


async def upload(ctx, caller, content: bytes, fields: dict[str, str], after=None, filename: str = "big.jsonl"):
    stream = body(content, fields, after, filename=filename)
    return await ingest.upload(ctx, caller, stream, f"multipart/form-data; boundary={BOUNDARY}", len(content))


def checked_while_receiving(caplog) -> str:
    return next(r.getMessage() for r in caplog.records if "rows checked in" in r.getMessage()).rsplit("(", 1)[1]


async def test_a_large_upload_is_checked_while_it_streams_in(ctx, caller, data_dir, caplog):
    content = ROW * ROWS
    with caplog.at_level(logging.INFO, logger="services.datasets.ingest"):
        dataset = await upload(ctx, caller, content, {"name": unique(), "format": "alpaca"})
    assert checked_while_receiving(caplog) == "1 of 1 files while receiving)"
    assert (dataset.rows, dataset.size_bytes) == (ROWS, len(content))
    assert dataset.checksum == hashlib.sha256(content).hexdigest()  # known when the upload ends
    assert dataset.columns == {"prompt": "instruction", "query": "input", "response": "output"}
    assert leftovers(data_dir) == []


async def test_bad_rows_in_every_range_are_numbered_as_in_one_pass(ctx, caller, data_dir, caplog):
    lines = [ROW] * ROWS
    bad = {3: b'{"instruction": "x"}\n', ROWS // 2: b"{oops\n", ROWS - 1: b'{"instruction": "", "output": "a"}\n'}
    bad[ROWS // 2 + 7] = b'{"instruction": "q", "output": "\xff"}\n'  # not UTF-8 inside a string
    for number, line in bad.items():
        lines[number - 1] = line
    with caplog.at_level(logging.INFO, logger="services.datasets.ingest"), pytest.raises(ApiError) as refused:
        await upload(ctx, caller, b"".join(lines), {"name": unique(), "format": "alpaca"})
    error = refused.value
    assert (error.status, error.code, error.field) == (422, "invalid_dataset", "file")
    assert error.message == (
        f"4 of {ROWS} rows do not fit the alpaca format: line 3: missing `output`; line {ROWS // 2}: not valid JSON "
        "(JSON is malformed: object keys must be strings (byte 1)); "
        f"line {ROWS // 2 + 7}: not UTF-8 text (invalid start byte); line {ROWS - 1}: `instruction` is empty"
    )
    assert leftovers(data_dir) == []


async def test_a_line_over_the_cap_is_refused_at_its_number(ctx, caller, data_dir):
    long_line = b'{"instruction": "' + b"x" * (16 << 20) + b'", "output": "a"}\n'
    rows_before = 2 * checks.SEGMENT_BYTES // len(ROW)
    with pytest.raises(ApiError) as refused:
        await upload(ctx, caller, ROW * rows_before + long_line + ROW, {"name": unique(), "format": "alpaca"})
    assert (refused.value.code, refused.value.message) == (
        "invalid_dataset",
        f"the file cannot be used: line {rows_before + 1} is longer than 16 MiB, the longest row a dataset may hold",
    )
    assert leftovers(data_dir) == []


async def test_a_mapping_sent_after_the_file_is_the_one_checked(ctx, caller, caplog):
    """The workers cannot know a `columns` field that comes after the file: their check is dropped, and the file
    is checked once it is in, against the mapping really sent."""
    row = json.dumps({"question": "Add the two numbers.", "answer": "72"}).encode() + b"\n"
    content = row * (3 * checks.SEGMENT_BYTES // len(row))
    columns = json.dumps({"prompt": "question", "response": "answer"})
    with caplog.at_level(logging.INFO, logger="services.datasets.ingest"):
        dataset = await upload(ctx, caller, content, {"name": unique(), "format": "alpaca"}, {"columns": columns})
    assert checked_while_receiving(caplog) == "0 of 1 files while receiving)"
    assert dataset.rows == len(content) // len(row)
    assert dataset.columns == {"prompt": "question", "response": "answer"}


async def test_a_row_that_is_not_utf8_is_a_bad_row_not_a_server_error(alice, data_dir):
    """msgspec checks UTF-8 only as it builds a string: that was a 500 before rows were checked in blocks."""
    content = b'{"instruction": "q", "output": "a"}\n{"instruction": "q", "output": "caf\xe9"}\n'
    error = assert_error(await alice.upload(unique(), "alpaca", [("a.jsonl", content)]), 422, "invalid_dataset")
    assert error["message"] == (
        "1 of 2 rows do not fit the alpaca format: line 2: not UTF-8 text (unexpected end of data)"
    )
    assert leftovers(data_dir) == []


async def test_a_large_file_in_an_archive_is_checked_in_ranges_as_in_one_pass(ctx, caller, data_dir, tmp_path):
    """Unpacked files are on disk before anything reads them: the workers take them in ranges all the same, and a
    bad row on either side of every cut between ranges is numbered as one pass numbers it."""
    bad = b'{"output": "a"}'.ljust(len(ROW) - 1) + b"\n"  # as long as a good row: the cuts stay where they are
    probe = tmp_path / "probe.jsonl"
    probe.write_bytes(ROW * ROWS)
    cuts = [start // len(ROW) + 1 for start in checks.line_starts(probe)[1:]]  # the first line of each range
    assert len(cuts) >= 2
    numbers = sorted({1, ROWS, *cuts, *(n - 1 for n in cuts)})
    lines = [ROW] * ROWS
    for number in numbers:
        lines[number - 1] = bad
    with pytest.raises(ApiError) as refused:
        await upload(
            ctx,
            caller,
            as_tar({"big.jsonl": b"".join(lines)}),
            {"name": unique(), "format": "alpaca"},
            filename="big.tar",
        )
    shown = "; ".join(f"line {n}: missing `instruction`" for n in numbers[:5])
    assert refused.value.message == f"{len(numbers)} of {ROWS} rows do not fit the alpaca format: {shown}; …"
    assert leftovers(data_dir) == []


async def test_an_upload_whose_workers_died_is_checked_in_the_service(ctx, caller, caplog):
    """Workers killed (as the OOM killer would) break their pool: the next upload's file is checked again in the
    service, with the same verdict, and a fresh pool takes the upload after it."""
    content = ROW * ROWS
    assert (await upload(ctx, caller, content, {"name": unique(), "format": "alpaca"})).rows == ROWS
    # This pool's own workers (other pools of the session may have children too, or be closing theirs).
    executor = ctx.checks._executor
    assert executor is not None
    workers = [psutil.Process(process.pid) for process in executor._processes.values()]
    assert workers
    for worker in workers:
        worker.kill()
    psutil.wait_procs(workers, timeout=10)

    async def noticed():
        return executor._broken  # the pool saw its workers die, as it would before the next upload

    await eventually(noticed, timeout=10)
    with caplog.at_level(logging.INFO, logger="services.datasets"):
        caplog.clear()  # the first upload's lines too are kept when the session already logs at INFO
        dataset = await upload(ctx, caller, content, {"name": unique(), "format": "alpaca"})
        assert dataset.rows == ROWS
        assert checked_while_receiving(caplog) == "0 of 1 files while receiving)"
        assert any("a row-check worker failed" in r.getMessage() for r in caplog.records)
        caplog.clear()
        again = await upload(ctx, caller, content, {"name": unique(), "format": "alpaca"})
    assert again.rows == ROWS and checked_while_receiving(caplog) == "1 of 1 files while receiving)"
