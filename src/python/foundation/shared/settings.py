"""Typed settings read once from the environment at the edge, then passed in.

Every service subclasses ``ServiceSettings``. ``.env.example`` files list the variables.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that appear in .env.example files and documentation. A production process refuses
# to start with any of them (or with the secret unset).
EXAMPLE_MARKERS = ("change-me", "example", "not-a-real", "dev-only", "xxxxxxxx")

# The issuer a development stack signs with (auth-service behind the gateway on loopback).
DEVELOPMENT_JWT_ISSUER = "http://127.0.0.1:8000/auth"


class Environment(str, Enum):
    development = "development"
    test = "test"
    production = "production"


def split_csv(value: Any) -> Any:
    """``a,b , c`` -> ["a", "b", "c"]; lists pass through."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class ServiceSettings(BaseSettings):
    """What every service reads. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    service_name: str = "service"
    environment: Environment = Environment.development

    database_url: str | None = Field(default=None, description="postgresql+psycopg://user:pass@host:5432/db")
    redis_url: str | None = Field(default=None, description="redis://host:6379/0")
    redis_key_prefix: str = Field(
        default="", description="Prefix for every Redis key and stream (tests isolate with it)."
    )
    redis_max_connections: int = Field(default=100, ge=1, description="Connections per process.")
    redis_pool_timeout: float = Field(
        default=2.0, gt=0, description="Seconds a call waits for a free connection when all are busy."
    )

    # Pool settings (see foundation.database.engine).
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    db_pool_recycle: int = Field(default=1800, description="Seconds; -1 disables.")
    db_pool_pre_ping: bool = True
    db_transaction_pooling: bool = Field(
        default=False,
        description="Behind PgBouncer in transaction mode: no server-side prepared statements.",
    )
    db_echo: bool = False

    log_level: str = "INFO"
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    otel_exporter_otlp_endpoint: str | None = None
    otel_console: bool = False

    jwt_issuer: str = Field(
        default=DEVELOPMENT_JWT_ISSUER, description="`iss` of access tokens: auth-service's public URL."
    )
    jwt_audience: str = "foundation-api"
    jwks_url: str | None = Field(
        default=None, description="auth-service JWKS; services and gateway verify against it."
    )
    docs_enabled: bool = True

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.production

    def required_secrets(self) -> dict[str, Any]:
        """Secret settings by variable name; production refuses missing or example ones."""
        return {}

    @model_validator(mode="after")
    def _refuse_example_secrets_in_production(self) -> ServiceSettings:
        if not self.is_production:
            return self
        for name, value in self.required_secrets().items():
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(raw, list):
                raw = ",".join(str(v) for v in raw)
            if not raw:
                raise ValueError(f"{name.upper()} must be set in production")
            lowered = str(raw).lower()
            if any(marker in lowered for marker in EXAMPLE_MARKERS):
                raise ValueError(f"{name.upper()} still holds an example value; set a real secret")
        # Not secrets, but a production process must not run on the example connection URL of
        # .env.example (its password is `change-me`) nor sign or accept tokens for the
        # development issuer.
        if self.database_url and any(marker in self.database_url.lower() for marker in EXAMPLE_MARKERS):
            raise ValueError(
                "DATABASE_URL still holds an example value (as in .env.example); set the real connection URL"
            )
        issuer = self.jwt_issuer.strip().rstrip("/")
        if issuer == DEVELOPMENT_JWT_ISSUER or any(marker in issuer.lower() for marker in EXAMPLE_MARKERS):
            raise ValueError(
                f"JWT_ISSUER is the development default ({DEVELOPMENT_JWT_ISSUER}) or an example value; "
                "set auth-service's public URL, e.g. https://api.yourdomain/auth"
            )
        return self
