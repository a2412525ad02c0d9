"""Opaque refresh tokens: 256 random bits, stored only as SHA-256.

When a token is rotated its successor is kept *sealed* (AES-256-GCM) under a key derived
from the presented token itself. Only someone holding that token can open it, so the
database never holds a usable token, yet the immediately previous token can be answered
with the very same successor during the grace window (two tabs refreshing at once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_BYTES = 32
_SEAL_CONTEXT = b"foundation/refresh-token/successor/v1"


def new_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode()


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _seal_key(token: str) -> bytes:
    # Domain-separated from token_hash: the stored hash does not open the seal.
    return hashlib.sha256(_SEAL_CONTEXT + b"\x00" + token.encode()).digest()


def seal_successor(token: str, successor: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(_seal_key(token)).encrypt(nonce, successor.encode(), _SEAL_CONTEXT)


def open_successor(token: str, sealed: bytes) -> str | None:
    try:
        return AESGCM(_seal_key(token)).decrypt(sealed[:12], sealed[12:], _SEAL_CONTEXT).decode()
    except (InvalidTag, ValueError, binascii.Error):
        return None


_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def looks_like_token(value: str) -> bool:
    return _TOKEN_SHAPE.fullmatch(value) is not None
