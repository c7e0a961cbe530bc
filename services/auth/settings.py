"""Settings of the auth service, declared once and read once at start (services.common.settings)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from services.common.net import Network, parse_networks
from services.common.settings import Settings, env


@dataclass(frozen=True, kw_only=True)
class AuthSettings(Settings):
    """The platform's shared settings and the auth service's own: tokens, registration, the first admin, logins."""

    token_ttl_s: int = env("LLMCT_TOKEN_TTL_S", 12 * 3600, doc="lifetime of an access token in seconds")
    invite_code: str | None = env("INVITE_CODE", None, doc="a standing invite code accepted at registration")
    admin_username: str | None = env(
        "LLMCT_ADMIN_USERNAME", None, doc="the first admin, created at auth start-up if missing"
    )
    admin_password: str | None = env("LLMCT_ADMIN_PASSWORD", None, doc="the first admin's password")
    login_max_failures: int = env(
        "LLMCT_LOGIN_MAX_FAILURES", 5, doc="failed logins per account and client (4x per client) before delays start"
    )
    login_window_s: int = env("LLMCT_LOGIN_WINDOW_S", 3600, doc="how long a failed login counts")
    login_delay_s: int = env("LLMCT_LOGIN_DELAY_S", 1, doc="the first delay after too many failures; it doubles")
    login_max_delay_s: int = env("LLMCT_LOGIN_MAX_DELAY_S", 900, doc="the longest delay between two failed logins")
    register_max: int = env("LLMCT_REGISTER_MAX", 10, doc="registration attempts per client within the window")
    register_window_s: int = env("LLMCT_REGISTER_WINDOW_S", 3600, doc="window in which registrations are counted")
    trusted_proxies: str = env(
        "LLMCT_TRUSTED_PROXIES",
        "127.0.0.0/8,::1/128",
        doc="CIDRs of proxies (the gateway, a TLS proxy) whose X-Forwarded-For names the client",
    )

    @cached_property
    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)
