"""Archive bombs and endless lines, sent through the upload API: each is refused with a 4xx that says why, before
it costs the service memory or disk, and leaves nothing behind. Bombs are built in the test as streams."""

from __future__ import annotations

import base64
import io
import os
import tarfile
import time
import zipfile

import pytest
from litestar.testing import AsyncTestClient

from services.datasets.app import create_app
from services.datasets.readers import MAX_LINE_BYTES
from services.datasets.settings import DatasetSettings
from tests.integration.datasets.helpers import (
    ALPACA,
    PeakMemory,
    as_jsonl,
    assert_error,
    leftovers,
    tar_header,
    tar_of_empty_folders,
    tar_of_repeated_rows,
    unique,
    zip_of_one_line,
)

pytestmark = pytest.mark.integration

# Room for bombs of a few megabytes, and more than the ratio lets a 1 GiB bomb of 2 MB unpack to.
MAX_BYTES = 512 << 20
# What the service may add to its resident memory while it refuses a bomb (it copies in 1 MiB chunks).
MEMORY_BOUND_MIB = 100
DEFAULTS = DatasetSettings()


@pytest.fixture(scope="module")
async def client(settings):
    async with AsyncTestClient(app=create_app(settings, DatasetSettings(max_bytes=MAX_BYTES))) as client:
        yield client


async def test_a_tar_gz_of_two_million_empty_folders_is_refused_at_the_member_limit(alice, data_dir):
    bomb = tar_of_empty_folders(2_097_152)  # 10 MB that list 2,097,152 folders (1 GiB of tar headers)
    with PeakMemory() as memory:
        started = time.monotonic()
        response = await alice.upload(unique(), "alpaca", [("folders.tar.gz", bomb)])
        took = time.monotonic() - started
    error = assert_error(response, 422, "unsafe_archive", "file")
    assert f"more than {DEFAULTS.archive_max_members:,} entries, folders included" in error["message"]
    # Refused after reading 10,001 headers, not two million: quickly and without keeping them.
    assert took < 15, took
    assert memory.growth_mib < MEMORY_BOUND_MIB, memory.growth_mib
    assert leftovers(data_dir) == []


@pytest.mark.parametrize("packer", ["zip", "tar"])
async def test_folders_count_as_members(alice, data_dir, packer):
    """One data file among more folders than the limit: refused, since a folder is a member too."""
    folders = [f"f{i:05d}/" for i in range(DEFAULTS.archive_max_members)]
    sink = io.BytesIO()
    if packer == "zip":
        with zipfile.ZipFile(sink, "w") as archive:
            for folder in folders:
                archive.writestr(folder, b"")
            archive.writestr("data.jsonl", as_jsonl(ALPACA))
    else:
        with tarfile.open(fileobj=sink, mode="w:gz") as archive:
            for folder in folders:
                info = tarfile.TarInfo(folder)
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            info = tarfile.TarInfo("data.jsonl")
            info.size = len(as_jsonl(ALPACA))
            archive.addfile(info, io.BytesIO(as_jsonl(ALPACA)))
    name = "shards.zip" if packer == "zip" else "shards.tar.gz"
    error = assert_error(await alice.upload(unique(), "alpaca", [(name, sink.getvalue())]), 422, "unsafe_archive")
    assert "folders included" in error["message"] and "LLMCT_ARCHIVE_MAX_MEMBERS" in error["message"]
    assert leftovers(data_dir) == []


async def test_a_zip_holding_one_three_gigabyte_line_is_refused_before_it_is_unpacked(alice, data_dir):
    bomb = zip_of_one_line(3 << 30)  # 3 MB that unpack to one 3 GiB JSON line
    assert len(bomb) < 4 << 20
    with PeakMemory() as memory:
        response = await alice.upload(unique(), "alpaca", [("one-line.zip", bomb)])
    error = assert_error(response, 422, "unsafe_archive", "file")
    assert f"more than {DEFAULTS.archive_max_ratio} times its own size" in error["message"], error
    assert memory.growth_mib < MEMORY_BOUND_MIB, memory.growth_mib
    assert leftovers(data_dir) == []


async def test_a_long_line_in_an_archive_is_refused_while_it_is_unpacked(alice, data_dir):
    """A line that does not compress well passes the ratio: the line cap stops it as it is copied out."""
    line = b'{"instruction": "' + base64.b64encode(os.urandom(13 << 20)) + b'", "output": "y"}\n'
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("data.jsonl", line)
    with PeakMemory() as memory:
        response = await alice.upload(unique(), "alpaca", [("one-line.zip", sink.getvalue())])
    error = assert_error(response, 422, "invalid_dataset", "file")
    assert error["message"].startswith(f"archive entry 'data.jsonl': line 1 is longer than {MAX_LINE_BYTES >> 20} MiB")
    assert memory.growth_mib < MEMORY_BOUND_MIB, memory.growth_mib
    assert leftovers(data_dir) == []


