"""The agent's cache of job inputs (`objects` storage mode): objects pulled from their buckets before the engine
starts, kept by content (sha256) and shared between jobs, and placed where each job reads them.

- An entry is the file `<folder>/sha256/<hex>`, read-only, whole: a fetch lands in `incoming/` and moves in only
  when its bytes hash to the sha256 the dispatch names (objects.fetch checks the store's digest on the way; an
  object altered in the store hashes to something else). A corrupt fetch is tried once more, then the job fails
  `input_corrupt`; a missing object fails it `input_missing`, naming the object.
- An entry whose file changed on disk since it was checked (size or mtime) is fetched again.
- Never fetched twice at once: a second job asking for an object being fetched waits for that fetch (one flight
  per sha256), and sees its progress in its own log and its own progress report (`bring`'s `progress`: bytes of
  all the job's inputs, a cached one counted as there).
- Bounded: before a fetch, the least recently used entries no running job holds go until the new one fits
  (`max_bytes`); when every entry is held the cache goes over its bound and says so.
- Placed by hard link at the job's path under the storage base (a copy when the cache is on another filesystem);
  a job's links go when it ends (unless another running job placed the same path), so an evicted entry frees its
  space.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nats.js import JetStreamContext

from services.common import objects
from services.common.contracts import JobInput
from services.common.storage import Fetching, Note, StorageError, relative_path

from .placing import link_beside, same_bytes_elsewhere

log = logging.getLogger(__name__)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
PROGRESS_EVERY_S = 2.0
MB = 1024 * 1024


def megabytes(done: int, total: int) -> str:
    """ "120 of 300 MB" (one decimal under 10 MB)."""
    digits = 1 if total < 10 * MB else 0
    return f"{done / MB:.{digits}f} of {total / MB:.{digits}f} MB"


def size_text(total: int) -> str:
    """A size, as `300 MB` (one decimal under 10 MB)."""
    return megabytes(total, total).split(" of ")[1]


@dataclass
class Entry:
    sha256: str
    size: int
    mtime_ns: int  # as checked: a change on disk means the file is no longer what was verified
    used: float  # last use (time.time()), kept in the file's atime across agent restarts
    holders: set[str] = field(default_factory=set)  # running jobs that read it


Watch = Callable[[int], Awaitable[None]]  # a waiting job told the bytes of the object fetched so far


@dataclass
class Flight:
    """One fetch under way, and the jobs waiting for it (each told its progress)."""

    task: asyncio.Task[Entry]
    notes: dict[str, Note]
    watches: dict[str, Watch] = field(default_factory=dict)


class Cache:
    """Inputs of this agent's jobs, by content; see the module's docstring."""

    def __init__(
        self,
        js: JetStreamContext,
        folder: Path,
        max_bytes: int,
        *,
        progress_every_s: float = PROGRESS_EVERY_S,
    ):
        self.js = js
        self.folder = folder
        self.max_bytes = max_bytes
        self.progress_every_s = progress_every_s
        self.entries: dict[str, Entry] = {}
        self.transfers = 0  # objects fetched since start (a hit or a wait for another's fetch is none)
        self._flights: dict[str, Flight] = {}
        self._reserved = 0  # bytes of fetches under way
        self._placed: dict[Path, dict[str, str]] = {}  # a job's path -> {job id: sha256 placed there}
        self._loaded = False

    # --- what jobs ask ----------------------------------------------------------------------------------

    async def bring(
        self, job_id: str, inputs: Iterable[JobInput], base: Path, note: Note, progress: Fetching | None = None
    ) -> None:
        """Every input present at its path under `base`, held for `job_id` until `release`; StorageError
        (input_missing, input_corrupt, bad_config) when one cannot be. `progress` is told how far, in bytes of all
        the inputs, as each one starts, after each batch of a fetch, and once all are there."""
        items = list(inputs)
        total, before = sum(max(item.size, 0) for item in items), 0
        for item in items:
            target = relative_path(base, item.path)
            if not SHA256.match(item.sha256) or item.size < 0:
                raise StorageError("bad_config", f"input {item.path}: {item.sha256!r} is not a sha256")
            watch = None if progress is None else _watch(progress, Path(item.path).name, before, total)
            if watch is not None:
                await watch(0)
            entry = await self.acquire(job_id, item, note, watch)
            before += item.size
            await self._place(job_id, entry, target)
        if progress is not None and items:
            await progress(Path(items[-1].path).name, total, total)

    async def acquire(self, job_id: str, item: JobInput, note: Note, watch: Watch | None = None) -> Entry:
        """The entry of `item`, held for `job_id`: from the cache, from another job's fetch, or fetched now
        (`watch` told its bytes as they arrive)."""
        self._load()
        label = Path(item.path).name
        for attempt in (1, 2):  # a corrupt object is fetched once more
            entry = self.entries.get(item.sha256)
            if entry is not None and not self._intact(entry, item):
                note(f"{label}: the cached copy changed on disk, fetching it again")
                self._drop(entry)
                entry = None
            if entry is not None:
                entry.holders.add(job_id)
                self._touch(entry)
                note(f"{label}: cached ({size_text(entry.size)})")
                return entry
            flight = self._flights.get(item.sha256)
            if flight is None:
                flight = Flight(task=asyncio.create_task(self._fetch(item)), notes={job_id: note})
                self._flights[item.sha256] = flight
                flight.task.add_done_callback(lambda _, sha=item.sha256: self._flights.pop(sha, None))
            else:
                note(f"{label}: another job is fetching it, waiting")
                flight.notes[job_id] = note
            if watch is not None:
                flight.watches[job_id] = watch
            try:
                entry = await asyncio.shield(flight.task)
            except StorageError as exc:
                if exc.reason != "input_corrupt" or attempt == 2:
                    raise
                note(f"{exc.message}: fetching it again")
                continue
            finally:  # a job that stopped waiting (cancelled) hears no more of the fetch: its log may be closed
                flight.notes.pop(job_id, None)
                flight.watches.pop(job_id, None)
            entry.holders.add(job_id)  # the fetch held it for every waiting job; said again after a drop
            return entry
        raise AssertionError("unreachable")

    async def release(self, job_id: str) -> None:
        """`job_id` ended: it holds nothing, and its links go (unless another running job placed the same
        path)."""
        for entry in self.entries.values():
            entry.holders.discard(job_id)
        for path, jobs in list(self._placed.items()):
            if jobs.pop(job_id, None) is not None and not jobs:
                del self._placed[path]
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    @property
    def used_bytes(self) -> int:
        return sum(entry.size for entry in self.entries.values())

    # --- the store ---------------------------------------------------------------------------------------

    def _path(self, sha256: str) -> Path:
        return self.folder / "sha256" / sha256

    def _load(self) -> None:
        """The entries on disk (an agent restart keeps them), their last use from their atime."""
        if self._loaded:
            return
        self._loaded = True
        (self.folder / "sha256").mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.folder / "incoming", ignore_errors=True)  # fetches a stopped agent left unfinished
        for path in (self.folder / "sha256").iterdir():
            if SHA256.match(path.name) and path.is_file() and not path.is_symlink():
                stat = path.stat()
                self.entries[path.name] = Entry(path.name, stat.st_size, stat.st_mtime_ns, stat.st_atime)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()

    def _intact(self, entry: Entry, item: JobInput) -> bool:
        try:
            stat = self._path(entry.sha256).stat()
        except FileNotFoundError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (entry.size, entry.mtime_ns) and entry.size == item.size

    def _touch(self, entry: Entry) -> None:
        entry.used = time.time()
        with contextlib.suppress(OSError):
            os.utime(self._path(entry.sha256), ns=(time.time_ns(), entry.mtime_ns))

    def _drop(self, entry: Entry) -> None:
        self.entries.pop(entry.sha256, None)
        with contextlib.suppress(FileNotFoundError):
            self._path(entry.sha256).unlink()

    def _make_room(self, size: int) -> None:
        """Drop the least recently used entries no running job holds until `size` more bytes fit."""
        free = sorted((e for e in self.entries.values() if not e.holders), key=lambda e: e.used)
        while free and self.used_bytes + self._reserved + size > self.max_bytes:
            entry = free.pop(0)
            log.info("cache: %s out (%d bytes, least recently used)", entry.sha256[:12], entry.size)
            self._drop(entry)

    async def _fetch(self, item: JobInput) -> Entry:
        """Fetch `item` into the cache (one flight: its waiting jobs are told its progress and hold it)."""
        label = Path(item.path).name

        def tell(text: str) -> None:
            for note in list(self._flights[item.sha256].notes.values()):
                try:
                    note(text)
                except ValueError:  # a log closed meanwhile: the fetch goes on for the others
                    log.debug("a job's log closed while %s was fetched", label)

        self._make_room(item.size)
        if self.used_bytes + self._reserved + item.size > self.max_bytes:
            tell(f"cache over its bound ({self.max_bytes / MB:.0f} MB): running jobs hold what it has")
        incoming = self.folder / "incoming" / item.sha256
        self._reserved += item.size
        started = last = time.monotonic()
        tell(f"fetching {label} ({size_text(item.size)})")

        async def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if done < total and now - last >= self.progress_every_s:
                last = now
                tell(f"fetching {label}: {megabytes(done, total)}")
            for job_id, watch in list(self._flights[item.sha256].watches.items()):
                try:
                    await watch(done)
                except Exception:  # one job's report failing stops no fetch the others wait for
                    log.warning("job %s: the progress of fetching %s was not reported", job_id, label, exc_info=True)

        try:
            found = await objects.fetch(self.js, item.bucket, item.name, incoming, progress)
        except objects.ObjectMissing as exc:
            raise StorageError("input_missing", f"input {item.path} is missing: {exc}") from exc
        except objects.ObjectCorrupt as exc:
            raise StorageError("input_corrupt", f"input {item.path} is corrupt ({exc})") from exc
        finally:
            self._reserved -= item.size
        self.transfers += 1
        if (found.sha256, found.size) != (item.sha256, item.size):
            incoming.unlink(missing_ok=True)
            raise StorageError(
                "input_corrupt",
                f"input {item.path} is corrupt: {item.bucket}/{item.name} holds {found.size} bytes hashing to "
                f"{found.sha256[:12]}…, the job expects {item.size} bytes hashing to {item.sha256[:12]}…",
            )
        path = self._path(item.sha256)
        incoming.chmod(0o444)  # jobs read it through their links; none writes it by mistake
        os.replace(incoming, path)
        stat = path.stat()
        entry = Entry(item.sha256, stat.st_size, stat.st_mtime_ns, time.time())
        entry.holders.update(self._flights[item.sha256].notes)
        self.entries[item.sha256] = entry
        took = max(time.monotonic() - started, 1e-6)
        tell(f"fetched {label}: {size_text(item.size)} in {took:.1f} s")
        return entry

    async def _place(self, job_id: str, entry: Entry, target: Path) -> None:
        """A link to `entry` at `target` (a copy across filesystems), replacing what was there; removed when the
        last job that placed it ends. A file already there with the same bytes that is not the cache's (the
        agent's base is the control plane's own folder) is used as it is and never removed."""
        source = self._path(entry.sha256)
        if target not in self._placed:
            theirs = await asyncio.to_thread(same_bytes_elsewhere, source, target, entry.size, entry.sha256)
            if theirs:
                return
        self._placed.setdefault(target, {})[job_id] = entry.sha256
        temporary = link_beside(source, target)
        if temporary is not None:  # another filesystem: a copy
            await asyncio.to_thread(shutil.copyfile, source, temporary)
            temporary.chmod(0o444)
            os.replace(temporary, target)


def _watch(progress: Fetching, label: str, before: int, total: int) -> Watch:
    """One input's bytes, told as bytes of all the job's inputs (`before`: those of the inputs ahead of it)."""

    async def watch(done: int) -> None:
        await progress(label, before + done, total)

    return watch
