"""Helpers shared by every test tier."""

from __future__ import annotations

import asyncio


async def eventually(check, timeout: float = 20.0, interval: float = 0.1):
    """Poll the coroutine function `check()` until it returns something true; returns that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
