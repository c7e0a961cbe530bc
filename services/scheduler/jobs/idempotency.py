"""Idempotency keys: a POST that creates a job or a deployment, sent with `Idempotency-Key`, is carried out at most
once per user and key; the same key and body again get the first answer back (`Idempotent-Replayed: true`), as
Stripe's and OpenAI's APIs do. A client that lost the answer (a dropped connection, a gateway's 503) retries with the
same key and gets the one job.

The key's row is written in the transaction that stores the job, with the answer already rendered, so a crash keeps
both or neither: a key that was never stored means nothing was created, and a retry carries the request out afresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import MediaType, Response
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter

from services.common.errors import ApiError
from services.common.security import Principal

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEEP_H = 24
MAX_LENGTH = 255
KEY_LOCKS = 7_003  # advisory lock namespace (the two-key form): one request per user and key commits at once

HEADER_HELP = (
    f"Any string of up to {MAX_LENGTH} printable ASCII characters, fresh for each new request (a UUID): the same key "
    f"and body again within {KEEP_H} h get the first answer back, with `{REPLAYED}: true`, never a second one. "
    "Retry with it after a network error or a 503. The same key with another body is refused (422 "
    "`idempotency_key_reused`), and while the first request is being stored a second gets 409 "
    "`idempotency_key_in_flight`. Keys are per user."
)


class Answer(msgspec.Struct, frozen=True):
    """What the first request was answered: its status and exact body."""

    status: int
    body: bytes

    def response(self, replayed: bool = False) -> Response[bytes]:
        headers = {REPLAYED: "true"} if replayed else {}
        return Response(self.body, status_code=self.status, media_type=MediaType.JSON, headers=headers)


Render = Callable[[Any, str], Awaitable[Answer]]  # (a connection inside the transaction, the new id)


class Replayed(Exception):
    """A request with the same key was carried out beside this one: its answer, and nothing new stored."""

    def __init__(self, answer: Answer):
        super().__init__("replayed")
        self.answer = answer


def checked_key(value: str) -> str:
    """The key as sent; 400 when it is empty, too long or holds anything but printable ASCII."""
    if not 0 < len(value) <= MAX_LENGTH or not all(" " <= c <= "~" for c in value):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_LENGTH} printable ASCII characters (a UUID is a good one)",
            HEADER,
        )
    return value


class Submission:
    """One request that creates a job or a deployment: who sent it, to which route, a hash of its body, its
    idempotency key if it has one; and its answer, rendered in the transaction that stores what it created (so that
    a database gone after the commit cannot turn an accepted request into an error)."""

    def __init__(self, principal: Principal, key: str | None, route: str, body: msgspec.Struct, render: Render):
        self.user_id = principal.user_id
        self.key = None if key is None else checked_key(key)
        self.route = route
        # The decoded body, fields sorted: the same request sent with other spacing or key order is the same request.
        self.body_hash = hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()
        self.render = render
        self.answer: Answer | None = None

    async def earlier(self, db) -> Answer | None:
        """The answer already given for this key; 422 when the key went with another request."""
        if self.key is None:
            return None
        row = await db.fetchrow(
            "SELECT route, body_hash, status, answer FROM idempotency_keys "
            "WHERE user_id = $1 AND key = $2 AND created_at > now() - make_interval(hours => $3)",
            self.user_id,
            self.key,
            KEEP_H,
        )
        if row is None:
            return None
        if row["route"] != self.route or row["body_hash"] != self.body_hash:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"this {HEADER} was used with another request (route or body) within {KEEP_H} h: "
                "send a fresh key for a new request, or the first request's exact body to get its answer again",
                HEADER,
            )
        return Answer(row["status"], bytes(row["answer"]))

    async def claim(self, conn) -> None:
        """First thing in the transaction that creates: 409 while another request with this key is being stored;
        `Replayed` when one was stored since this request was first looked up."""
        if self.key is None:
            return
        name = f"{self.user_id}\n{self.key}"
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, hashtext($2))", KEY_LOCKS, name):
            raise ApiError(
                409,
                "idempotency_key_in_flight",
                f"a request with this {HEADER} is being carried out: retry in a moment to get its answer",
                HEADER,
                headers={"Retry-After": "1"},
            )
        answer = await self.earlier(conn)
        if answer is not None:
            raise Replayed(answer)

    async def record(self, conn, resource_id: str) -> None:
        """Last thing in the transaction that creates: the answer, rendered now, and stored with the key."""
        self.answer = await self.render(conn, resource_id)
        if self.key is None:
            return
        await conn.execute(
            "INSERT INTO idempotency_keys (user_id, key, route, body_hash, status, answer, resource_id) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) "
            # Only an expired row can be in the way: the lock is held and no live row was found.
            "ON CONFLICT (user_id, key) DO UPDATE SET route = EXCLUDED.route, body_hash = EXCLUDED.body_hash, "
            "status = EXCLUDED.status, answer = EXCLUDED.answer, resource_id = EXCLUDED.resource_id, "
            "created_at = now()",
            self.user_id,
            self.key,
            self.route,
            self.body_hash,
            self.answer.status,
            self.answer.body,
            resource_id,
        )


async def expire(pool: asyncpg.Pool) -> None:
    """Forget keys older than KEEP_H (they are ignored from then on anyway)."""
    await pool.execute("DELETE FROM idempotency_keys WHERE created_at <= now() - make_interval(hours => $1)", KEEP_H)


KeyHeader = Annotated[str | None, Parameter(header=HEADER, description=HEADER_HELP)]
REPLAYED_HEADER = ResponseHeader(
    name=REPLAYED, documentation_only=True, description="`true` on the answer to a repeated Idempotency-Key"
)


async def created(pool: asyncpg.Pool, submission: Submission, create: Callable[[], Awaitable[str]]) -> Response:
    """The answer to `submission`: an earlier one for its key, replayed; else `create`'s (which stores the new thing,
    claiming and recording the submission in its transaction)."""
    earlier = await submission.earlier(pool)
    if earlier is not None:
        return earlier.response(replayed=True)
    try:
        await create()
    except Replayed as replay:
        return replay.answer.response(replayed=True)
    if submission.answer is None:
        raise RuntimeError(f"{submission.route} did not record its answer")
    return submission.answer.response()
