from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from foundation.shared.settings import ServiceSettings


class SecretiveSettings(ServiceSettings):
    api_secret: SecretStr | None = None

    def required_secrets(self) -> dict[str, Any]:
        return {"api_secret": self.api_secret}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    settings = ServiceSettings()
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.log_level == "DEBUG"
    assert settings.db_pool_size == 3


def test_production_refuses_a_missing_secret_naming_it() -> None:
    with pytest.raises(ValidationError, match="API_SECRET must be set"):
        SecretiveSettings(environment="production")


def test_production_refuses_an_example_secret() -> None:
    with pytest.raises(ValidationError, match="API_SECRET still holds an example value"):
        SecretiveSettings(environment="production", api_secret="change-me-please")


def test_development_accepts_missing_secrets_and_production_real_ones() -> None:
    assert SecretiveSettings().api_secret is None
    real = SecretiveSettings(
        environment="production", api_secret="k8Qw2vZ9u1TqLx0", jwt_issuer="https://api.acme.io/auth"
    )
    assert real.is_production


def test_invalid_setting_is_refused() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(db_pool_size=0)


def test_production_refuses_an_example_database_url_naming_it() -> None:
    example = "postgresql+psycopg://auth:change-me@127.0.0.1:5432/auth"  # as in .env.example
    with pytest.raises(ValidationError, match="DATABASE_URL still holds an example value"):
        ServiceSettings(environment="production", database_url=example, jwt_issuer="https://api.acme.io/auth")


def test_production_refuses_the_default_jwt_issuer_naming_it() -> None:
    with pytest.raises(ValidationError, match="JWT_ISSUER"):
        ServiceSettings(environment="production", database_url="postgresql://auth:k8Qw2vZ9u1@db:5432/auth")
    with pytest.raises(ValidationError, match="JWT_ISSUER"):
        ServiceSettings(environment="production", jwt_issuer="http://127.0.0.1:8000/auth")


def test_production_accepts_a_real_database_url_and_issuer_and_development_the_defaults() -> None:
    real = ServiceSettings(
        environment="production",
        database_url="postgresql://auth:k8Qw2vZ9u1@db.internal:5432/auth",
        jwt_issuer="https://api.acme.io/auth",
    )
    assert real.is_production
    assert ServiceSettings(database_url="postgresql+psycopg://auth:change-me@127.0.0.1:5432/auth").jwt_issuer
