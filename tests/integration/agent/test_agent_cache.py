"""The agent's cache of job inputs (services/agent/cache.py, `objects` storage mode) against a real nats-server:
a miss fetches, a hit does not, two jobs asking at once cause one transfer, the least recently used entry no job
holds goes first at the bound, a corrupt or truncated copy (in the cache or in the store) is detected by its
sha256 and fetched again, and a missing object fails with a reason that names it."""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from services.common import objects
from services.common.contracts import Buckets, JobInput
from services.common.storage import StorageError
from tests.helpers import unique

from .helpers import Notes, stored_input

pytestmark = pytest.mark.integration

MB = 1024 * 1024


async def test_a_miss_fetches_and_links_a_hit_fetches_nothing(js, make_cache, tmp_path):
    cache, base = make_cache(), tmp_path / "base"
    item = await stored_input(js, tmp_path, "data/u_x/tiny_sft.jsonl", size=40 * MB)
    first = Notes()
    await cache.bring("job-1", [item], base, first)
    placed = base / item.path
    assert objects.file_sha256(placed) == item.sha256 and cache.transfers == 1
    assert placed.samefile(cache.folder / "sha256" / item.sha256), "placed by a hard link, not a copy"
    assert first.saying("fetching tiny_sft.jsonl (40 MB)")
    assert [line for line in first if re.fullmatch(r"fetching tiny_sft\.jsonl: \d+ of 40 MB", line)], first
    assert first.saying("fetched tiny_sft.jsonl: 40 MB in")

    second = Notes()
    await cache.bring("job-2", [item], base, second)
    assert cache.transfers == 1 and second == ["tiny_sft.jsonl: cached (40 MB)"]

    await cache.release("job-1")
    assert placed.exists(), "job-2 still reads it"
    await cache.release("job-2")
    assert not placed.exists(), "a job's links go with it"
    assert (cache.folder / "sha256" / item.sha256).exists(), "the entry stays for the next job"


async def test_two_jobs_asking_at_once_cause_one_transfer(js, make_cache, tmp_path):
    cache, base = make_cache(), tmp_path / "base"
    item = await stored_input(js, tmp_path, "models/tiny/model.safetensors", size=20 * MB)
    notes = Notes(), Notes()
    await asyncio.gather(
        cache.bring("job-a", [item], base, notes[0]),
        cache.bring("job-b", [item], base, notes[1]),
    )
    assert cache.transfers == 1
    assert notes[1].saying("another job is fetching it, waiting")
    assert notes[1].saying("fetched model.safetensors"), "the waiting job sees the fetch's progress too"
    assert cache.entries[item.sha256].holders == {"job-a", "job-b"}


class Reports(list):
    """What a job's progress report is told: (input, bytes of all its inputs there, bytes of all its inputs)."""

    async def __call__(self, name: str, done: int, total: int) -> None:
        self.append((name, done, total))


async def test_progress_counts_the_bytes_of_all_the_jobs_inputs(js, make_cache, tmp_path):
    cache, base = make_cache(), tmp_path / "base"
    cached = await stored_input(js, tmp_path, "data/u/cached.jsonl", size=MB)
    await cache.bring("job-0", [cached], base, Notes())
    big = await stored_input(js, tmp_path, "models/m/model.safetensors", size=40 * MB)
    total = cached.size + big.size
    reports, waiting = Reports(), Reports()

    async def second_job() -> None:
        while not any(name == "model.safetensors" and done > cached.size for name, done, _ in reports):
            await asyncio.sleep(0)  # the first job's fetch of the big one is under way
        await cache.bring("job-2", [big], base, Notes(), waiting)

    await asyncio.gather(cache.bring("job-1", [cached, big], base, Notes(), reports), second_job())
    assert reports[0] == ("cached.jsonl", 0, total) and reports[-1] == ("model.safetensors", total, total)
    assert ("model.safetensors", cached.size, total) in reports, "a cached input counts as there"
    done = [done for _, done, _ in reports]
    assert done == sorted(done) and any(cached.size < d < total for d in done), reports
    assert cache.transfers == 2, "the second job waited for the first one's fetch"
    assert waiting[0] == ("model.safetensors", 0, big.size) and waiting[-1] == ("model.safetensors", big.size, big.size)
    assert len(waiting) > 2, "and was told how far that fetch got"


