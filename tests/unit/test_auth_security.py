"""Passwords, access tokens, API keys and revoked sessions, without any server."""

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import msgspec
import pytest
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException

from services.auth.schemas import LoginRequest, RegisterRequest
from services.auth.service import _is_standing_invite, check_password_strength
from services.auth.settings import AuthSettings
from services.auth.throttle import _wait, delay_s, pair_key
from services.common.errors import ApiError
from services.common.security import (
    API_KEY_PREFIX,
    TOKEN_AUDIENCE,
    Principal,
    RevokedSessions,
    check_key_scope,
    hash_api_key,
    hash_password,
    issue_token,
    new_api_key,
    new_id,
    read_token,
    verify_password,
)
from services.common.settings import StoragePaths

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-" + "s" * 32


# --- password strength -------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["correct-horse-9", "Zq8!vB2#mK", "a-long passphrase with spaces"])
def test_strong_passwords_pass(password):
    check_password_strength("alice", password)


@pytest.mark.parametrize(
    ("username", "password", "why"),
    [
        ("alice", "Ab1!xyz", "at least 10"),
        ("alice", "abababababab", "5 different"),
        ("alice", "password123", "easy to guess"),
        ("alice", "QWERTYUIOP", "easy to guess"),
        ("alice", "xx-ALICE-2024", "easy to guess"),
    ],
)
def test_weak_passwords_name_the_password_field(username, password, why):
    with pytest.raises(ApiError) as caught:
        check_password_strength(username, password)
    assert (caught.value.status, caught.value.code, caught.value.field) == (422, "weak_password", "password")
    assert why in caught.value.message


def test_password_hashes_verify_and_never_raise():
    stored = hash_password("correct-horse-9")
    assert stored != "correct-horse-9"
    assert verify_password(stored, "correct-horse-9")
    assert not verify_password(stored, "correct-horse-8")
    assert not verify_password("not-a-hash", "correct-horse-9")


# --- access tokens -----------------------------------------------------------------------------


def _issue(secret: str = SECRET, ttl_s: int = 600) -> tuple[str, str, int]:
    return issue_token(secret, user_id="usr_1", username="alice", role="user", ttl_s=ttl_s)


def test_token_round_trip():
    token, session_id, expires = _issue()
    claims = read_token(SECRET, token)
    assert (claims["sub"], claims["name"], claims["role"], claims["sid"]) == ("usr_1", "alice", "user", session_id)
    assert claims["exp"] == expires and abs(expires - (time.time() + 600)) < 5


def test_every_token_is_its_own_session():
    assert _issue()[1] != _issue()[1]


def test_expired_token_is_refused():
    with pytest.raises(NotAuthorizedException, match="expired"):
        read_token(SECRET, _issue(ttl_s=-10)[0])


def test_token_from_another_secret_is_refused():
    with pytest.raises(NotAuthorizedException, match="not valid"):
        read_token(SECRET, _issue(secret="another-secret-" + "x" * 32)[0])


def test_tampered_token_is_refused():
    header, payload, signature = _issue()[0].split(".")
    with pytest.raises(NotAuthorizedException):
        read_token(SECRET, f"{header}.{payload}x.{signature}")


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "usr_1", "sid": "s", "role": "admin", "exp": 4_000_000_000, "aud": "someone-else"},
        {"sub": "usr_1", "role": "admin", "exp": 4_000_000_000, "aud": TOKEN_AUDIENCE},  # no session id
        {"sub": "usr_1", "sid": "s", "role": "admin", "aud": TOKEN_AUDIENCE},  # never expires
    ],
)
def test_tokens_missing_what_we_need_are_refused(claims):
    with pytest.raises(NotAuthorizedException):
        read_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))


def test_unsigned_token_is_refused():
    claims = {"sub": "usr_1", "sid": "s", "role": "admin", "exp": 4_000_000_000, "aud": TOKEN_AUDIENCE}
    with pytest.raises(NotAuthorizedException):
        read_token(SECRET, jwt.encode(claims, None, algorithm="none"))


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "llmct_abc"])
def test_garbage_is_refused(garbage):
    with pytest.raises(NotAuthorizedException):
        read_token(SECRET, garbage)


# --- API keys and ids --------------------------------------------------------------------------


def test_api_key_shape_and_hash():
    key, prefix, key_hash = new_api_key()
    assert key.startswith(API_KEY_PREFIX) and len(key) > 40
    assert key.startswith(prefix) and len(prefix) == len(API_KEY_PREFIX) + 6
    assert key_hash == hash_api_key(key) != hash_api_key(key + "x")
    assert new_api_key()[0] != key


def test_ids_carry_their_prefix():
    assert new_id("usr").startswith("usr_") and new_id("usr") != new_id("usr")


# --- revoked sessions --------------------------------------------------------------------------


def test_revoked_session_is_known_until_its_token_would_expire():
    revoked = RevokedSessions()
    revoked.add("live", datetime.now(UTC) + timedelta(minutes=5))
    assert "live" in revoked
    assert "other" not in revoked


def test_expired_revocation_is_forgotten():
    revoked = RevokedSessions()
    revoked.add("old", datetime.now(UTC) - timedelta(seconds=1))
    assert "old" not in revoked
    assert "old" not in revoked._expiry  # dropped, so the set does not grow forever


# --- invites, rate limits and request shapes ---------------------------------------------------


def _settings(invite_code: str | None) -> AuthSettings:
    storage = StoragePaths(base=Path("/tmp"), logs=Path("/tmp"), hf_cache=Path("/tmp"))
    return AuthSettings(
        database_url="postgresql://x", nats_url="nats://x", secret_key=SECRET, invite_code=invite_code, storage=storage
    )


