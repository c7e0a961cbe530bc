"""What the agent's objects-mode tests share: inputs put in the store the way the control plane would."""

from __future__ import annotations

import os
from pathlib import Path

from services.common import objects
from services.common.contracts import Buckets, JobInput


async def stored_input(js, tmp_path: Path, path: str, size: int = 200_000, data: bytes | None = None) -> JobInput:
    """A dataset file in DATASETS by its sha256, as a job's input read at `path` (relative to the storage base)."""
    source = tmp_path / f"source-{os.urandom(4).hex()}"
    source.write_bytes(os.urandom(size) if data is None else data)
    sha256 = objects.file_sha256(source)
    stored = await objects.put_file(js, Buckets.DATASETS, Buckets.dataset_object(sha256), source)
    return JobInput(bucket=Buckets.DATASETS, name=stored.name, sha256=sha256, size=stored.size, path=path)


class Notes(list):
    """The lines a job's log would get."""

    def __call__(self, text: str) -> None:
        self.append(text)

    def saying(self, words: str) -> list[str]:
        return [line for line in self if words in line]
