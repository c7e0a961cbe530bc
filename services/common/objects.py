"""Files in JetStream Object Store buckets (issue 15's `objects` storage mode): put a file, get it back into a
file, each streamed in chunks (memory stays flat whatever the size) and checked by its sha256.

`fetch` writes into a temporary file beside the target and moves it into place only when the sha256 of what arrived
matches the object's digest, so a truncated or altered object never leaves a file that looks whole. Bucket names and
object names are the contracts' (`contracts.Buckets`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    ServiceUnavailableError,
)
from nats.js.object_store import OBJ_DEFAULT_CHUNK_SIZE

from .bus import set_replicas
from .contracts import Buckets

T = TypeVar("T")

CHUNK_BYTES = 1024 * 1024  # one message per MiB: NATS's default max payload, which a chunk (sent without headers) fits
DIGEST_PREFIX = "SHA-256="


class ObjectMissing(LookupError):
    """The bucket has no such object (or no such bucket): a job that needs it cannot run."""


class ObjectCorrupt(ValueError):
    """An object's bytes do not match its digest (truncated or altered in the store)."""


@dataclass(frozen=True)
class StoredObject:
    """What the store says of an object."""

    bucket: str
    name: str
    size: int
    sha256: str  # hex


def sha256_hex(digest: str | None) -> str:
    """The hex sha256 of an object's digest as the store keeps it (`SHA-256=<urlsafe base64>`)."""
    if not digest or not digest.upper().startswith(DIGEST_PREFIX):
        raise ObjectCorrupt(f"no sha256 digest: {digest!r}")
    return base64.urlsafe_b64decode(digest[len(DIGEST_PREFIX) :]).hex()


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


async def ensure_buckets(js: JetStreamContext, replicas: int = 1) -> None:
    """Create every bucket the contracts name with `replicas` copies; an existing one keeps what it holds and gets
    `replicas` copies when it had another number (a cluster grown from one node)."""
    for bucket in Buckets.ALL:
        try:
            await js.object_store(bucket)
        except BucketNotFoundError:
            with contextlib.suppress(BadRequestError):  # another service created it first
                await js.create_object_store(bucket, config=api.ObjectStoreConfig(bucket=bucket, replicas=replicas))
        await set_replicas(js, f"OBJ_{bucket}", replicas)


async def put_file(js: JetStreamContext, bucket: str, name: str, path: Path) -> StoredObject:
    """Store `path` as `name` in `bucket` (replacing an older object of that name), streamed in chunks."""
    store = await js.object_store(bucket)
    meta = api.ObjectMeta(name=name, options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES))
    with path.open("rb") as f:
        info = await store.put(name, f, meta=meta)
    return _stored(bucket, name, info)


# A cluster that lost a node elects new stream leaders within seconds; meanwhile JetStream's API times out or
# answers 503. Reads ride that out for this long (a put is retried by its caller: it may have half happened).
ELECTION_S = 30.0
_ELECTING = (NatsTimeoutError, NoRespondersError, ServiceUnavailableError)


async def _riding_out_elections(call: Callable[[], Awaitable[T]]) -> T:
    deadline = time.monotonic() + ELECTION_S
    while True:
        try:
            return await call()
        except _ELECTING:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _info(js: JetStreamContext, bucket: str, name: str) -> api.ObjectInfo:
    """The store's record of an object; ObjectMissing when there is none (or no such bucket)."""

    async def info() -> api.ObjectInfo:
        return await (await js.object_store(bucket)).get_info(name)

    try:
        return await _riding_out_elections(info)
    except (BucketNotFoundError, ObjectNotFoundError, NotFoundError) as exc:
        raise ObjectMissing(f"no object {name!r} in {bucket}") from exc


def _stored(bucket: str, name: str, info: api.ObjectInfo) -> StoredObject:
    return StoredObject(bucket=bucket, name=name, size=info.size or 0, sha256=sha256_hex(info.digest))


async def describe(js: JetStreamContext, bucket: str, name: str) -> StoredObject:
    """What the store says of an object; ObjectMissing when there is none."""
    return _stored(bucket, name, await _info(js, bucket, name))


# (bytes written so far, the object's size), after each batch of chunks; awaited before the next batch is taken.
Progress = Callable[[int, int], Awaitable[None]]


