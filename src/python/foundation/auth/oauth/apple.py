"""Sign in with Apple (https://developer.apple.com/documentation/sign_in_with_apple).

What differs from plain OpenID Connect:
- The client secret is an ES256 JWT signed with the team's private key (``kid`` = key id,
  ``iss`` = team id, ``sub`` = client id, ``aud`` = https://appleid.apple.com), valid at most
  six months. We make it on demand, keep it, and make a new one once half its lifetime has
  passed, so it never comes near Apple's limit.
- Asking for ``name``/``email`` requires ``response_mode=form_post``: Apple POSTs ``code``,
  ``state``, ``id_token`` and, on the first authorization only, ``user`` (JSON with the name).
- ``email_verified`` and ``is_private_email`` may arrive as the strings "true"/"false".
- A native app's nonce is commonly sent to Apple as the SHA-256 (hex) of the raw value.
- Deleting an account must revoke the user's token at Apple's revocation endpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from foundation.auth.oauth.base import Identity, OpenIDProvider, claim_is_true

APPLE_METADATA_URL = "https://appleid.apple.com/.well-known/openid-configuration"
APPLE_AUDIENCE = "https://appleid.apple.com"
MAX_CLIENT_SECRET_SECONDS = 15_777_000  # Apple's limit: six months
DEFAULT_CLIENT_SECRET_SECONDS = 30 * 24 * 3600


def load_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """A PEM text, or a path to a PEM file (``OAUTH_APPLE_PRIVATE_KEY``)."""
    text = value if "-----BEGIN" in value else Path(value).read_text()
    problem = "OAUTH_APPLE_PRIVATE_KEY must be the team's P-256 private key (.p8)"
    try:
        key = load_pem_private_key(text.replace("\\n", "\n").strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(problem) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(problem)
    return key


@dataclass(frozen=True)
class AppleUser:
    """The ``user`` JSON Apple sends on the first authorization only."""

    name: str | None
    email: str | None


def parse_apple_user(raw: str | Mapping[str, Any] | None) -> AppleUser | None:
    if not raw:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    name = data["name"] if isinstance(data.get("name"), dict) else {}
    parts = [str(name.get(k, "")).strip() for k in ("firstName", "middleName", "lastName")]
    full = " ".join(p for p in parts if p)[:200] or None
    email = data.get("email")
    return AppleUser(name=full, email=email if isinstance(email, str) and email else None)


class AppleProvider(OpenIDProvider):
    name: ClassVar[str] = "apple"
    scopes: ClassVar[tuple[str, ...]] = ("openid", "name", "email")

    def __init__(
        self,
        *,
        team_id: str,
        key_id: str,
        private_key: str | ec.EllipticCurvePrivateKey,
        metadata_url: str = APPLE_METADATA_URL,
        client_secret_seconds: int = DEFAULT_CLIENT_SECRET_SECONDS,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(metadata_url=metadata_url, clock=clock, **kwargs)
        if not 0 < client_secret_seconds <= MAX_CLIENT_SECRET_SECONDS:
            raise ValueError("an Apple client secret may live at most six months")
        self.team_id = team_id
        self.key_id = key_id
        self._key = (
            private_key
            if isinstance(private_key, ec.EllipticCurvePrivateKey)
            else load_private_key(private_key)
        )
        self._secret_seconds = client_secret_seconds
        self._secret: str | None = None
        self._secret_renew_at = 0.0
        self._now = clock

    async def client_secret(self) -> str:
        now = self._now()
        if self._secret is None or now >= self._secret_renew_at:
            issued = int(now)
            self._secret = jwt.encode(
                {
                    "iss": self.team_id,
                    "iat": issued,
                    "exp": issued + self._secret_seconds,
                    "aud": APPLE_AUDIENCE,
                    "sub": self.client_id,
                },
                self._key,
                algorithm="ES256",
                headers={"kid": self.key_id},
            )
            self._secret_renew_at = issued + self._secret_seconds / 2
        return self._secret

    def authorization_params(self) -> dict[str, str]:
        return {"response_mode": "form_post"}

    def nonce_candidates(self, nonce: str) -> tuple[str, ...]:
        return (nonce, hashlib.sha256(nonce.encode()).hexdigest())

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        base = super().identity(claims)
        return Identity(
            provider=base.provider,
            subject=base.subject,
            email=base.email,
            email_verified=base.email_verified,
            expires_at=base.expires_at,
            name=None,  # Apple never puts the name in the id_token; see parse_apple_user
            claims={**base.claims, "is_private_email": claim_is_true(claims.get("is_private_email"))},
        )
