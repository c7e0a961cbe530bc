"""Who is asking: passwords, signed access tokens, API keys and the one guard every service uses."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime

import asyncpg
import jwt
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope

from services.common.errors import ApiError
from services.common.startup import ready_context

TOKEN_ALGORITHM = "HS256"
TOKEN_AUDIENCE = "llmct"
API_KEY_PREFIX = "llmct_"

_hasher = PasswordHasher()


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller."""

    user_id: str
    username: str
    role: str
    via: str  # "token" | "api_key"
    session_id: str | None = None
    expires_at: datetime | None = None
    scope: str = "full"  # an API key's: "full" | "read_only" (GET/HEAD) | "inference" (/v1/* only)
    generation: int = 0  # a token's: the user's session generation it was issued under

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def new_id(prefix: str) -> str:
    """An opaque id such as usr_3f9a...."""
    return f"{prefix}_{secrets.token_hex(8)}"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A real hash to verify against when the user does not exist, so timing does not tell.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_hex(16))


def issue_token(
    secret: str, *, user_id: str, username: str, role: str, ttl_s: int, generation: int = 0
) -> tuple[str, str, int]:
    """A signed access token; returns (token, session id, expiry as unix time).

    `generation` is the user's session generation when it was issued: an admin who revokes every session
    of a user raises it, and tokens of an older one are refused from then on.
    """
    now = int(time.time())
    session_id = secrets.token_hex(12)
    claims = {
        "sub": user_id,
        "name": username,
        "role": role,
        "sid": session_id,
        "iat": now,
        "exp": now + ttl_s,
        "aud": TOKEN_AUDIENCE,
        "gen": generation,
    }
    return jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM), session_id, now + ttl_s


