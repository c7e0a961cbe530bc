"""What one client, one user or one upstream may hold of the gateway at once, and how long a client may take.

A client address may have LLMCT_GATEWAY_CLIENT_CONCURRENCY requests in flight (429 past it), a service
LLMCT_GATEWAY_UPSTREAM_CONCURRENCY forwarded calls (503), a user LLMCT_GATEWAY_WEBSOCKETS_PER_USER open sockets
(closed with 4429). A forwarded body that pauses longer than LLMCT_GATEWAY_BODY_IDLE_S ends its upstream call
(408); headers that take longer than LLMCT_GATEWAY_HEADER_TIMEOUT_S end the connection (services/gateway/server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
from litestar.exceptions import InternalServerException
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from services.common.errors import ApiError, error_body
from services.common.net import Network, client_address, client_bucket

WEBSOCKET_LIMIT_CLOSE = 4429


class InFlight:
    """How many of something each key holds now; `enter` refuses past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def enter(self, key: str) -> bool:
        held = self.counts.get(key, 0)
        if held >= self.limit:
            return False
        self.counts[key] = held + 1
        return True

    def leave(self, key: str) -> None:
        held = self.counts.get(key, 0) - 1
        if held > 0:
            self.counts[key] = held
        else:
            self.counts.pop(key, None)

    @contextlib.contextmanager
    def held(self, key: str) -> Iterator[bool]:
        """Whether `key` got a place; the place is given back on leaving the block."""
        entered = self.enter(key)
        try:
            yield entered
        finally:
            if entered:
                self.leave(key)


class Limits:
    """The gateway's counters, one set per app (kept in its state)."""

    def __init__(self, *, client: int, upstream: int, websockets: int, trusted: tuple[Network, ...] = ()) -> None:
        self.trusted = trusted  # proxies whose X-Forwarded-For names the client (LLMCT_TRUSTED_PROXIES)
        self.clients = InFlight(client)
        self.upstreams = InFlight(upstream)
        self.websockets = InFlight(websockets)


def limits_of(app: Any) -> Limits:
    return app.state.limits


_TOO_MANY = msgspec.json.encode(
    error_body("too_many_requests", "too many requests in flight from your address: wait for one to finish")
)


def client_concurrency(app: ASGIApp) -> ASGIApp:
    """Middleware: at most LLMCT_GATEWAY_CLIENT_CONCURRENCY HTTP requests in flight per client address; a stream
    counts until it ends. WebSockets have their own per-user cap."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limits = limits_of(scope["app"])
        with limits.clients.held(_client_of(scope, limits.trusted)) as entered:
            if entered:
                await app(scope, receive, send)
                return
        await _refuse(send)

    return middleware


def _client_of(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """One client for the limit: the address behind trusted proxies, an IPv6 /64 as one."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    forwarded = [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"]
    return client_bucket(client_address(peer, ", ".join(forwarded) or None, trusted))


async def _refuse(send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", b"1"),
        (b"content-length", b"%d" % len(_TOO_MANY)),
    ]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 429, "headers": headers}
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": _TOO_MANY, "more_body": False}
    await send(start)
    await send(body)


def capped_per_user(handler):
    """A WebSocket handler that one user may run at most LLMCT_GATEWAY_WEBSOCKETS_PER_USER times at once; past it the
    socket is accepted and closed at once with 4429. The handler's signature is kept (wraps), so Litestar injects
    what it names (`socket` and `principal` among it)."""

    @functools.wraps(handler)
    async def capped(**kwargs: Any) -> None:
        socket, principal = kwargs["socket"], kwargs["principal"]
        with limits_of(socket.app).websockets.held(principal.user_id) as entered:
            if entered:
                await handler(**kwargs)
                return
        await socket.accept()
        await socket.close(code=WEBSOCKET_LIMIT_CLOSE, reason="too many open WebSockets: close one first")

    return capped


class BodyCut(Exception):
    """The client's request body stopped before its end: paused too long (408), or the client left (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def error(self) -> ApiError:
        code = "request_timeout" if self.status == 408 else "client_disconnected"
        return ApiError(self.status, code, self.message, headers={"Connection": "close"})


async def paced(chunks: AsyncIterator[bytes], idle_s: float) -> AsyncIterator[bytes]:
    """The body's chunks, cut (BodyCut) when the next one takes longer than `idle_s` to come or the client leaves."""
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyCut(408, f"the request body paused for more than {idle_s:g} s: send it without pauses") from None
        except InternalServerException:  # Litestar's word for a client that left mid-body
            raise BodyCut(400, "the client left before its request body was complete") from None
        yield chunk
