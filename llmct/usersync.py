"""Joined agents' NATS users, from the scheduler's table into nats-server's config (docs/fleet.md, "Joining").

Whoever can write nats-server's config runs one `UsersSync`: `llmct up`'s launcher for its embedded server, and
`llmct nats sync-users` beside a production server. It reads `agent_credentials` at start, whenever the scheduler
publishes `AGENT_USERS_CHANGED` (answering once the server has reloaded, so a joining agent's first connect
works), and every `every_s` (a nudge sent while this was down is caught up). Reloading nats-server closes the
connections of users it no longer has: a revoked agent is out at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats

from services.common import nats_auth, readmodels
from services.common.contracts import Subjects
from services.common.private import write_private

log = logging.getLogger(__name__)

HEADER = "# Written by `llmct nats sync-users` from its --base file and the joined agents: edit the base file.\n"

Apply = Callable[[dict[str, str]], bool]
"""Make the server's joined users exactly these (agent id -> bcrypt hash); returns whether anything changed."""


@dataclass
class UsersSync:
    nats_url: str
    database_url: str
    apply: Apply
    every_s: float = 30.0
    tls: ssl.SSLContext | None = None
    """NATS_TLS_* as `services.common.bus.tls_context` makes them: a cluster with TLS between hosts."""
    user: str | None = None
    """NATS_USER and NATS_PASSWORD (the services' user), when NATS_URL carries none."""
    password: str | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def sync_once(self) -> bool:
        """Read the table and apply it (in a thread: a reload waits for the server); returns whether it changed."""
        async with self._lock:
            conn = await asyncpg.connect(self.database_url)
            try:
                joined = await readmodels.joined_agent_users(conn)
            finally:
                await conn.close()
            changed = await asyncio.to_thread(self.apply, joined)
        if changed:
            log.info("NATS users synced: %d joined agent(s)", len(joined))
        return changed

    def _login(self) -> dict[str, str]:
        return {"user": self.user, "password": self.password or ""} if self.user else {}

    async def run(self, stop: asyncio.Event) -> None:
        """Sync now, on every nudge and every `every_s`, until `stop` is set."""
        await self.sync_once()
        servers = [url.strip() for url in self.nats_url.split(",") if url.strip()]  # a cluster: one URL per node
        nc = await nats.connect(
            servers, name="llmct-users-sync", max_reconnect_attempts=-1, tls=self.tls, **self._login()
        )

        async def nudged(msg) -> None:
            try:
                await self.sync_once()
            except Exception:  # the next nudge or the periodic check tries again
                log.exception("NATS users sync failed")
                return
            if msg.reply:
                await msg.respond(b"synced")

        await nc.subscribe(Subjects.AGENT_USERS_CHANGED, cb=nudged)
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.every_s)
                except TimeoutError:
                    await self._sync_quietly()
        finally:
            await nc.drain()

    async def _sync_quietly(self) -> None:
        try:
            await self.sync_once()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("NATS users sync failed, trying again in %.0f s: %s", self.every_s, exc)


class SyncThread:
    """A `UsersSync` on its own event loop in a thread, for the launcher (whose own loop is a plain sleep)."""

    def __init__(self, sync: UsersSync) -> None:
        self.sync = sync
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="nats-users-sync", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.sync.run(self._stop))
        except Exception:
            log.exception("NATS users sync stopped")
        finally:
            self._loop.close()

    def start(self) -> SyncThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


@dataclass
class ConfigFile:
    """A production nats-server's authorization file: the block in `base` (what `llmct nats users` prints, kept
    by hand: the services' user, agents added by hand) plus the joined agents, written to `out`; the server is
    reloaded (SIGHUP to the pid in `pid_file`) when that changes anything."""

    base: Path
    out: Path
    pid_file: Path | None = None

    def apply(self, joined: dict[str, str]) -> bool:
        block = json.loads(self.base.read_text())
        users = list(block["authorization"]["users"])
        by_hand = {user["user"] for user in users}
        users += [
            nats_auth.agent_entry(agent_id, password_hash)
            for agent_id, password_hash in sorted(joined.items())
            if nats_auth.agent_user(agent_id) not in by_hand  # a user named twice is a config nats-server refuses
        ]
        rendered = json.dumps({**block["authorization"], "users": users}, indent=2)
        # A top-level key, as deploy/nats/auth.conf: the file may be `include`d by nats.conf or given with -c.
        text = f'{HEADER}"authorization": {rendered}\n'.encode()
        if self.out.is_file() and self.out.read_bytes() == text:
            return False
        write_private(self.out, text)
        # A server that has not written its pid file yet reads the new file when it starts (a container waits for it).
        if self.pid_file is not None and self.pid_file.exists():
            os.kill(int(self.pid_file.read_text().strip()), signal.SIGHUP)  # nats-server reloads on SIGHUP
        return True
