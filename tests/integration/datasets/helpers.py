"""Helpers of the datasets service tests: users with signed tokens, files of every format, the error shape."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import struct
import tarfile
import threading
import zipfile
import zlib
from pathlib import Path

from services.auth.store import insert_user
from services.common.security import issue_token, new_id
from tests.helpers import assert_error  # noqa: F401 - re-exported for the tests here

ALPACA = [{"instruction": f"Say {i}", "input": "" if i % 2 else "please", "output": f"{i}"} for i in range(1, 9)]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": f"hello {i}"}]}
    for i in range(1, 6)
]
TEXT = [{"text": f"document number {i}"} for i in range(1, 7)]
PAIRWISE = [{"instruction": f"Pick {i}", "input": "", "chosen": "good", "rejected": "bad"} for i in range(1, 5)]


def unique(prefix: str = "ds") -> str:
    """A name no other test uses (the database lives for the whole session)."""
    return f"{prefix}-{secrets.token_hex(4)}"


def as_json(rows) -> bytes:
    return json.dumps(rows).encode()


def as_jsonl(rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def as_csv(rows) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def as_parquet(rows) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def as_zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return sink.getvalue()


def as_tar(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return sink.getvalue()


async def make_user(pool, settings, role: str = "user") -> tuple[str, dict]:
    """A user row and headers with a token signed as auth would (no argon2 login needed here)."""
    username = unique("user")
    row = await insert_user(pool, user_id=new_id("usr"), username=username, password_hash="!test", role=role)
    token, _, _ = issue_token(settings.secret_key, user_id=row["id"], username=username, role=role, ttl_s=3600)
    return row["id"], {"Authorization": f"Bearer {token}"}


def info_json(data_dir: Path) -> dict:
    return json.loads((data_dir / "dataset_info.json").read_text())


def leftovers(data_dir: Path) -> list[str]:
    """Anything an upload left in the incoming folder."""
    incoming = data_dir / ".incoming"
    return sorted(p.name for p in incoming.iterdir()) if incoming.exists() else []


class Api:
    """The datasets API as one caller sees it."""

    def __init__(self, client, headers: dict | None = None):
        self.client = client
        self.headers = headers or {}

    async def upload(self, name: str | None, fmt: str | None, files: list[tuple[str, bytes]] | None, **fields):
        data = {k: v for k, v in {"name": name, "format": fmt, **fields}.items() if v is not None}
        for key in ("columns", "tags"):
            if isinstance(data.get(key), dict):
                data[key] = json.dumps(data[key])
        multipart = [("file", (filename, content, "application/octet-stream")) for filename, content in files or []]
        return await self.client.post("/api/datasets/upload", data=data, files=multipart or None, headers=self.headers)

    async def created(self, name: str, fmt: str, filename: str, content: bytes, **fields) -> dict:
        response = await self.upload(name, fmt, [(filename, content)], **fields)
        assert response.status_code == 201, response.text
        return response.json()

    async def get(self, path: str = "", **params):
        return await self.client.get(f"/api/datasets{path}", params=params, headers=self.headers)

    async def patch(self, dataset_id: str, **body):
        return await self.client.patch(f"/api/datasets/{dataset_id}", json=body, headers=self.headers)

    async def delete(self, dataset_id: str):
        return await self.client.delete(f"/api/datasets/{dataset_id}", headers=self.headers)

    async def register(self, **body):
        return await self.client.post("/api/datasets/register", json=body, headers=self.headers)


# --- bombs: archives that expand a thousandfold, built as streams (nothing is compressed twice) ---------------


def _deflated(data: bytes) -> bytes:
    """`data` as raw deflate blocks that refer to nothing before them (a full flush resets the window)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


def deflate_repeated(head: bytes, unit: bytes, times: int, tail: bytes) -> tuple[bytes, int, int]:
    """Raw deflate of head + unit * times + tail, compressing `unit` once: (data, crc32, expanded size)."""
    crc = zlib.crc32(head)
    for _ in range(times):
        crc = zlib.crc32(unit, crc)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = _deflated(head) + _deflated(unit) * times + end.compress(tail) + end.flush()
    return data, zlib.crc32(tail, crc), len(head) + len(unit) * times + len(tail)


def gzip_repeated(head: bytes, unit: bytes, times: int, tail: bytes) -> bytes:
    """A gzip file of head + unit * times + tail (valid to its trailer's CRC and size)."""
    data, crc, size = deflate_repeated(head, unit, times, tail)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + data + struct.pack("<II", crc, size & 0xFFFFFFFF)


def tar_header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(fmt)


def tar_of_empty_folders(count: int, distinct: int = 2048) -> bytes:
    """A .tar.gz listing `count` empty folders (`distinct` names, repeated: a tar may list a name again)."""
    unit = b"".join(tar_header(f"folder-{i:07d}", kind=tarfile.DIRTYPE) for i in range(distinct))
    return gzip_repeated(b"", unit, count // distinct, bytes(2 * tarfile.BLOCKSIZE))


def tar_of_repeated_rows(size: int, row: bytes = b'{"text": "aaa"}\n') -> bytes:
    """A .tar.gz holding one data.jsonl of `size` bytes of one short row again and again (size: MiB multiple)."""
    unit = row * ((1 << 20) // len(row))
    assert len(unit) == 1 << 20 and size % (1 << 20) == 0
    header = tar_header("data.jsonl", size)
    return gzip_repeated(header, unit, size >> 20, bytes(2 * tarfile.BLOCKSIZE))


def zip_of_one_line(size: int, name: str = "data.jsonl") -> bytes:
    """A zip holding one JSON line of about `size` bytes (under 4 GiB: no zip64), deflated a thousandfold."""
    head, tail = b'{"instruction": "', b'", "output": "y"}\n'
    data, crc, expanded = deflate_repeated(head, b"a" * (1 << 20), size >> 20, tail)
    raw = name.encode()
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), expanded, len(raw), 0)
    central = struct.pack(
        "<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), expanded, len(raw), 0, 0, 0, 0, 0, 0
    )
    offset = len(local) + len(raw) + len(data)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(raw), offset, 0)
    return local + raw + data + central + raw + end


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """How much more resident memory this process (the service under test runs in it) held at its peak while
    the block ran than before it, sampled every few milliseconds."""

    def __enter__(self) -> PeakMemory:
        self.before = self.peak = _rss()
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._watcher.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / (1 << 20)
