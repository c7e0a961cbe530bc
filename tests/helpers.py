"""Helpers shared by every test tier."""

from __future__ import annotations

import asyncio
import secrets


def unique(prefix: str) -> str:
    """A name (user, dataset, model, agent) no other test uses: the database and NATS live for the whole session."""
    return f"{prefix}-{secrets.token_hex(5)}"


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


def assert_error(response, status: int, code: str | None = None, field: str | None = ...) -> dict:
    """The one error shape: {"error": {"code", "message", "field"}} and nothing else."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if field is not ...:
        assert error["field"] == field, error
    return error