async def test_the_least_recently_used_entry_no_job_holds_goes_first(js, make_cache, tmp_path):
    cache, base = make_cache(max_bytes=int(2.5 * MB)), tmp_path / "base"
    a, b, c, d, e = [await stored_input(js, tmp_path, f"data/u/{n}.jsonl", size=MB) for n in "abcde"]
    for job, item in (("j1", a), ("j2", b), ("j3", a)):  # a used after b
        await cache.bring(job, [item], base, Notes())
        await cache.release(job)
    await cache.bring("j4", [c], base, Notes())
    assert set(cache.entries) == {a.sha256, c.sha256}, "b, least recently used, went"
    assert not (cache.folder / "sha256" / b.sha256).exists()

    await cache.bring("j5", [a], base, Notes())  # j4 holds c, j5 holds a
    notes = Notes()
    await cache.bring("j6", [d], base, notes)
    assert set(cache.entries) == {a.sha256, c.sha256, d.sha256}, "held entries are never evicted"
    assert notes.saying("cache over its bound")
    await cache.release("j4")
    await cache.bring("j7", [e], base, Notes())
    assert set(cache.entries) == {a.sha256, d.sha256, e.sha256}, "c went once nothing held it"
    assert cache.used_bytes == 3 * MB


async def test_a_copy_changed_in_the_cache_is_fetched_again(js, make_cache, tmp_path):
    cache, base = make_cache(), tmp_path / "base"
    item = await stored_input(js, tmp_path, "data/u/rows.jsonl", size=3 * MB)
    await cache.bring("job-1", [item], base, Notes())
    await cache.release("job-1")
    entry = cache.folder / "sha256" / item.sha256
    entry.chmod(0o644)
    with entry.open("r+b") as f:
        f.truncate(MB)  # truncated on disk
    notes = Notes()
    await cache.bring("job-2", [item], base, notes)
    assert notes.saying("rows.jsonl: the cached copy changed on disk, fetching it again")
    assert cache.transfers == 2 and objects.file_sha256(base / item.path) == item.sha256


async def test_an_object_altered_in_the_store_is_fetched_again_once_then_fails(js, make_cache, tmp_path):
    cache, base = make_cache(), tmp_path / "base"
    item = await stored_input(js, tmp_path, "data/u/rows.jsonl", size=2 * MB)
    other = tmp_path / "other"
    other.write_bytes(os.urandom(2 * MB))
    await objects.put_file(js, item.bucket, item.name, other)  # other bytes under the name the job was given
    notes = Notes()
    with pytest.raises(StorageError) as caught:
        await cache.bring("job-1", [item], base, notes)
    assert caught.value.reason == "input_corrupt"
    assert "data/u/rows.jsonl is corrupt" in caught.value.message and item.sha256[:12] in caught.value.message
    assert cache.transfers == 2, "fetched again once"
    assert notes.saying("fetching it again")
    assert not (base / item.path).exists() and item.sha256 not in cache.entries
    assert list((cache.folder / "incoming").iterdir()) == [], "nothing that looks whole is left"


async def test_an_object_with_a_chunk_missing_fails_as_corrupt(js, make_cache, tmp_path):
    cache, base = make_cache(), tmp_path / "base"
    item = await stored_input(js, tmp_path, "data/u/rows.jsonl", size=3 * MB + 10)
    stream = f"OBJ_{Buckets.DATASETS}"
    await js.delete_msg(stream, (await js.stream_info(stream)).state.last_seq - 2)  # a chunk before the meta
    with pytest.raises(StorageError) as caught:
        await cache.bring("job-1", [item], base, Notes())
    assert caught.value.reason == "input_corrupt" and "rows.jsonl" in caught.value.message


