"""WebSocket tickets: a browser cannot send a header when it opens a WebSocket, so it asks for a ticket first.

`POST /api/ws/tickets` (authenticated like any call: bearer token or API key) answers a random ticket valid for
`LLMCT_WS_TICKET_TTL_S` (30 s) and good for one socket; the socket is opened with `?ticket=<ticket>`. A long-lived
credential never travels in a URL, where proxies, browser history and access logs keep it.

Tickets live in the NATS KV bucket WS_TICKETS, so any gateway redeems what another issued. The bucket holds the
SHA-256 of each ticket (who can read the bucket cannot open a socket with it) and the caller it stands for. A ticket
is used once: redeeming deletes it on the condition that nobody did so first (the KV's expected last revision), so
two gateways racing with the same ticket cannot both win.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import msgspec
from litestar import post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from services.common.bus import set_replicas
from services.common.errors import ApiError
from services.common.security import Principal, authenticate
from services.common.startup import ready_context

BUCKET = "WS_TICKETS"
BUCKET_TTL_S = 300.0  # cleanup only: validity is checked against the ticket's own time of issue
QUERY_SECRETS = ("token", "access_token", "api_key", "key")


class Ticket(msgspec.Struct, frozen=True, kw_only=True):
    """What the bucket keeps under a ticket's hash: who it was issued to, and when."""

    principal: Principal
    issued_at: float


class TicketResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A one-time WebSocket ticket."""

    ticket: str
    """Open the socket with `?ticket=<ticket>`; it is good for one socket."""
    expires_in: int
    """Seconds left to use it."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Ticket).decode


def _key(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


class Tickets:
    """Issue and redeem tickets; the bucket is opened at start-up (`open`)."""

    def __init__(self, js: JetStreamContext, ttl_s: float, replicas: int = 1):
        self.js, self.ttl_s, self.replicas = js, ttl_s, replicas
        self._kv: KeyValue | None = None

    async def open(self) -> None:
        """Bind to the bucket, creating it when this is the first gateway (with LLMCT_NATS_REPLICAS copies)."""
        try:
            self._kv = await self.js.key_value(BUCKET)
        except BucketNotFoundError:
            self._kv = await self.js.create_key_value(
                bucket=BUCKET, history=1, ttl=BUCKET_TTL_S, replicas=self.replicas
            )
        await set_replicas(self.js, f"KV_{BUCKET}", self.replicas)

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("tickets used before the gateway started")
        return self._kv

    async def issue(self, principal: Principal) -> str:
        """A fresh ticket standing for `principal`."""
        ticket = secrets.token_urlsafe(32)
        await self.kv.create(_key(ticket), _encode(Ticket(principal=principal, issued_at=time.time())))
        return ticket

    async def redeem(self, ticket: str) -> Principal | None:
        """The caller a ticket stands for, once: None when it is unknown, used or expired."""
        key = _key(ticket)
        try:
            entry = await self.kv.get(key)
            await self.kv.delete(key, last=entry.revision)  # refused when another redeemer deleted it first
        except (KeyNotFoundError, BadRequestError):
            return None
        try:
            held = _decode(entry.value or b"")
        except msgspec.DecodeError:  # not one of ours: only the services' NATS user may write the bucket
            return None
        if time.time() - held.issued_at > self.ttl_s:
            return None
        return held.principal


async def socket_caller(connection: ASGIConnection) -> Principal:
    """The caller of a WebSocket: a `?ticket=` (browsers), else the Authorization header (other clients). A
    long-lived credential in the query string is refused, so that nobody learns to send one."""
    query = connection.query_params
    if any(name in query for name in QUERY_SECRETS):
        raise NotAuthorizedException(
            "credentials in the URL are refused: POST /api/ws/tickets and open the socket with ?ticket=<ticket>"
        )
    ticket = query.get("ticket")
    if ticket is None:
        return await authenticate(connection)
    principal = await ready_context(connection.app.state).tickets.redeem(ticket)
    if principal is None:
        raise NotAuthorizedException("the ticket is unknown, used or expired: ask for a new one")
    if principal.session_id is not None and principal.session_id in connection.app.state.revoked_sessions:
        raise NotAuthorizedException("the access token has been revoked: log in again")
    return principal


async def require_socket_caller(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard of the gateway's WebSockets (they opt out of the shared guard, which knows no tickets)."""
    connection.state.principal = await socket_caller(connection)


@post("/api/ws/tickets", tags=["websockets"], summary="A one-time ticket to open a WebSocket with")
async def issue_ticket(principal: Principal, tickets: Tickets) -> TicketResponse:
    """Open `/api/jobs/feed` or `/api/jobs/{id}/logs` with `?ticket=<ticket>` within `expires_in` seconds; a ticket
    opens one socket. Sockets never take a token or API key in the URL."""
    try:
        ticket = await tickets.issue(principal)
    except NatsError as exc:  # the bucket lives in JetStream: without NATS no gateway could redeem it anyway
        raise ApiError(503, "service_unavailable", "NATS is not reachable: ask for a ticket again shortly") from exc
    return TicketResponse(ticket=ticket, expires_in=int(tickets.ttl_s))