async def test_a_gzip_ratio_bomb_is_refused_before_it_is_unpacked(alice, data_dir):
    bomb = tar_of_repeated_rows(1 << 30)  # 2 MB of gzip holding 1 GiB of valid rows: 500 times its size
    with PeakMemory() as memory:
        response = await alice.upload(unique(), "text", [("rows.tar.gz", bomb)])
    error = assert_error(response, 422, "unsafe_archive", "file")
    assert f"more than {DEFAULTS.archive_max_ratio} times its own size" in error["message"], error
    assert memory.growth_mib < MEMORY_BOUND_MIB, memory.growth_mib
    assert leftovers(data_dir) == []


async def test_an_archive_within_the_ratio_is_unpacked(alice):
    """The limit leaves real archives alone: 16 MiB of repetitive rows (a ratio of 500) is a dataset."""
    dataset = await alice.created(unique(), "text", "rows.tar.gz", tar_of_repeated_rows(16 << 20))
    assert dataset["rows"] == (16 << 20) // 16 and dataset["size_bytes"] == 16 << 20


def _parquet(columns: dict, **options) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, compression="zstd", **options)
    return sink.getvalue()


def _dictionary_bomb(rows: int, value: str):
    """A column of `rows` cells that all name one dictionary value: stored once, materialised once per row."""
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array([value]))


@pytest.mark.parametrize(
    "content, why",
    [
        # 1 KB: 100,000 rows that each hold the one 1 MiB value of the dictionary (100 GB once read).
        (
            lambda: _parquet({"instruction": _dictionary_bomb(100_000, "a" * (1 << 20)), "output": ["y"] * 100_000}),
            "rows hold more than",
        ),
        # 10 KB of zstd pages that decompress to 200 MiB.
        (
            lambda: _parquet({"instruction": ["a" * (1 << 20)] * 200, "output": ["y"] * 200}, use_dictionary=False),
            "pages decompress to more than",
        ),
    ],
)
async def test_a_parquet_bomb_is_refused_before_it_is_read(alice, data_dir, content, why):
    bomb = content()
    assert len(bomb) < 16_000
    with PeakMemory() as memory:
        response = await alice.upload(unique(), "alpaca", [("bomb.parquet", bomb)])
    error = assert_error(response, 422, "invalid_dataset", "file")
    assert why in error["message"] and "decompression bomb" in error["message"], error
    assert memory.growth_mib < MEMORY_BOUND_MIB, memory.growth_mib
    assert leftovers(data_dir) == []


def _zip_with(name: str) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr(name, as_jsonl(ALPACA))
    return sink.getvalue()


def _tar_with_pax_name(name: str) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(as_jsonl(ALPACA))
        archive.addfile(info, io.BytesIO(as_jsonl(ALPACA)))
    return sink.getvalue()


@pytest.mark.parametrize(
    "filename, content, why",
    [
        ("long.zip", _zip_with("n" * 2000 + ".jsonl"), "longer than 1024 characters"),
        ("deep.zip", _zip_with("d/" * 40 + "data.jsonl"), "nested deeper than 32 folders"),
        ("pax.tar.gz", _tar_with_pax_name("p" * 20_000 + ".jsonl"), "extended header of"),
        ("sparse.tar", tar_header("data.jsonl", 0, tarfile.GNUTYPE_SPARSE) + bytes(1024), "is a sparse file"),
    ],
)
async def test_member_metadata_is_bounded(alice, data_dir, filename, content, why):
    error = assert_error(await alice.upload(unique(), "alpaca", [(filename, content)]), 422, "unsafe_archive_entry")
    assert why in error["message"], error
    assert leftovers(data_dir) == []


@pytest.mark.parametrize(
    "filename, content",
    [
        ("long.jsonl", b'{"instruction": "' + b"a" * (MAX_LINE_BYTES + 10) + b'", "output": "y"}\n'),
        ("long.csv", b"instruction,output\n" + b"a" * (MAX_LINE_BYTES + 10) + b",y\n"),
    ],
)
async def test_a_line_longer_than_the_cap_is_refused(alice, data_dir, filename, content):
    error = assert_error(await alice.upload(unique(), "alpaca", [(filename, content)]), 422, "invalid_dataset")
    assert f"line {1 if filename.endswith('jsonl') else 2} is longer than 16 MiB" in error["message"], error
    assert leftovers(data_dir) == []


@pytest.mark.parametrize(
    "filename, content",
    [
        ("deep.jsonl", b'{"instruction": "x", "output": "y", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"),
        ("deep.json", b"[" + b"[" * 100_000),
    ],
)
async def test_rows_nested_too_deep_are_refused(alice, filename, content):
    error = assert_error(await alice.upload(unique(), "alpaca", [(filename, content)]), 422, "invalid_dataset")
    assert "nested too deep" in error["message"], error