async def test_a_missing_object_fails_with_a_reason_that_names_it(js, make_cache, tmp_path):
    cache = make_cache()
    name = Buckets.dataset_object("ab" * 32)
    item = JobInput(bucket=Buckets.DATASETS, name=name, sha256="ab" * 32, size=10, path="data/u/gone.jsonl")
    with pytest.raises(StorageError) as caught:
        await cache.bring(unique("job"), [item], tmp_path / "base", Notes())
    assert caught.value.reason == "input_missing"
    assert name in caught.value.message and "data/u/gone.jsonl" in caught.value.message


@pytest.mark.parametrize(
    ("path", "sha256"),
    [
        ("../outside.jsonl", "ab" * 32),
        ("/etc/passwd", "ab" * 32),
        ("data/../../x", "ab" * 32),
        ("data/x", "../../x"),
        ("temp/job_other.yaml", "ab" * 32),  # another job's config
        ("cache/sha256/" + "cd" * 32, "ab" * 32),  # a cache entry
        ("data", "ab" * 32),
    ],
)
async def test_an_input_is_never_placed_outside_the_base_or_named_off_its_hash(js, make_cache, tmp_path, path, sha256):
    item = JobInput(bucket=Buckets.DATASETS, name="sha256/x", sha256=sha256, size=1, path=path)
    with pytest.raises(StorageError) as caught:
        await make_cache().bring("job-1", [item], tmp_path / "base", Notes())
    assert caught.value.reason == "bad_config"
    assert not (tmp_path / "outside.jsonl").exists() and not (tmp_path / "x").exists()


async def test_a_link_in_the_base_does_not_lead_an_input_out_of_it(js, make_cache, tmp_path):
    base = tmp_path / "base"
    (base / "data").mkdir(parents=True)
    (base / "data" / "elsewhere").symlink_to(tmp_path)
    item = await stored_input(js, tmp_path, "data/elsewhere/planted.jsonl", size=10)
    with pytest.raises(StorageError, match="outside the storage base"):
        await make_cache().bring("job-1", [item], base, Notes())
    assert not (tmp_path / "planted.jsonl").exists()


async def test_a_file_of_the_same_bytes_already_there_is_used_and_kept(js, make_cache, tmp_path):
    """An agent whose base is the services' own folder: the dataset file there is never replaced or removed."""
    cache, base = make_cache(), tmp_path / "base"
    data = os.urandom(5000)
    item = await stored_input(js, tmp_path, "data/u/own.jsonl", data=data)
    own = base / item.path
    own.parent.mkdir(parents=True)
    own.write_bytes(data)
    inode = own.stat().st_ino
    await cache.bring("job-1", [item], base, Notes())
    await cache.release("job-1")
    assert own.stat().st_ino == inode and own.read_bytes() == data

    stale = await stored_input(js, tmp_path, "data/u/stale.jsonl", size=5000)
    (base / stale.path).write_bytes(b"older bytes")
    await cache.bring("job-2", [stale], base, Notes())
    assert objects.file_sha256(base / stale.path) == stale.sha256, "other bytes there are replaced"
    await cache.release("job-2")
    assert not (base / stale.path).exists()


async def test_a_job_that_stops_waiting_leaves_the_fetch_to_the_others(js, make_cache, tmp_path):
    cache, base = make_cache(), tmp_path / "base"
    item = await stored_input(js, tmp_path, "models/big/model.safetensors", size=64 * MB)
    first_notes, second_notes = Notes(), Notes()
    first = asyncio.create_task(cache.bring("job-a", [item], base, first_notes))
    while not first_notes:  # its fetch started
        await asyncio.sleep(0)
    second = asyncio.create_task(cache.bring("job-b", [item], base, second_notes))
    while not second_notes:  # it waits for the same fetch
        await asyncio.sleep(0)
    first.cancel()  # job-a cancelled while the fetch runs
    heard = len(first_notes)
    await second
    assert first.cancelled() and len(first_notes) == heard, "a job that stopped waiting hears no more"
    assert cache.transfers == 1 and cache.entries[item.sha256].holders == {"job-b"}
    assert second_notes.saying("fetched model.safetensors") and (base / item.path).exists()