async def fetch(
    js: JetStreamContext, bucket: str, name: str, target: Path, progress: Progress | None = None
) -> StoredObject:
    """Write the object into `target`, streamed, checked by its digest: ObjectMissing when there is none,
    ObjectCorrupt when its bytes do not match (nothing is left at `target` then). `progress`, when given, is told
    how far the transfer is after each batch.

    Not nats-py's ObjectStore.get: it takes chunks one by one from a push consumer and writes each through the thread
    pool (0.15 of a file copy, docs/benchmarks.md §8). Here a pull consumer that acks nothing takes FETCH_BATCH
    chunks at a time, written by one thread call per batch; memory stays at about FETCH_BATCH chunks."""
    info = await _info(js, bucket, name)
    found = _stored(bucket, name, info)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part-{os.getpid()}")
    try:
        with partial.open("wb") as f:
            digest = await _pull_chunks(js, bucket, info.nuid or "", found.size, f, progress)
        if digest != found.sha256:
            raise ObjectCorrupt(f"{bucket}/{name}: its bytes do not match its sha256")
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return found


FETCH_BATCH = 16  # chunks per pull (16 MiB in flight)
FETCH_WAIT_S = 10.0  # a pull that brings nothing for this long: the object's chunks are gone


async def _pull_chunks(
    js: JetStreamContext, bucket: str, nuid: str, size: int, out, progress: Progress | None = None
) -> str:
    """Write an object's chunks into `out` in order; returns the hex sha256 of what was written. ObjectCorrupt
    when chunks are missing or more bytes come than the object says it holds."""
    h = hashlib.sha256()
    if size == 0:
        return h.hexdigest()
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, inactive_threshold=FETCH_WAIT_S * 3
    )
    sub = await _riding_out_elections(
        lambda: js.pull_subscribe(f"$O.{bucket}.C.{nuid}", durable=None, stream=f"OBJ_{bucket}", config=config)
    )
    written = 0
    try:
        while True:
            try:
                msgs = await sub.fetch(batch=FETCH_BATCH, timeout=FETCH_WAIT_S)
            except TimeoutError as exc:
                raise ObjectCorrupt(f"{bucket}: chunks missing after {written} of {size} bytes") from exc
            blocks = [m.data for m in msgs]
            for block in blocks:
                h.update(block)
            await asyncio.to_thread(out.writelines, blocks)
            written += sum(map(len, blocks))
            if written > size:
                raise ObjectCorrupt(f"{bucket}: more than the {size} bytes the object holds")
            if progress is not None:
                await progress(written, size)
            if msgs[-1].metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    if written != size:
        raise ObjectCorrupt(f"{bucket}: {written} of {size} bytes, its bytes do not match its sha256")
    return h.hexdigest()


async def delete(js: JetStreamContext, bucket: str, name: str) -> bool:
    """Delete an object (its record marked deleted, its chunks purged); False when there was none."""
    try:
        await (await js.object_store(bucket)).delete(name)
    except (BucketNotFoundError, ObjectNotFoundError, NotFoundError):
        return False
    return True


async def list_objects(js: JetStreamContext, bucket: str, prefix: str = "") -> list[StoredObject]:
    """The objects of `bucket` whose names start with `prefix` (deleted ones left out), by name."""
    try:
        infos = await (await js.object_store(bucket)).list(ignore_deletes=True)
    except (BucketNotFoundError, NotFoundError):  # no bucket, or nothing in it
        return []
    found = [_stored(bucket, i.name, i) for i in infos if i.name.startswith(prefix) and not i.deleted]
    return sorted(found, key=lambda o: o.name)


# --- byte ranges of an object (a resumed download served out of the store) -------------------------------------


