"""An object written into a JetStream Object Store bucket as its bytes arrive (an upload streamed into the store,
issue 15), in the format nats-py's ObjectStore writes, so `objects.describe`, `fetch`, `list_objects` and
`read_range` read it like any other.

nats-py's `ObjectStore.put` needs the whole file first and its name up front (and awaits each chunk's ack before
sending the next). Here the bytes go out as they come: every CHUNK_BYTES to `$O.<bucket>.C.<fresh nuid>`, with at
most WINDOW chunks awaiting their acks (memory stays flat whatever the size), hashed one chunk behind in a thread.
The object exists only once `commit` names it: its record (`$O.<bucket>.M.<base64 name>`, rolled up) is published
last, so a reader never sees a half-written object. Committing a name that already holds the same bytes keeps the
stored object and purges the new chunks (content-addressed datasets are stored once); `abort` purges them, so an
upload refused, failed or given up by its client leaves nothing in the stream. What a process that died while
writing left (chunks no record names) goes with `sweep_orphans`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError
from nats.nuid import NUID

from . import objects
from .objects import CHUNK_BYTES, DIGEST_PREFIX, StoredObject

log = logging.getLogger(__name__)

WINDOW = 8  # chunks published and not yet acknowledged (8 MiB in flight)
ACK_WAIT_S = 30.0  # a chunk the server has not acknowledged in this long: the write fails
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code: the subject's last message is not the one expected


class ObjectWriter:
    """One object being written: `write` its bytes as they come, then `commit(name)` (or `abort`)."""

    def __init__(self, js: JetStreamContext, bucket: str, window: int = WINDOW) -> None:
        self.js = js
        self.bucket = bucket
        self.nuid = NUID().next().decode()
        self.stream = f"OBJ_{bucket}"
        self.subject = f"$O.{bucket}.C.{self.nuid}"
        self.window = window
        self.size = 0
        self.chunks = 0
        self._pieces: list[memoryview] = []  # of the next chunk, joined once it is whole (one copy of each byte)
        self._held = 0
        self._hash = hashlib.sha256()
        self._hashing: asyncio.Future[None] | None = None
        self._acks: collections.deque[asyncio.Future[api.PubAck]] = collections.deque()
        self._sha256: str | None = None
        self._done = False  # committed or given up: nothing more to do
        self.aborted = False

    async def write(self, data: bytes) -> None:
        """Take the next bytes of the object; a chunk goes out each time CHUNK_BYTES are in."""
        if self._sha256 is not None or self._done:
            raise RuntimeError("the object's bytes are all written already")
        view = memoryview(data if isinstance(data, bytes) else bytes(data))  # held until its chunk is whole
        while self._held + len(view) >= CHUNK_BYTES:
            room = CHUNK_BYTES - self._held
            chunk = b"".join([*self._pieces, view[:room]])
            self._pieces, self._held, view = [], 0, view[room:]
            await self._send(chunk)
        if view:
            self._pieces.append(view)
            self._held += len(view)

    async def _send(self, chunk: bytes) -> None:
        loop = asyncio.get_running_loop()
        if self._hashing is not None:
            await self._hashing  # in order: the previous chunk's hash first
        self._hashing = loop.run_in_executor(None, self._hash.update, chunk)
        while len(self._acks) >= self.window:
            await self._acked(self._acks.popleft())
        self._acks.append(await self.js.publish_async(self.subject, chunk))
        self.size += len(chunk)
        self.chunks += 1

    async def _acked(self, ack: asyncio.Future[api.PubAck]) -> None:
        try:
            await asyncio.wait_for(ack, ACK_WAIT_S)
        except TimeoutError as exc:
            raise TimeoutError(f"{self.bucket}: a chunk was not stored within {ACK_WAIT_S:.0f} s") from exc

    async def finish(self) -> str:
        """Send what is left and wait until every chunk is stored; returns the hex sha256 of the bytes written."""
        if self.aborted:
            raise RuntimeError(f"{self.subject}: the object was given up")
        if self._sha256 is None:
            if self._pieces:
                chunk, self._pieces, self._held = b"".join(self._pieces), [], 0
                await self._send(chunk)
            while self._acks:
                await self._acked(self._acks.popleft())
            if self._hashing is not None:
                await self._hashing
            self._sha256 = self._hash.hexdigest()
        return self._sha256

    async def commit(self, name: str) -> StoredObject:
        """Make the bytes written the object `name` (replacing an older object of that name, whose chunks go);
        when `name` holds these very bytes already, that object is kept and the new chunks go instead."""
        sha256 = await self.finish()
        if self._done:
            raise RuntimeError(f"{self.subject}: the object is committed already")
        self._done = True
        try:
            await self._check_chunks()
            while True:
                existing, last_seq = await self._existing(name)
                if existing is not None and objects.sha256_hex(existing.digest) == sha256:
                    await self._purge(self.subject)
                    return StoredObject(self.bucket, name, existing.size or 0, sha256)
                if await self._publish_record(name, sha256, last_seq):
                    break
        except BaseException:
            await self._purge(self.subject)
            raise
        if existing is not None and existing.nuid and existing.nuid != self.nuid:
            await self._purge(f"$O.{self.bucket}.C.{existing.nuid}")
        return StoredObject(self.bucket, name, self.size, sha256)

    async def _check_chunks(self) -> None:
        """Every chunk sent is in the stream (none swept meanwhile): a record never names missing chunks."""
        if await chunk_count(self.js, self.bucket, self.nuid) != self.chunks:
            raise objects.ObjectCorrupt(f"{self.subject}: chunks went missing before the object was named")

    async def _existing(self, name: str) -> tuple[api.ObjectInfo | None, int]:
        """The live object of that name, if any, and its latest record's stream sequence (0: it never had one)."""
        info, seq = await objects.last_record(self.js, self.bucket, name)
        return (None if info is None or info.deleted else info), seq

    async def _publish_record(self, name: str, sha256: str, last_seq: int) -> bool:
        """Publish the object's record, if its name's last record is still `last_seq`: False when another writer
        published one meanwhile (the caller looks again)."""
        info = api.ObjectInfo(
            name=name,
            bucket=self.bucket,
            nuid=self.nuid,
            size=self.size,
            chunks=self.chunks,
            mtime=datetime.now(UTC).isoformat(),
            digest=DIGEST_PREFIX + base64.urlsafe_b64encode(bytes.fromhex(sha256)).decode(),
            options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES),
        )
        headers = {
            api.Header.ROLLUP.value: "sub",  # the name's older records go
            api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(last_seq),
        }
        try:
            await self.js.publish(
                objects.record_subject(self.bucket, name), json.dumps(info.as_dict()).encode(), headers=headers
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def abort(self) -> None:
        """Give the object up: its chunks are purged once those in flight are stored (so none lands after)."""
        if self._done:
            return
        self._done = self.aborted = True
        self._pieces, self._held = [], 0
        if self._acks:
            await asyncio.wait(self._acks, timeout=ACK_WAIT_S)
            for ack in self._acks:  # retrieved: a failed one is not reported as never awaited
                if ack.done() and not ack.cancelled():
                    ack.exception()
        self._acks.clear()
        if self._hashing is not None:
            with contextlib.suppress(Exception):
                await self._hashing
        await self._purge(self.subject)

    async def _purge(self, subject: str) -> None:
        try:
            await self.js.purge_stream(self.stream, subject=subject)
        except Exception as exc:  # noqa: BLE001 - the caller's outcome stands; the chunks are only orphaned
            log.warning("chunks %s of %s could not be purged: %s", subject, self.stream, exc)


async def chunk_count(js: JetStreamContext, bucket: str, nuid: str) -> int:
    """How many chunks the bucket's stream holds on `$O.<bucket>.C.<nuid>`."""
    subject = f"$O.{bucket}.C.{nuid}"
    info = await js.stream_info(f"OBJ_{bucket}", subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def sweep_orphans(js: JetStreamContext, bucket: str, older_than_s: float) -> int:
    """Purge the chunks no object's record names whose last one came more than `older_than_s` ago: what a writer
    in a process that died left (a live writer sends all the time, and names its chunks or purges them). Returns
    how many objects' chunks went."""
    stream = f"OBJ_{bucket}"
    try:
        info = await js.stream_info(stream, subjects_filter=f"$O.{bucket}.C.>")
    except NotFoundError:  # no such bucket
        return 0
    try:
        named = {i.nuid for i in await (await js.object_store(bucket)).list(ignore_deletes=True)}
    except NotFoundError:  # no records at all: every chunk is unnamed
        named = set()
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    swept = 0
    for subject in info.state.subjects or {}:
        if subject.rsplit(".", 1)[-1] in named:
            continue
        with contextlib.suppress(NotFoundError):
            last = await js.get_last_msg(stream, subject)
            if last.time is not None and last.time < cutoff:
                await js.purge_stream(stream, subject=subject)
                swept += 1
    return swept
