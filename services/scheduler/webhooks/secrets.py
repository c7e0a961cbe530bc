"""An endpoint's signing secret (Standard Webhooks' `whsec_<base64>`), derived rather than stored.

The table keeps a random salt per endpoint; the secret is HMAC-SHA256(LLMCT_SECRET_KEY, salt). A copy of the
database alone signs nothing, a rotation is a new salt, and the API shows the secret once (at creation and at each
rotation). Changing LLMCT_SECRET_KEY changes every endpoint's secret: rotate each one after it (docs/webhooks.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
CONTEXT = b"llmct-webhook-secret:"


def new_salt() -> str:
    return secrets.token_hex(16)


def endpoint_secret(secret_key: str, salt: str) -> str:
    """The secret receivers verify with: `whsec_` and 32 bytes in base64."""
    raw = hmac.new(secret_key.encode(), CONTEXT + salt.encode(), hashlib.sha256).digest()
    return PREFIX + base64.b64encode(raw).decode()
