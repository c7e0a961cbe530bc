"""Files in JetStream Object Store buckets (issue 15, first step: services/common/objects.py) against a real
nats-server: a file goes in and comes back byte for byte in chunks; a missing object and an object whose bytes were
altered in the store are told apart, and neither leaves a file that looks whole."""

from __future__ import annotations

import hashlib
import os

import pytest

from services.common import objects
from services.common.contracts import Buckets
from tests.helpers import unique

pytestmark = pytest.mark.integration

SIZE = 5 * objects.CHUNK_BYTES + 12_345  # six chunks, the last one short


async def test_a_file_goes_in_and_comes_back_byte_for_byte(js, tmp_path):
    source = tmp_path / "adapter_model.safetensors"
    source.write_bytes(os.urandom(SIZE))
    name = Buckets.job_object(unique("job"), "adapter_model.safetensors")

    stored = await objects.put_file(js, Buckets.OUTPUTS, name, source)
    assert (stored.size, stored.sha256) == (SIZE, hashlib.sha256(source.read_bytes()).hexdigest())
    assert await objects.describe(js, Buckets.OUTPUTS, name) == stored
    await objects.ensure_buckets(js)  # again: the buckets and what they hold are kept

    target = tmp_path / "cache" / "adapter_model.safetensors"
    fetched = await objects.fetch(js, Buckets.OUTPUTS, name, target)
    assert fetched == stored and objects.file_sha256(target) == stored.sha256
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name], "no partial file left behind"
    assert await objects.fetch(js, Buckets.OUTPUTS, name, target) == stored, "fetched again over the old copy"

    empty, empty_name = tmp_path / "empty.json", Buckets.job_object(unique("job"), "empty.json")
    empty.write_bytes(b"")
    await objects.put_file(js, Buckets.OUTPUTS, empty_name, empty)
    assert (await objects.fetch(js, Buckets.OUTPUTS, empty_name, tmp_path / "cache" / "empty.json")).size == 0
    assert (tmp_path / "cache" / "empty.json").read_bytes() == b""


async def test_a_missing_object_and_an_altered_one_are_told_apart(js, tmp_path):
    with pytest.raises(objects.ObjectMissing, match="no object"):
        await objects.fetch(js, Buckets.DATASETS, Buckets.dataset_object("0" * 64), tmp_path / "absent")
    assert not (tmp_path / "absent").exists()

    source = tmp_path / "rows.jsonl"
    source.write_bytes(os.urandom(SIZE))
    name = Buckets.dataset_object(objects.file_sha256(source))
    await objects.put_file(js, Buckets.DATASETS, name, source)
    # The chunks are the six messages before the object's meta message (the stream's last): drop a middle one.
    stream = f"OBJ_{Buckets.DATASETS}"
    last = (await js.stream_info(stream)).state.last_seq
    await js.delete_msg(stream, last - 3)

    target = tmp_path / "cache" / "rows.jsonl"
    with pytest.raises(objects.ObjectCorrupt, match="do not match"):
        await objects.fetch(js, Buckets.DATASETS, name, target)
    assert not target.exists() and list(target.parent.iterdir()) == [], "nothing that looks whole is left"
