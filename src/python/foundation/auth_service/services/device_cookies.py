"""Device cookies: proof that this client signed in to this account before (OWASP, "Slow down
online guessing attacks with device cookies").

A successful sign-in is answered with a cookie ``v1.<issued>.<nonce>.<mac>``: ``issued`` in
Unix seconds, 16 random bytes of ``nonce``, and an HMAC-SHA256 over both and the account's
normalised email under a server secret. It names no account (the email comes with the
sign-in request and is checked against the MAC), cannot be made or altered without the
secret, and is void after ``max_age`` whatever the browser keeps. A sign-in presenting a
valid one for its email is judged by the count of that device (the nonce) alone, so other
people's guesses cannot lock the owner out (``login_throttle``).

Secrets: ``LOGIN_DEVICE_COOKIE_SECRET``, comma-separated, newest first (the newest signs, any
verifies: rotation without signing every device out). Production refuses to start without
one; development and tests keep a generated one in the signing-key folder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

VERSION = "v1"
NONCE_BYTES = 16
MIN_SECRET_LENGTH = 32
DEVELOPMENT_SECRET_FILE = "login-device-cookie.key"  # noqa: S105 - a file name
Clock = Callable[[], float]


class DeviceSecretError(ValueError):
    """``LOGIN_DEVICE_COOKIE_SECRET`` is missing (in production) or malformed."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def normalised_email(email: str) -> str:
    """The account an email names (as users are looked up: any letter case, outer spaces)."""
    return email.strip().lower()


def parse_secrets(value: str) -> list[bytes]:
    """``"newest,older"`` -> keys, newest first; each at least 32 characters."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if len(item) < MIN_SECRET_LENGTH:
            raise DeviceSecretError(
                f"each LOGIN_DEVICE_COOKIE_SECRET value needs at least {MIN_SECRET_LENGTH} characters"
            )
    return [item.encode() for item in items]


class DeviceCookies:
    """Issues and checks device cookies; HTTP (the cookie's name and attributes) is the API's."""

    def __init__(self, keys: Sequence[bytes], *, max_age: int, clock: Clock = time.time) -> None:
        if not keys:
            raise DeviceSecretError("at least one device-cookie secret is needed")
        self._keys = list(keys)
        self.max_age = max_age
        self.clock = clock

    @classmethod
    def from_config(
        cls, value: str | None, *, production: bool, data_dir: Path, max_age: int
    ) -> DeviceCookies:
        """Configured secrets; else, outside production, the development one in ``data_dir``."""
        if value and (keys := parse_secrets(value)):
            return cls(keys, max_age=max_age)
        if production:
            raise DeviceSecretError("LOGIN_DEVICE_COOKIE_SECRET must be set in production")
        return cls([development_secret(data_dir)], max_age=max_age)

    def _mac(self, key: bytes, issued: str, nonce: str, email: str) -> str:
        message = f"{VERSION}.{issued}.{nonce}.{normalised_email(email)}".encode()
        return _b64(hmac.new(key, message, hashlib.sha256).digest())

    def issue(self, email: str) -> str:
        issued, nonce = str(int(self.clock())), _b64(secrets.token_bytes(NONCE_BYTES))
        return f"{VERSION}.{issued}.{nonce}.{self._mac(self._keys[0], issued, nonce, email)}"

    def device_of(self, cookie: str | None, email: str) -> str | None:
        """The device id (its nonce) if ``cookie`` is a live cookie this server issued for the
        account of ``email``; None for anything else (absent, altered, expired, another account)."""
        if not cookie or len(cookie) > 256:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != VERSION or not parts[1].isdigit():
            return None
        _, issued, nonce, mac = parts
        try:
            if len(_unb64(nonce)) != NONCE_BYTES:
                return None
        except (binascii.Error, ValueError):
            return None
        age = self.clock() - int(issued)
        if not -60 <= age <= self.max_age:  # a minute's clock skew between replicas
            return None
        valid = False
        for key in self._keys:  # every key is tried: the time taken says nothing of which matched
            valid |= hmac.compare_digest(self._mac(key, issued, nonce, email), mac)
        return nonce if valid else None


def development_secret(data_dir: Path) -> bytes:
    """A generated secret kept in ``data_dir`` (made on first use, mode 0600), shared by the
    development stack's replicas and kept across restarts. Never used in production."""
    path = data_dir / DEVELOPMENT_SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{DEVELOPMENT_SECRET_FILE}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(draft, path)  # appears whole, or not at all
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            draft.unlink()
    [key] = parse_secrets(path.read_text().strip())
    return key