@pytest.mark.parametrize(
    ("configured", "given", "ok"),
    [
        ("test-invite", "test-invite", True),
        ("test-invite", "test-invitE", False),
        ("test-invite", "", False),
        ("test-invite", "été", False),
        ("clé-été", "clé-été", True),
        (None, "", False),
        (None, "anything", False),
    ],
)
def test_standing_invite_compares_any_text(configured, given, ok):
    assert _is_standing_invite(_settings(configured), given) is ok


def test_wait_says_when_to_come_back():
    error = _wait(195.2, "failed logins")
    assert (error.status, error.code, error.headers["Retry-After"]) == (429, "too_many_attempts", "196")


def test_wait_never_says_zero():
    assert _wait(0.01, "failed logins").headers["Retry-After"] == "1"


def test_delays_start_after_the_allowance_and_double_up_to_the_cap():
    settings = dataclasses.replace(_settings(None), login_delay_s=1, login_max_delay_s=900)
    assert [delay_s(settings, n, 5) for n in range(4, 10)] == [0, 1, 2, 4, 8, 16]
    assert delay_s(settings, 10_000, 5) == 900


def test_pair_keys_cannot_be_forged_with_a_username():
    assert pair_key("b:alice", "10.0.0.1") != pair_key("alice", "10.0.0.1:b")


def test_a_user_revocation_refuses_older_generations_only():
    revoked = RevokedSessions()
    assert revoked.is_current("usr_1", 0)
    revoked.revoke_user("usr_1", 2)
    revoked.revoke_user("usr_1", 1)  # a late, older event changes nothing
    assert not revoked.is_current("usr_1", 1) and revoked.is_current("usr_1", 2) and revoked.is_current("usr_2", 0)


def test_a_checked_principal_is_ended_by_a_later_revocation():
    """The gateway asks again when it registers a WebSocket, so a revocation between check and register counts."""
    revoked = RevokedSessions()
    token = Principal(user_id="usr_1", username="a", role="user", via="token", session_id="s1", generation=0)
    key = Principal(user_id="usr_1", username="a", role="user", via="api_key")
    assert not revoked.ended(token)
    revoked.revoke_user("usr_1", 1)
    assert revoked.ended(token) and not revoked.ended(key)  # keys are checked in Postgres, not here
    other = Principal(user_id="usr_2", username="b", role="user", via="token", session_id="s2")
    revoked.add("s2", datetime.now(UTC) + timedelta(minutes=5))
    assert revoked.ended(other)


@pytest.mark.parametrize("username", ["alice\n", "Alice", "al", "-alice", "al ice", "a" * 33, "ålice"])
def test_register_refuses_bad_usernames(username):
    body = msgspec.json.encode({"username": username, "password": "x", "invite_code": "i"})
    with pytest.raises(msgspec.ValidationError, match="username"):
        msgspec.json.decode(body, type=RegisterRequest)


@pytest.mark.parametrize("username", ["alice", "a.b_c-d", "007", "a" * 32])
def test_register_accepts_good_usernames(username):
    body = msgspec.json.encode({"username": username, "password": "x"})
    assert msgspec.json.decode(body, type=RegisterRequest).username == username


def test_login_refuses_nul_in_the_username():
    with pytest.raises(msgspec.ValidationError, match="username"):
        msgspec.json.decode(b'{"username": "a\\u0000", "password": "x"}', type=LoginRequest)


def test_expired_revocations_are_swept_even_if_never_looked_up():
    revoked = RevokedSessions()
    past, future = datetime.now(UTC) - timedelta(seconds=1), datetime.now(UTC) + timedelta(minutes=5)
    for n in range(5000):
        revoked.add(f"old-{n}", past)
    revoked.add("live", future)
    assert len(revoked._expiry) < 1100
    assert "live" in revoked


def _connection(path: str, method: str = "GET", kind: str = "http") -> ASGIConnection:
    return ASGIConnection(scope={"type": kind, "method": method, "path": path})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "method", "path", "kind", "allowed"),
    [
        ("read_only", "GET", "/api/jobs", "http", True),
        ("read_only", "HEAD", "/api/jobs", "http", True),
        ("read_only", "POST", "/api/jobs", "http", False),
        ("read_only", "OPTIONS", "/api/jobs", "http", False),
        ("read_only", "", "/api/jobs/job_1/logs", "websocket", True),
        ("inference", "POST", "/v1/chat/completions", "http", True),
        ("inference", "GET", "/api/deployments/dep_1", "http", True),
        ("inference", "GET", "/api/deployments", "http", True),
        ("inference", "POST", "/api/deployments", "http", False),
        ("inference", "GET", "/api/deploymentsx", "http", False),
        ("inference", "GET", "/api/models", "http", True),  # /v1/models lists the adapters one may chat with
        ("inference", "GET", "/api/models/mdl_1", "http", False),
        ("inference", "POST", "/api/models", "http", False),
        ("inference", "GET", "/api/deployments/../jobs", "http", False),  # a later hop may resolve it
        ("inference", "GET", "/v1/../api/jobs", "http", False),
        ("inference", "GET", "/api/jobs", "http", False),
        ("inference", "", "/api/ws/echo", "websocket", False),
        ("full", "DELETE", "/api/jobs/job_1", "http", True),
    ],
)
def test_key_scopes(scope, method, path, kind, allowed):
    principal = Principal(user_id="usr_1", username="a", role="user", via="api_key", scope=scope)
    if allowed:
        check_key_scope(principal, _connection(path, method, kind))
    else:
        with pytest.raises(ApiError, match="API key"):
            check_key_scope(principal, _connection(path, method, kind))
