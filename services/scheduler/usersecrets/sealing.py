"""Encrypting users' secrets: AES-256-GCM under a key of LLMCT_SECRETS_KEY, bound to (user, name).

The associated data names the owner and the secret, so a ciphertext copied to another user's row, or under another
name, does not decrypt. LLMCT_SECRETS_KEY holds one or more keys, comma-separated: the first encrypts, every one
decrypts, and each row says which (`key_id`, a digest of the key, never the key) — a new key goes first, an old
one stays until every row was written again. Each key (32+ characters) is stretched to 256 bits with HKDF.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.common.errors import ApiError

MIN_KEY_CHARS = 32
NONCE_BYTES = 12
KDF_INFO = b"llmct user secrets v1"
ID_CONTEXT = b"llmct-secrets-key-id:"


class Unreadable(Exception):
    """A stored secret that no key decrypts as this user's secret of this name (another key, a moved row)."""


@dataclass(frozen=True)
class Keyring:
    """The keys by id, and the one that encrypts."""

    current: str
    keys: dict[str, AESGCM]

    def seal(self, user_id: str, name: str, value: str) -> tuple[bytes, str]:
        """(nonce + ciphertext, the key's id)."""
        nonce = os.urandom(NONCE_BYTES)
        box = self.keys[self.current].encrypt(nonce, value.encode(), _bound_to(user_id, name))
        return nonce + box, self.current

    def open(self, user_id: str, name: str, sealed: bytes, key_id: str) -> str:
        """The value; `Unreadable` when its key is gone or it is not this user's secret of this name."""
        key = self.keys.get(key_id)
        if key is None:
            raise Unreadable(f"its key ({key_id}) is no longer in LLMCT_SECRETS_KEY")
        try:
            return key.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _bound_to(user_id, name)).decode()
        except (InvalidTag, ValueError) as exc:
            raise Unreadable("it does not decrypt as this user's secret") from exc


def _bound_to(user_id: str, name: str) -> bytes:
    return b"\0".join((b"llmct-user-secret", user_id.encode(), name.encode()))


def key_id(key: str) -> str:
    """A key's name in the table: 16 hex digits of a digest, which tell nothing of the key."""
    return hashlib.sha256(ID_CONTEXT + key.encode()).hexdigest()[:16]


def _aes(key: str) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KDF_INFO).derive(key.encode()))


@functools.cache
def keyring(setting: str) -> Keyring:
    """The keyring of an LLMCT_SECRETS_KEY value; 503 naming the setting when it has no usable key."""
    keys = [key.strip() for key in setting.split(",") if key.strip()]
    if not keys:
        raise ApiError(503, "secrets_unavailable", "user secrets are off: set LLMCT_SECRETS_KEY on the scheduler")
    if any(len(key) < MIN_KEY_CHARS for key in keys):
        raise ApiError(
            503,
            "secrets_unavailable",
            f"user secrets are off: every key of LLMCT_SECRETS_KEY must be {MIN_KEY_CHARS}+ characters",
        )
    return Keyring(current=key_id(keys[0]), keys={key_id(key): _aes(key) for key in keys})
