"""Slowing guessers down: growing delays per (account, client) and per client, and a cap on registrations.

Failures are counted per pair, so a guesser's client waits longer after each failure while the account's
owner, from any other client, still logs in with the right password: nobody can lock an account out.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import asyncpg

from services.common.errors import ApiError

from . import store
from .settings import AuthSettings

# A client guessing across many accounts gets this many times the per-pair allowance before its own delays start.
PER_CLIENT_FACTOR = 4


def pair_key(username: str, address: str) -> str:
    # The address's length first, so no username can be made to read as another pair's key.
    return f"pair:{len(address)}:{address}:{username}"


def client_key(address: str) -> str:
    return f"addr:{address}"


def register_key(address: str) -> str:
    return f"register:{address}"


def delay_s(settings: AuthSettings, failures: int, free: int) -> float:
    """Seconds to wait after the `failures`-th failure in the window: none within `free`, then doubling."""
    if failures < free:
        return 0.0
    return float(min(settings.login_max_delay_s, settings.login_delay_s * 2 ** min(failures - free, 40)))


def _wait(seconds: float, what: str) -> ApiError:
    wait = max(1, math.ceil(seconds))
    return ApiError(
        429, "too_many_attempts", f"too many {what}: try again in {wait} s", headers={"Retry-After": str(wait)}
    )


async def start_login(pool: asyncpg.Pool, settings: AuthSettings, username: str, address: str) -> list[int]:
    """Count a login attempt as failed until it succeeds; 429 when its pair or its client must still wait.

    The attempt is counted before the check, so a burst of parallel guesses cannot all pass at once;
    a refused attempt guessed nothing, so it is taken back and does not prolong the wait.
    """
    limits = {
        pair_key(username, address): settings.login_max_failures,
        client_key(address): settings.login_max_failures * PER_CLIENT_FACTOR,
    }
    attempt = await store.record_failures(pool, list(limits))
    for key, free in limits.items():
        earlier, since_last = await store.failures_before(pool, key, settings.login_window_s, attempt)
        delay = delay_s(settings, earlier, free)
        if delay and delay > since_last:
            await store.forget_failures(pool, attempt)
            raise _wait(delay - since_last, "failed logins")
    return attempt


async def fail_login(pool: asyncpg.Pool, attempt: list[int]) -> None:
    """A wrong password: the attempt stays counted, and the wait runs from the answer, not from the question
    (Argon2 takes a while, and a slow check must not shorten the wait)."""
    await store.touch_failures(pool, attempt)


async def finish_login(pool: asyncpg.Pool, attempt: list[int], username: str, address: str) -> None:
    """A right password: the attempt was no failure, and its pair starts afresh (its client's count stays)."""
    await store.forget_failures(pool, attempt)
    await store.clear_failures(pool, pair_key(username, address))


async def count_registration(pool: asyncpg.Pool, settings: AuthSettings, address: str) -> None:
    """Count a registration attempt of this client; 429 past LLMCT_REGISTER_MAX within the window."""
    key = register_key(address)
    attempt = await store.record_failures(pool, [key])
    count, oldest = await store.recent_failures(pool, key, settings.register_window_s)
    if count > settings.register_max and oldest is not None:
        await store.forget_failures(pool, attempt)
        remaining = (oldest + timedelta(seconds=settings.register_window_s) - datetime.now(UTC)).total_seconds()
        raise _wait(remaining, "registrations from this address")