def read_token(secret: str, token: str) -> dict:
    """Claims of a valid token; raises NotAuthorizedException for expired or forged ones."""
    try:
        return jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],
            audience=TOKEN_AUDIENCE,
            options={"require": ["exp", "sub", "sid", "role"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthorizedException("the access token has expired: log in again") from exc
    except jwt.PyJWTError as exc:
        raise NotAuthorizedException("the access token is not valid") from exc


def new_api_key() -> tuple[str, str, bytes]:
    """A fresh API key: (the key shown once, its display prefix, its stored hash)."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[: len(API_KEY_PREFIX) + 6], hash_api_key(key)


def hash_api_key(key: str) -> bytes:
    # Keys carry 256 random bits, so a fast hash is enough and lookups stay an index probe.
    return hashlib.sha256(key.encode()).digest()


class RevokedSessions:
    """Sessions ended before their tokens expire, and users whose every session was ended, known to every service.

    Loaded from Postgres at start-up and kept current by `auth.session.revoked` and `auth.user.revoked`
    events, so checking a token stays local.
    """

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._prune_at = 1024
        self._generations: dict[str, int] = {}

    def revoke_user(self, user_id: str, generation: int) -> None:
        """Every token of `user_id` issued before `generation` is refused from now on."""
        self._generations[user_id] = max(generation, self._generations.get(user_id, 0))

    def is_current(self, user_id: str, generation: int) -> bool:
        return generation >= self._generations.get(user_id, 0)

    def ended(self, principal: Principal) -> bool:
        """Whether a token's session has been revoked since it was checked (API keys are checked in Postgres)."""
        if principal.via != "token" or principal.session_id is None:
            return False
        return principal.session_id in self or not self.is_current(principal.user_id, principal.generation)

    def add(self, session_id: str, expires_at: datetime) -> None:
        self._expiry[session_id] = expires_at.timestamp()
        # A revoked token nobody presents again is never looked up, so expired entries are swept here
        # (amortised: only when the map has doubled) or a long-running service would keep them all.
        if len(self._expiry) >= self._prune_at:
            now = time.time()
            self._expiry = {sid: expiry for sid, expiry in self._expiry.items() if expiry >= now}
            self._prune_at = max(1024, 2 * len(self._expiry))

    def __contains__(self, session_id: str) -> bool:
        expiry = self._expiry.get(session_id)
        if expiry is None:
            return False
        if expiry < time.time():
            del self._expiry[session_id]
            return False
        return True

    async def load(self, pool: asyncpg.Pool) -> None:
        rows = await pool.fetch("SELECT session_id, expires_at FROM revoked_sessions WHERE expires_at > now()")
        for row in rows:
            self.add(row["session_id"], row["expires_at"])
        users = await pool.fetch("SELECT id, session_generation FROM users WHERE session_generation > 0")
        for row in users:
            self.revoke_user(row["id"], row["session_generation"])


def bearer_from(connection: ASGIConnection) -> str | None:
    """The bearer credential from the Authorization header; never from the URL, where logs and proxies keep it
    (browsers open WebSockets with a one-time ticket instead: services/gateway/tickets.py)."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def principal_from_api_key(pool: asyncpg.Pool, key: str) -> Principal:
    # Read on every call, not cached: a revoked, expired or disabled owner's key stops at its next request.
    row = await pool.fetchrow(
        """
        UPDATE api_keys k SET last_used_at = now()
        FROM users u
        WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
          AND u.id = k.user_id AND NOT u.disabled
        RETURNING u.id, u.username, u.role, k.scope
        """,
        hash_api_key(key),
    )
    if row is None:
        raise NotAuthorizedException("the API key is not valid, has expired or has been revoked")
    return Principal(user_id=row["id"], username=row["username"], role=row["role"], via="api_key", scope=row["scope"])


READ_METHODS = frozenset({"GET", "HEAD"})
INFERENCE_PREFIX = "/v1/"
# The gateway's /v1 routes look the caller's deployments up at the scheduler with the caller's own credential, and
# /v1/models the adapters the caller may chat with in the registry's list (only the list, never one model's page).
DEPLOYMENTS = "/api/deployments"
MODEL_LIST = "/api/models"
# OpenAI's resources for training under /v1: an inference key only chats; it uploads no training data and starts
# (or stops) no training.
NOT_INFERENCE = ("/v1/files", "/v1/uploads", "/v1/fine_tuning")
# …but it may read the list of fine-tuning jobs and one job: the gateway resolves an `ft:` name and lists fine-tuned
# models in /v1/models with the caller's own key.
FINE_TUNING_JOBS = "/v1/fine_tuning/jobs"


def _method(connection: ASGIConnection) -> str:
    # A WebSocket only watches (logs, the job feed): what a client sends on one is never acted on.
    return "GET" if connection.scope["type"] == "websocket" else connection.scope.get("method", "")


def _inference_may(connection: ASGIConnection, method: str, path: str) -> bool:
    if path.startswith(INFERENCE_PREFIX):
        if method in READ_METHODS and (path == FINE_TUNING_JOBS or _one_segment_below(path, FINE_TUNING_JOBS)):
            return connection.scope["type"] == "http"
        return not any(path == p or path.startswith(p + "/") for p in NOT_INFERENCE)
    reads_deployments = path in (DEPLOYMENTS, MODEL_LIST) or path.startswith(DEPLOYMENTS + "/")
    return reads_deployments and method in READ_METHODS and connection.scope["type"] == "http"


def _one_segment_below(path: str, prefix: str) -> bool:
    rest = path[len(prefix) + 1 :] if path.startswith(prefix + "/") else ""
    return bool(rest) and "/" not in rest


def check_key_scope(principal: Principal, connection: ASGIConnection) -> None:
    """403 when an API key's scope does not cover this route: read-only keys only read, inference keys only chat."""
    method, path = _method(connection), connection.scope["path"]
    if principal.scope != "full" and {".", ".."} & set(path.split("/")):
        # A prefix check means nothing on a path that a later hop may resolve to elsewhere.
        raise ApiError(403, "api_key_scope", "a scoped API key may not use '.' or '..' path segments")
    if principal.scope == "read_only" and method not in READ_METHODS:
        raise ApiError(403, "api_key_scope", "this API key is read-only: it may only GET and HEAD")
    if principal.scope == "inference" and not _inference_may(connection, method, path):
        raise ApiError(
            403,
            "api_key_scope",
            "this API key is for inference only: it may only call /v1/* (not " + ", ".join(NOT_INFERENCE) + ")",
        )


async def authenticate(connection: ASGIConnection) -> Principal:
    """Resolve the caller from a bearer token or API key; 401 when there is none or it is bad."""
    credential = bearer_from(connection)
    if not credential:
        raise NotAuthorizedException("authentication required: send `Authorization: Bearer <token or API key>`")
    state = connection.app.state
    if credential.startswith(API_KEY_PREFIX):
        principal = await principal_from_api_key(ready_context(state).pool, credential)
        check_key_scope(principal, connection)  # here, so routes that authenticate themselves (/v1/*) check it too
        return principal
    claims = read_token(state.settings.secret_key, credential)
    revoked: RevokedSessions = state.revoked_sessions
    if claims["sid"] in revoked or not revoked.is_current(claims["sub"], claims.get("gen", 0)):
        raise NotAuthorizedException("the access token has been revoked: log in again")
    return Principal(
        user_id=claims["sub"],
        username=claims.get("name", ""),
        role=claims["role"],
        via="token",
        session_id=claims["sid"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        generation=claims.get("gen", 0),
    )


ANYONE: list[dict[str, list[str]]] = [{}, {"bearer": []}]
"""`security=ANYONE` on a public route: its OpenAPI operation reads "no credential, or a bearer token" (what
`opt={"public": True}` lets through) instead of the app's "a bearer token"."""


async def require_principal(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """App-wide guard: every route needs a caller unless it is marked `opt={"public": True}`."""
    if handler.opt.get("public"):
        return
    principal = await authenticate(connection)
    connection.state.principal = principal
    if handler.opt.get("admin") and not principal.is_admin:
        raise PermissionDeniedException("this route is for admins only")


def provide_principal(scope: Scope) -> Principal:
    """Dependency: the caller the guard authenticated (HTTP and WebSocket alike)."""
    principal = scope.get("state", {}).get("principal")
    if principal is None:
        raise NotAuthorizedException("authentication required")
    return principal


def utcnow() -> datetime:
    return datetime.now(UTC)
