"""API keys: random secrets shown once; only their sha256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "clo_"
PREFIX_LEN = 12  # "clo_" + 8 random chars: enough to tell keys apart in listings and logs.


@dataclass(frozen=True)
class NewKey:
    secret: str
    prefix: str
    key_hash: str


def hash_key(secret: str) -> str:
    """sha256 hex of the key; keys carry 256 random bits so no slow KDF is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret=secret, prefix=secret[:PREFIX_LEN], key_hash=hash_key(secret))
