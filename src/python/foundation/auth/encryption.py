"""Authenticated encryption of provider tokens at rest: AES-256-GCM with a key id.

A ciphertext is one ASCII string, ``v1.<kid>.<base64url(nonce || ciphertext || tag)>``, so a
row says which key sealed it and keys can rotate: ``OAUTH_TOKEN_ENCRYPTION_KEYS`` holds
``kid:base64url-32-byte-key`` items, newest first. New values are sealed with the newest key;
any listed key opens. ``needs_reencryption`` finds values sealed with an older key, and
``reencrypt`` moves them to the newest one.

The version and key id are authenticated (they are part of the associated data), and callers
bind a ciphertext to its place (for example ``b"google:<sub>:refresh_token"``) so a value
copied into another row does not decrypt there.

In development, with no keys set, ``development_cipher`` keeps one generated key in a file in
the stack's data folder (created with mode 0600); production refuses to start without keys.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
_KID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEVELOPMENT_KEY_FILE = "oauth-token-encryption.key"


class TokenEncryptionError(Exception):
    """A ciphertext that is malformed, sealed with an unknown key, or tampered with."""


class KeyConfigurationError(ValueError):
    """``OAUTH_TOKEN_ENCRYPTION_KEYS`` (or a key file) is malformed."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenEncryptionKey:
    kid: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KID.match(self.kid):
            raise KeyConfigurationError(
                f"key id {self.kid!r} must be 1-64 characters of letters, digits, '-' or '_'"
            )
        if len(self.key) != KEY_BYTES:
            raise KeyConfigurationError(f"key {self.kid!r} must be {KEY_BYTES} bytes, got {len(self.key)}")

    @classmethod
    def generate(cls, kid: str) -> TokenEncryptionKey:
        return cls(kid, secrets.token_bytes(KEY_BYTES))

    def spec(self) -> str:
        """The ``kid:base64url`` form used in ``OAUTH_TOKEN_ENCRYPTION_KEYS``."""
        return f"{self.kid}:{_b64encode(self.key)}"


def parse_keys(value: str | Sequence[str]) -> list[TokenEncryptionKey]:
    """``"k2:AAAA...,k1:BBBB..."`` (or a list of items) -> keys, newest first."""
    items = value.split(",") if isinstance(value, str) else list(value)
    keys: list[TokenEncryptionKey] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        if not sep:
            raise KeyConfigurationError("each key must look like kid:base64url-32-byte-key")
        try:
            raw = _b64decode(encoded.strip())
        except (binascii.Error, ValueError) as exc:
            raise KeyConfigurationError(f"key {kid.strip()!r} is not base64url") from exc
        keys.append(TokenEncryptionKey(kid.strip(), raw))
    return keys


class TokenCipher:
    """Seals with the newest key; opens with any key it holds."""

    def __init__(self, keys: Sequence[TokenEncryptionKey]) -> None:
        if not keys:
            raise KeyConfigurationError("at least one token encryption key is needed")
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise KeyConfigurationError("token encryption key ids must be unique")
        self._newest = keys[0]
        self._aead = {k.kid: AESGCM(k.key) for k in keys}

    @classmethod
    def from_setting(cls, value: str | Sequence[str]) -> TokenCipher:
        return cls(parse_keys(value))

    @property
    def current_kid(self) -> str:
        return self._newest.kid

    @staticmethod
    def _associated(kid: str, associated_data: bytes) -> bytes:
        return f"{VERSION}.{kid}.".encode() + associated_data

    def encrypt(self, plaintext: str, associated_data: bytes = b"") -> str:
        kid = self._newest.kid
        nonce = os.urandom(NONCE_BYTES)  # 96-bit random nonce: safe far beyond our volume per key
        sealed = self._aead[kid].encrypt(nonce, plaintext.encode(), self._associated(kid, associated_data))
        return f"{VERSION}.{kid}.{_b64encode(nonce + sealed)}"

    @staticmethod
    def key_id(ciphertext: str) -> str:
        """The key id a ciphertext was sealed with (not authenticated until decrypted)."""
        version, kid, body = [*ciphertext.split(".", 2), "", ""][:3]
        if version != VERSION or not kid or not body:
            raise TokenEncryptionError("not a token ciphertext")
        return kid

    def decrypt(self, ciphertext: str, associated_data: bytes = b"") -> str:
        kid = self.key_id(ciphertext)
        aead = self._aead.get(kid)
        if aead is None:
            raise TokenEncryptionError(f"no key with id {kid!r} to decrypt with")
        try:
            raw = _b64decode(ciphertext.split(".", 2)[2])
        except (binascii.Error, ValueError) as exc:
            raise TokenEncryptionError("ciphertext is not base64url") from exc
        if len(raw) < NONCE_BYTES + 16:
            raise TokenEncryptionError("ciphertext is too short")
        try:
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._associated(kid, associated_data))
        except InvalidTag as exc:
            raise TokenEncryptionError("ciphertext failed authentication") from exc
        return plain.decode()

    def needs_reencryption(self, ciphertext: str) -> bool:
        """True when the value was sealed with a key other than the newest."""
        return self.key_id(ciphertext) != self._newest.kid

    def reencrypt(self, ciphertext: str, associated_data: bytes = b"") -> str:
        return self.encrypt(self.decrypt(ciphertext, associated_data), associated_data)


def development_cipher(data_dir: Path) -> TokenCipher:
    """A cipher whose one key lives in ``data_dir`` (made on first use). Development only."""
    path = data_dir / DEVELOPMENT_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key = TokenEncryptionKey.generate("dev-" + datetime.now(UTC).strftime("%Y%m%d"))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(key.spec() + "\n")
    return TokenCipher.from_setting(path.read_text().strip())


def token_cipher(keys: str | Sequence[str] | None, *, production: bool, data_dir: Path) -> TokenCipher:
    """The cipher for a service: configured keys, else (not in production) a development key."""
    if keys and (parsed := parse_keys(keys)):
        return TokenCipher(parsed)
    if production:
        raise KeyConfigurationError("OAUTH_TOKEN_ENCRYPTION_KEYS must be set in production")
    return development_cipher(data_dir)
