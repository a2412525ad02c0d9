"""Users, sessions and tokens made through the real auth-service API (no shortcuts into its
tables), plus settings for an auth-service under test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from foundation.auth_service.settings import AuthServiceSettings
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER, bearer

# Long and unguessable enough for the password policy.
STRONG_PASSWORD = "violet-Harbor-93-quietly-Lamp"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def auth_settings(
    database_url: str, redis_url: str, redis_prefix: str, keys_dir: Path, /, **overrides: Any
) -> AuthServiceSettings:
    """An auth-service configured for tests: its own database, Redis prefix and key folder;
    tokens carry the issuer and audience the other services' test verifiers expect."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "jwt_keys_dir": keys_dir,
        "jwt_issuer": TEST_ISSUER,
        "jwt_audience": TEST_AUDIENCE,
        "db_pool_size": 5,
        "login_max_failures_per_ip": 1000,
        "outbox_relay_enabled": False,
        "session_purge_interval": 0,  # the tests that move the service's clock expect every row
    }
    values.update(overrides)
    return AuthServiceSettings(**values)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int

    @property
    def claims(self) -> dict[str, Any]:
        decoded: dict[str, Any] = jwt.decode(self.access_token, options={"verify_signature": False})
        return decoded

    @property
    def session_id(self) -> uuid.UUID:
        return uuid.UUID(self.claims["sid"])

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)

    @classmethod
    def from_response(cls, response: httpx.Response) -> Tokens:
        assert response.status_code == 200, response.text
        body = response.json()
        return cls(body["access_token"], body["refresh_token"], body["expires_in"])


@dataclass(frozen=True)
class RegisteredUser:
    id: uuid.UUID
    email: str
    password: str


async def register(
    client: httpx.AsyncClient, email: str | None = None, password: str = STRONG_PASSWORD
) -> RegisteredUser:
    email = email or unique_email()
    response = await client.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    return RegisteredUser(uuid.UUID(response.json()["id"]), email, password)


async def login(client: httpx.AsyncClient, user: RegisteredUser, **headers: str) -> Tokens:
    response = await client.post(
        "/auth/login", json={"email": user.email, "password": user.password}, headers=headers
    )
    return Tokens.from_response(response)


async def refresh(client: httpx.AsyncClient, tokens: Tokens) -> Tokens:
    return Tokens.from_response(
        await client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
    )


async def signed_in_user(
    client: httpx.AsyncClient, email: str | None = None
) -> tuple[RegisteredUser, Tokens]:
    user = await register(client, email)
    return user, await login(client, user)
