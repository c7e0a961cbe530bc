"""A vLLM deployment's pool of LoRA adapters, loaded into the engine on first use and unloaded when unused.

- A chat request naming an adapter (`Llmct-Adapter`, its use already allowed by the gateway) holds it while it
  runs: `acquire` loads it if it is not (its files first, in `objects` mode), `release` lets it go.
- One load per adapter at a time: requests arriving while it loads wait for that load, not start their own.
- Beyond `slots`, the least recently used adapter that no request holds is unloaded (when every one is held the
  pool goes over its bound until one is let go; vLLM keeps working, swapping from its CPU copies).
- A load that fails is remembered, by name and folder, for FAILURE_MEMORY_S: a client retrying in a loop gets
  the same answer without the engine being asked again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from services.common.contracts import AdapterRef, LoadedAdapter

log = logging.getLogger(__name__)

FAILURE_MEMORY_S = 300.0


class AdapterLoadFailed(Exception):
    """The engine could not load the adapter; the message is the engine's reason."""


class Engine(Protocol):
    """What the pool asks of the engine (the model server's loopback calls)."""

    async def load_adapter(self, name: str, path: str, replace: bool) -> None:
        """Load (or, `replace`, load again in place) the adapter; AdapterLoadFailed with the engine's reason."""
        ...

    async def unload_adapter(self, name: str) -> None:
        """Unload it (best effort)."""
        ...


class Files(Protocol):
    """Where an adapter's files come from: where the registry says (`shared`), or the store (`objects`)."""

    async def bring(self, ref: AdapterRef) -> str:
        """The adapter's folder on this agent, its files there; AdapterLoadFailed when they cannot be."""
        ...

    async def release(self, ref: AdapterRef) -> None:
        """The engine no longer holds it: its files may go."""
        ...


class SharedFiles:
    """`shared` mode: the adapter's folder is where the registry says."""

    async def bring(self, ref: AdapterRef) -> str:
        return ref.adapter_path

    async def release(self, ref: AdapterRef) -> None:
        return None


@dataclass
class Loaded:
    ref: AdapterRef
    loaded_at: datetime
    last_used_at: datetime
    requests: int = 0
    holders: int = 0  # requests running with it: never unloaded while there are any


class AdapterPool:
    """See the module's docstring."""

    def __init__(self, engine: Engine, files: Files, slots: int, *, clock: Callable[[], float] = time.monotonic):
        self.engine, self.files, self.slots = engine, files, slots
        self.clock = clock
        self.loaded: OrderedDict[str, Loaded] = OrderedDict()  # least recently used first
        self._loading: dict[str, asyncio.Future[Loaded]] = {}
        self._unloading: dict[str, asyncio.Task[None]] = {}  # a load of the same name waits for its unload
        self._failed: dict[tuple[str, str], tuple[float, str]] = {}  # (name, path) -> (until, reason)
        self.loads = 0  # loads asked of the engine since start (a failed one included)

    async def acquire(self, ref: AdapterRef) -> str:
        """The adapter loaded and held for one request; the name to send as `model`. AdapterLoadFailed."""
        self._check_not_failed(ref)
        entry = self.loaded.get(ref.name)
        if entry is None or entry.ref.adapter_path != ref.adapter_path:
            entry = await self._load_once(ref, replace=entry is not None)
        entry.holders += 1
        entry.requests += 1
        entry.last_used_at = datetime.now(UTC)
        self.loaded.move_to_end(ref.name)
        return ref.name

    async def release(self, name: str) -> None:
        """A request holding `name` ended; unload beyond the slots now that one may be free."""
        entry = self.loaded.get(name)
        if entry is not None:
            entry.holders = max(0, entry.holders - 1)
        await self._evict()

    def state(self) -> tuple[LoadedAdapter, ...]:
        """The adapters loaded now, for the deployment's load report."""
        return tuple(
            LoadedAdapter(name=name, loaded_at=e.loaded_at, last_used_at=e.last_used_at, requests=e.requests)
            for name, e in self.loaded.items()
        )

    async def close(self) -> None:
        """The engine is gone: every adapter's files may go."""
        for entry in list(self.loaded.values()):
            await self.files.release(entry.ref)
        self.loaded.clear()

    def _check_not_failed(self, ref: AdapterRef) -> None:
        failed = self._failed.get((ref.name, ref.adapter_path))
        if failed is None:
            return
        until, reason = failed
        if self.clock() < until:
            raise AdapterLoadFailed(reason)
        del self._failed[(ref.name, ref.adapter_path)]

    async def _load_once(self, ref: AdapterRef, replace: bool) -> Loaded:
        """One load per adapter: a request arriving during it waits for it (shielded: one waiter's cancel does
        not stop the load the others wait for)."""
        flight = self._loading.get(ref.name)
        if flight is None:
            flight = asyncio.ensure_future(self._load(ref, replace))
            self._loading[ref.name] = flight
            flight.add_done_callback(lambda _: self._loading.pop(ref.name, None))
        return await asyncio.shield(flight)

    async def _load(self, ref: AdapterRef, replace: bool) -> Loaded:
        self.loads += 1
        if unloading := self._unloading.get(ref.name):
            await asyncio.shield(unloading)
        try:
            path = await self.files.bring(ref)
            await self.engine.load_adapter(ref.name, path, replace)
        except AdapterLoadFailed as exc:
            now = self.clock()  # the failures of the last FAILURE_MEMORY_S only: never more than those
            self._failed = {key: failed for key, failed in self._failed.items() if failed[0] > now}
            self._failed[(ref.name, ref.adapter_path)] = (now + FAILURE_MEMORY_S, str(exc))
            await self.files.release(ref)
            raise
        now = datetime.now(UTC)
        old = self.loaded.get(ref.name)
        entry = Loaded(ref=ref, loaded_at=now, last_used_at=now, holders=old.holders if old else 0)
        self.loaded[ref.name] = entry
        self.loaded.move_to_end(ref.name)
        await self._evict(keep=ref.name)
        return entry

    async def _unload(self, entry: Loaded) -> None:
        await self.engine.unload_adapter(entry.ref.name)
        await self.files.release(entry.ref)

    async def _evict(self, keep: str | None = None) -> None:
        """Unload the least recently used adapters no request holds while there are more than the slots."""
        while len(self.loaded) > self.slots:
            victim = next((n for n, e in self.loaded.items() if e.holders == 0 and n != keep), None)
            if victim is None:
                return
            entry = self.loaded.pop(victim)
            unloading = self._unloading[victim] = asyncio.ensure_future(self._unload(entry))
            unloading.add_done_callback(lambda _, name=victim: self._unloading.pop(name, None))
            await asyncio.shield(unloading)
            log.info("adapter %s unloaded (least recently used beyond %d slots)", victim, self.slots)
