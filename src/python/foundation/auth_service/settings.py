"""Auth service settings (environment variables; see .env.example beside this file)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from foundation.auth.oauth.settings import OAuthSettings
from foundation.auth_service.account_settings import AccountLifecycleSettings
from foundation.shared.settings import CsvList, ServiceSettings, split_csv


class AuthServiceSettings(AccountLifecycleSettings, OAuthSettings, ServiceSettings):
    """Also Google and Apple sign-in: the OAUTH_* variables (foundation.auth.oauth.settings);
    mail, address verification and password reset (account_settings.py)."""

    service_name: str = "auth-service"

    # Signing keys (see foundation.auth.signing).
    jwt_signing_keys: SecretStr | None = Field(
        default=None, description="PEM texts or PEM file paths, comma-separated; the first signs."
    )
    jwt_keys_dir: Path = Field(
        default=Path(".devstack/keys"), description="Key folder used when JWT_SIGNING_KEYS is unset."
    )
    jwt_key_activation_delay: int = Field(
        default=60, ge=0, description="Seconds a rotated-in key is published before it signs."
    )
    access_token_ttl: int = Field(default=900, ge=30, le=86_400)

    # Refresh tokens and sessions.
    refresh_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    session_idle_timeout: int = Field(default=7 * 86_400, ge=60)
    session_absolute_lifetime: int = Field(default=30 * 86_400, ge=60)
    # Rows of ended sessions are deleted this long after the session ended at the latest.
    session_retention: int = Field(default=86_400, ge=0, description="Seconds.")
    session_purge_interval: float = Field(default=3_600.0, ge=0, description="Seconds; 0 turns it off.")
    # Sensitive actions (DELETE /auth/me) want an access token whose ``auth_time`` is this recent.
    fresh_auth_max_age_seconds: int = Field(default=300, ge=0, description="Seconds.")

    # Passwords: argon2id, OWASP's minimum by default.
    argon2_memory_kib: int = Field(default=19_456, ge=19_456)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)
    password_min_length: int = Field(default=8, ge=8)
    password_max_length: int = Field(default=128, ge=16, le=1024)
    password_min_score: int = Field(default=2, ge=0, le=4, description="zxcvbn score 0..4")

    # Failed-login throttling (fixed windows in Redis; services/login_throttle.py).
    login_max_failures_per_account_address: int = Field(
        default=5, ge=1, description="Per account from one address (an IPv6 /64)."
    )
    login_max_failures_per_account: int = Field(
        default=25, ge=1, description="Per account from all addresses without a device cookie."
    )
    login_max_failures_per_ip: int = Field(default=50, ge=1, description="Per address over all accounts.")
    login_max_failures_per_device: int = Field(default=5, ge=1, description="Per device cookie.")
    login_failure_window: int = Field(default=900, ge=1, description="Seconds.")
    login_device_cookie_secret: SecretStr | None = Field(
        default=None,
        description="HMAC secrets of device cookies, comma-separated, newest first, 32+ characters.",
    )
    login_device_cookie_max_age: int = Field(default=180 * 86_400, ge=3_600, description="Seconds.")

    # Outbox relay (publishes the outbox to the Redis event stream; one replica at a time).
    outbox_relay_enabled: bool = True
    # Commits wake the relay at once; the poll is the safety net (rows of another replica).
    outbox_poll_interval: float = Field(default=2.0, gt=0)
    # After a wake-up the relay waits this long, so that the commits right behind the first
    # share its pass: a pass costs about as much for one event as for a hundred. Events reach
    # the stream at most this much later (the trade-off: docs/performance.md).
    outbox_linger: float = Field(default=0.25, ge=0, le=1)

    # Second factors (services/factors.py): TOTP, recovery codes, passkeys (WebAuthn).
    mfa_issuer: str = Field(
        default="Foundation", max_length=64, description="The name authenticator apps and passkeys show."
    )
    mfa_challenge_ttl_seconds: int = Field(
        default=300, ge=30, le=1800, description="How long a sign-in may wait for its second factor."
    )
    mfa_max_attempts_per_challenge: int = Field(default=5, ge=1, le=20)
    mfa_max_failures_per_account: int = Field(
        default=10, ge=1, description="Wrong second factors per account per LOGIN_FAILURE_WINDOW."
    )
    mfa_recovery_codes: int = Field(default=10, ge=4, le=20)
    # The relying party: the site's registrable domain (or a parent of it) and the exact
    # origins of the pages that run the ceremonies. Browsers refuse a ceremony for an RP ID
    # that is not the page's domain: set both for every deployment (the manifests do).
    webauthn_rp_id: str = Field(default="localhost", min_length=1, max_length=253)
    webauthn_origins: CsvList = Field(default_factory=lambda: ["http://localhost:8000"])

    # Client address: X-Forwarded-For is believed only from these peers (the gateway).
    trusted_proxies: CsvList = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])

    _split = field_validator("trusted_proxies", "webauthn_origins", mode="before")(split_csv)

    @model_validator(mode="after")
    def _webauthn_origins(self) -> AuthServiceSettings:
        if not self.webauthn_origins:
            raise ValueError("WEBAUTHN_ORIGINS needs at least one origin")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    def signing_keys_value(self) -> str | None:
        return self.jwt_signing_keys.get_secret_value() if self.jwt_signing_keys else None

    def required_secrets(self) -> dict[str, Any]:
        # Production may also use a mounted key folder; the app refuses to start with no key
        # at all, and never generates one outside development and tests. The device-cookie
        # secret is checked here when set (no example value); the app refuses to start in
        # production without one (services/device_cookies.py).
        if self.login_device_cookie_secret is not None:
            return {"login_device_cookie_secret": self.login_device_cookie_secret}
        return {}
