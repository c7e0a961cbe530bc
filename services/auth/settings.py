"""Settings of the auth service, declared once and read once at start (services.common.settings)."""

from __future__ import annotations

from dataclasses import dataclass

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
        "LLMCT_LOGIN_MAX_FAILURES", 5, doc="failed logins per account (4x per address) before a pause"
    )
    login_window_s: int = env("LLMCT_LOGIN_WINDOW_S", 300, doc="window in which failed logins are counted")