async def read_range(
    js: JetStreamContext, bucket: str, name: str, start: int, end: int, sha256: str | None = None
) -> AsyncIterator[bytes]:
    """Bytes `start` to `end` (both included, as Content-Range counts them) of an object, streamed, reading only
    the chunks that hold them: ObjectMissing when there is no such object, ValueError for a range outside it,
    ObjectCorrupt when chunks are missing or not of the object's chunk size, or when `sha256` is given and the
    object is no longer that one (replaced since its size was announced). A part of an object cannot be checked
    against its sha256; a whole read (fetch) is.

    Chunk i of an object is the i-th message on `$O.<bucket>.C.<nuid>`; its stream sequence is found by how many of
    the object's chunks a consumer starting at a sequence still has pending (_chunk_seq), so nothing before it is
    read."""
    info, record_seq = await _record(js, bucket, name)
    size, chunks = info.size or 0, info.chunks or 0
    if sha256 is not None and sha256_hex(info.digest) != sha256:
        raise ObjectCorrupt(f"{bucket}/{name} was replaced: it is no longer the object asked for")
    if not 0 <= start <= end < size:
        raise ValueError(f"bytes {start}-{end} are not inside {bucket}/{name} ({size} bytes)")
    chunk = (info.options.max_chunk_size if info.options else None) or OBJ_DEFAULT_CHUNK_SIZE
    first, last = start // chunk, end // chunk
    stream, subject = f"OBJ_{bucket}", f"$O.{bucket}.C.{info.nuid}"
    seq = await _chunk_seq(js, stream, subject, first, chunks, record_seq)
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=seq,
        inactive_threshold=FETCH_WAIT_S * 3,
    )
    sub = await js.pull_subscribe(subject, durable=None, stream=stream, config=config)
    index, skip, left = first, start - first * chunk, end - start + 1
    try:
        while index <= last:
            try:
                msgs = await sub.fetch(batch=min(FETCH_BATCH, last - index + 1), timeout=FETCH_WAIT_S)
            except TimeoutError as exc:
                raise ObjectCorrupt(f"{bucket}/{name}: chunk {index} of {chunks} missing") from exc
            for msg in msgs:
                expected = chunk if index < chunks - 1 else size - index * chunk
                if len(msg.data) != expected:
                    raise ObjectCorrupt(f"{bucket}/{name}: chunk {index} holds {len(msg.data)} bytes, not {expected}")
                data = msg.data[skip : skip + left]
                skip, left, index = 0, left - len(data), index + 1
                yield data
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def record_subject(bucket: str, name: str) -> str:
    """The subject of an object's record (nats-py's `$O.<bucket>.M.<urlsafe base64 of the name>`)."""
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


async def last_record(js: JetStreamContext, bucket: str, name: str) -> tuple[api.ObjectInfo | None, int]:
    """An object's latest record (a deleted one too) and its stream sequence; (None, 0) when it never had one."""
    try:
        msg = await js.get_last_msg(f"OBJ_{bucket}", record_subject(bucket, name))
    except NotFoundError:
        return None, 0
    return api.ObjectInfo.from_response(json.loads(msg.data or b"{}")), msg.seq or 0


async def _record(js: JetStreamContext, bucket: str, name: str) -> tuple[api.ObjectInfo, int]:
    """An object's record and its stream sequence (written after its chunks); ObjectMissing when there is none."""
    info, seq = await last_record(js, bucket, name)
    if info is None or info.deleted or not seq:
        raise ObjectMissing(f"no object {name!r} in {bucket}")
    return info, seq


async def _chunk_seq(js: JetStreamContext, stream: str, subject: str, index: int, chunks: int, record_seq: int) -> int:
    """A stream sequence from which the first of `subject`'s messages is chunk `index`: where exactly `chunks -
    index` of them are still ahead. One probe when the chunks were written back to back (one writer), else a
    binary search over the sequences before the object's record (chunks of writers at work at once interleave)."""
    ahead = chunks - index
    guess = record_seq - ahead
    if guess >= 1 and await _pending_from(js, stream, subject, guess) == ahead:
        return guess
    low, high = 1, record_seq  # pending_from(low) == chunks >= ahead; the largest such sequence is chunk index's
    while low < high:
        middle = (low + high + 1) // 2
        if await _pending_from(js, stream, subject, middle) >= ahead:
            low = middle
        else:
            high = middle - 1
    return low


async def _pending_from(js: JetStreamContext, stream: str, subject: str, seq: int) -> int:
    """How many messages on `subject` a stream holds from `seq` on (a consumer's pending count; nothing is read)."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=seq,
        filter_subject=subject,
        inactive_threshold=FETCH_WAIT_S,
        mem_storage=True,
    )
    info = await js.add_consumer(stream, config)
    with contextlib.suppress(Exception):
        await js.delete_consumer(stream, info.name)
    return info.num_pending or 0
