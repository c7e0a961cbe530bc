"""Open WebSockets end when their access does: a logout, or an admin revoking, disabling or changing a user.

Tokens are checked when a socket opens, so a revoked one would keep streaming for as long as the socket lives.
This middleware registers every authenticated socket; `auth.session.revoked` and `auth.user.revoked` close
those of the session or user with 4401, whatever route holds them, without the routes knowing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field

from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send, WebSocketDisconnectEvent
from nats.aio.client import Client

from services.common import contracts
from services.common.security import Principal, RevokedSessions

REVOKED = 4401


@dataclass(eq=False)
class _Socket:
    principal: Principal
    revoked: asyncio.Event = field(default_factory=asyncio.Event)


class OpenSockets:
    """The authenticated WebSockets open now, by user."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[_Socket]] = defaultdict(set)

    def add(self, principal: Principal) -> _Socket:
        socket = _Socket(principal)
        self._by_user[principal.user_id].add(socket)
        return socket

    def discard(self, socket: _Socket) -> None:
        sockets = self._by_user.get(socket.principal.user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._by_user[socket.principal.user_id]

    def revoke_user(self, user_id: str) -> None:
        for socket in self._by_user.get(user_id, ()):
            socket.revoked.set()

    def revoke_session(self, session_id: str) -> None:
        for sockets in self._by_user.values():
            for socket in sockets:
                if socket.principal.session_id == session_id:
                    socket.revoked.set()

    def __len__(self) -> int:
        return sum(len(sockets) for sockets in self._by_user.values())


async def follow_revocations(nc: Client, sockets: OpenSockets) -> None:
    """Close the sockets of every session and user auth revokes from now on."""

    async def on_revoked(msg) -> None:
        match contracts.decode(msg.data):
            case contracts.UserRevoked(user_id=user_id):
                sockets.revoke_user(user_id)
            case contracts.SessionRevoked(session_id=session_id):
                sockets.revoke_session(session_id)

    await nc.subscribe(contracts.Subjects.USER_REVOKED, cb=on_revoked)
    await nc.subscribe(contracts.Subjects.SESSION_REVOKED, cb=on_revoked)


def close_on_revocation(app: ASGIApp) -> ASGIApp:
    """Middleware: a revoked WebSocket is closed (4401) and its route sees the client leave."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        context = getattr(scope["app"].state, "context", None)
        if scope["type"] != "websocket" or context is None:
            await app(scope, receive, send)
            return
        await _watched(app, scope, receive, send, context.open_sockets, context.revoked)

    return middleware


async def _watched(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, sockets: OpenSockets, revocations: RevokedSessions
) -> None:
    registered: _Socket | None = None
    closed = False

    async def receive_until_revoked() -> ReceiveMessage:
        nonlocal registered, closed
        principal = scope.get("state", {}).get("principal")  # set by the guard before the route runs
        if registered is None and principal is not None:
            registered = sockets.add(principal)
            if revocations.ended(principal):  # revoked between the guard's check and now: no event will come again
                registered.revoked.set()
        if registered is None:
            return await receive()
        message, revoked = asyncio.ensure_future(receive()), asyncio.ensure_future(registered.revoked.wait())
        done, _ = await asyncio.wait({message, revoked}, return_when=asyncio.FIRST_COMPLETED)
        if message in done:
            revoked.cancel()
            return message.result()
        message.cancel()
        if not closed:
            closed = True
            with contextlib.suppress(Exception):  # the client may be gone already
                await send({"type": "websocket.close", "code": REVOKED, "reason": "access revoked: log in again"})
        return WebSocketDisconnectEvent(type="websocket.disconnect", code=REVOKED)

    async def send_unless_closed(message: Message) -> None:
        if not closed:  # the route may still send while it learns the client is gone
            await send(message)

    try:
        await app(scope, receive_until_revoked, send_unless_closed)
    finally:
        if registered is not None:
            sockets.discard(registered)
