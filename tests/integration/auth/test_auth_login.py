"""Login: wrong passwords, and growing delays after too many failures per (account, client) and per client."""

import asyncio
import dataclasses
import secrets

import pytest
from litestar.testing import AsyncTestClient

from services.auth import service, throttle
from services.auth.app import create_app
from services.common.errors import ApiError
from tests.integration.auth.helpers import PASSWORD, Api, assert_error, from_peer, unique

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


async def test_a_guessing_client_waits_but_the_right_password_works_from_another_client(api):
    """Failures pause the (account, client) pair only: an attacker cannot lock the owner out."""
    username, _ = await api.register()
    await _fail(api, username, api.settings.login_max_failures)
    _assert_paused(api, await api.login(username))  # the guesser's client, even with the right password
    assert (await api.login(username, address="10.254.254.254")).status_code == 200  # the owner, elsewhere
    _assert_paused(api, await api.login(username))  # the owner's success does not free the guesser


async def _backdate(pool, key: str, seconds: float) -> None:
    """Let `seconds` pass for the failures under `key`."""
    await pool.execute(
        "UPDATE login_failures SET at = at - make_interval(secs => $2) WHERE key = $1", key, float(seconds)
    )


async def test_each_failure_past_the_allowance_doubles_the_wait(api, pool):
    username, _ = await api.register()
    key, base = throttle.pair_key(username, api.address), api.settings.login_delay_s
    await _fail(api, username, api.settings.login_max_failures)
    waits = []
    for _ in range(4):
        # The last failure just now: Argon2 on a busy machine must not eat into the wait being measured.
        await pool.execute("UPDATE login_failures SET at = now() WHERE key = $1", key)
        paused = await api.login(username, "not-the-password")
        _assert_paused(api, paused)
        waits.append(int(paused.headers["Retry-After"]))
        await _backdate(pool, key, waits[-1] + 0.1)  # the wait is over: one more guess is let through
        await _fail(api, username, 1)
    assert waits == [base, base * 2, base * 4, base * 8]


async def test_the_wait_is_capped(api, pool):
    username, _ = await api.register()
    key = throttle.pair_key(username, api.address)
    # Many doublings' worth of failures, as if each had waited its turn.
    await pool.execute("INSERT INTO login_failures (key) SELECT $1 FROM generate_series(1, $2)", key, 60)
    paused = await api.login(username)
    _assert_paused(api, paused)
    assert int(paused.headers["Retry-After"]) == api.settings.login_max_delay_s


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
    key = throttle.pair_key(username, api.address)
    count = await pool.fetchval("SELECT count(*) FROM login_failures WHERE key = $1", key)
    assert count == api.settings.login_max_failures


async def test_address_pauses_after_four_times_max_failures(api):
    username, _ = await api.register()
    # The gateway appends the real peer, so only the last X-Forwarded-For entry counts.
    for n in range(api.settings.login_max_failures * 4):
        await _fail(api, unique("ghost"), 1, address=f"192.0.2.{n}, {api.address}")
    _assert_paused(api, await api.login(username))
    assert (await api.login(username, address="10.253.253.253")).status_code == 200


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(settings):
    """A client that talks to auth directly cannot pick a fresh address per guess with X-Forwarded-For."""
    peer = f"203.0.113.{secrets.randbelow(250)}"
    async with AsyncTestClient(app=from_peer(create_app(settings), peer)) as client:
        api = Api(client, settings)
        username, _ = await api.register()
        for n in range(settings.login_max_failures):
            await _fail(api, username, 1, address=f"10.77.{n}.1")
        _assert_paused(api, await api.login(username, address="10.77.200.1"))


async def test_an_ipv6_client_cannot_take_a_fresh_address_of_its_64_per_guess(api):
    username, _ = await api.register()
    prefix = f"2001:db8:{secrets.randbelow(65535):x}:{secrets.randbelow(65535):x}"
    for n in range(api.settings.login_max_failures):
        await _fail(api, username, 1, address=f"{prefix}::{n + 1:x}")
    _assert_paused(api, await api.login(username, address=f"{prefix}:ffff::1"))


async def test_x_forwarded_for_is_read_through_every_trusted_proxy(settings):
    """A TLS proxy in front of the gateway: with it trusted, each client behind it is its own client."""
    tls_proxy = "198.51.100.10"
    trusting = dataclasses.replace(settings, trusted_proxies=f"127.0.0.0/8,{tls_proxy}/32")
    async with AsyncTestClient(app=from_peer(create_app(trusting), "127.0.0.1")) as client:
        api = Api(client, trusting)
        username, _ = await api.register()
        attacker, owner = f"{api.address}, {tls_proxy}", f"10.250.0.{secrets.randbelow(250)}, {tls_proxy}"
        await _fail(api, username, trusting.login_max_failures, address=attacker)
        _assert_paused(api, await api.login(username, address=attacker))
        assert (await api.login(username, address=owner)).status_code == 200


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
