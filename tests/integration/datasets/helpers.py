"""Helpers of the datasets service tests: users with signed tokens, files of every format, the error shape."""

from __future__ import annotations

import csv
import io
import json
import secrets
import tarfile
import zipfile
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
