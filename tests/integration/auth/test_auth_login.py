"""Login: wrong passwords, and the pause after too many failures per account and per address."""

import asyncio

import pytest

from services.auth import service
from services.common.errors import ApiError
from tests.integration.auth.helpers import PASSWORD, assert_error, unique

pytestmark = pytest.mark.integration


async def test_login_returns_a_bearer_token(api):
    username, _ = await api.register()
    r = await api.login(username)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == api.settings.token_ttl_s
    assert body["access_token"].count(".") == 2


async def test_wrong_password_is_401(api):
    username, _ = await api.register()
    assert_error(await api.login(username, "not-the-password"), 401, "invalid_credentials", None)


async def test_unknown_user_reads_like_a_wrong_password(api):
    username, _ = await api.register()
    wrong = (await api.login(username, "not-the-password")).json()
    unknown = (await api.login(unique("ghost"), "not-the-password")).json()
    assert wrong == unknown


async def test_disabled_account_cannot_log_in(api, pool):
    username, _ = await api.register()
    await pool.execute("UPDATE users SET disabled = true WHERE username = $1", username)
    assert_error(await api.login(username), 401, "invalid_credentials")


async def _fail(api, username: str, times: int, **kwargs) -> None:
    for _ in range(times):
        assert_error(await api.login(username, "not-the-password", **kwargs), 401, "invalid_credentials")


def _assert_paused(api, response) -> None:
    assert_error(response, 429, "too_many_attempts")
    assert 1 <= int(response.headers["Retry-After"]) <= api.settings.login_window_s


async def test_account_pauses_after_max_failures_even_with_the_right_password(api):
    username, _ = await api.register()
    await _fail(api, username, api.settings.login_max_failures)
    _assert_paused(api, await api.login(username))
    _assert_paused(api, await api.login(username, address="10.254.254.254"))  # the account, from anywhere


async def test_success_resets_the_account_count(api):
    username, _ = await api.register()
    limit = api.settings.login_max_failures
    await _fail(api, username, limit - 1)
    assert (await api.login(username)).status_code == 200
    await _fail(api, username, limit - 1)
    assert (await api.login(username)).status_code == 200


async def test_refused_attempts_do_not_extend_the_pause(api, pool):
    username, _ = await api.register()
    await _fail(api, username, api.settings.login_max_failures)
    for _ in range(3):
        _assert_paused(api, await api.login(username))
    count = await pool.fetchval("SELECT count(*) FROM login_failures WHERE key = $1", f"user:{username}")
    assert count == api.settings.login_max_failures


async def test_address_pauses_after_four_times_max_failures(api):
    username, _ = await api.register()
    # The gateway appends the real peer, so only the last X-Forwarded-For entry counts.
    for n in range(api.settings.login_max_failures * 4):
        await _fail(api, unique("ghost"), 1, address=f"192.0.2.{n}, {api.address}")
    _assert_paused(api, await api.login(username))
    assert (await api.login(username, address="10.253.253.253")).status_code == 200


async def test_parallel_guesses_cannot_slip_past_the_limit(pool, settings):
    """Checked before counted, a burst of guesses all passed the check; now at most the limit are tried."""
    username = unique("burst")

    async def guess() -> int:
        try:
            await service.login(pool, settings, username=username, password="guess-guess-1", address="198.51.100.7")
        except ApiError as exc:
            return exc.status
        return 200

    statuses = await asyncio.gather(*(guess() for _ in range(settings.login_max_failures * 3)))
    assert statuses.count(401) <= settings.login_max_failures
    assert set(statuses) <= {401, 429}


async def test_login_body_must_fit(api):
    r = await api.client.post("/api/auth/login", json={"username": "someone"}, headers={"X-Forwarded-For": api.address})
    assert_error(r, 422, "invalid_field", "password")
    r = await api.client.post(
        "/api/auth/login",
        json={"username": "someone", "password": PASSWORD, "otp": 1},
        headers={"X-Forwarded-For": api.address},
    )
    assert_error(r, 422, "invalid_field", "otp")
