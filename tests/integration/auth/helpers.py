"""Helpers for the auth service tests: fresh names and addresses per test, and the one error shape."""

from __future__ import annotations

import secrets
from typing import cast

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.helpers import assert_error  # noqa: F401 - re-exported for the tests here

PASSWORD = "correct-horse-9"
ADMIN = ("root-admin", "admin-pass-1234")


def unique(prefix: str = "u") -> str:
    """A username no other test uses (the database lives for the whole session)."""
    return f"{prefix}-{secrets.token_hex(5)}"


def from_peer(app: Litestar, host: str) -> Litestar:
    """The app as a TCP client at `host` reaches it (the test client's own peer is the name "testclient")."""

    async def asgi(scope, receive, send) -> None:
        if "client" in scope:
            scope = {**scope, "client": (host, 50000)}
        await app(scope, receive, send)

    return cast(Litestar, asgi)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """The auth API as one caller sees it, from one address of its own.

    Every in-process request comes from the same peer, and the per-address login limit is shared by
    the whole session, so each test logs in through its own X-Forwarded-For address.
    """

    def __init__(self, client: AsyncTestClient, settings) -> None:
        self.client = client
        self.settings = settings
        self.address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"

    async def register(self, username: str | None = None, password: str = PASSWORD, invite_code: str = "test-invite"):
        username = username or unique()
        return username, await self.client.post(
            "/api/auth/register",
            json={"username": username, "password": password, "invite_code": invite_code},
            headers={"X-Forwarded-For": self.address},
        )

    async def login(self, username: str, password: str = PASSWORD, address: str | None = None):
        return await self.client.post(
            "/api/auth/login",
            json={"username": username, "password": password},
            headers={"X-Forwarded-For": address or self.address},
        )

    async def token(self, username: str, password: str = PASSWORD) -> str:
        response = await self.login(username, password)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    async def new_user(self) -> tuple[str, dict]:
        """A registered, logged-in user: (username, auth headers)."""
        username, response = await self.register()
        assert response.status_code == 201, response.text
        return username, bearer(await self.token(username))

    async def admin(self) -> dict:
        return bearer(await self.token(*ADMIN))
