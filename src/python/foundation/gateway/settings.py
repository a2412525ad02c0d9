"""Gateway settings (environment variables; see .env.example beside this file)."""

from __future__ import annotations

import ipaddress
from enum import Enum

from pydantic import Field, field_validator, model_validator

from foundation.shared.client_address import IpNetwork
from foundation.shared.settings import CsvList, ServiceSettings, split_csv


class FailureMode(str, Enum):
    """What the rate limiter does when Redis cannot be reached."""

    open = "open"  # let the request through (logged, shown in /health)
    closed = "closed"  # refuse it with 503


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"

    # Upstream services. AUTH_URL may list several replicas (comma-separated): round-robin.
    auth_url: CsvList = Field(default_factory=lambda: ["http://127.0.0.1:8001"])
    history_url: CsvList = Field(default_factory=lambda: ["http://127.0.0.1:8002"])
    stats_url: CsvList = Field(default_factory=lambda: ["http://127.0.0.1:8003"])

    upstream_connect_timeout: float = Field(default=2.0, gt=0, description="Seconds to open a connection.")
    upstream_read_timeout: float = Field(
        default=30.0, gt=0, description="Seconds of silence from a service before 504."
    )
    upstream_pool_size: int = Field(default=256, ge=1, description="Keep-alive connections per gateway.")
    upstream_queue_timeout: float = Field(
        default=5.0, gt=0, description="Seconds a request waits for a free upstream slot before 503."
    )
    request_body_timeout: float = Field(
        default=15.0, gt=0, description="Seconds for a whole request body to arrive before 408."
    )
    upstream_keepalive_timeout: float = Field(default=30.0, gt=0)
    redis_timeout: float = Field(default=0.5, gt=0, description="Seconds per Redis call at the edge.")
    jwks_refresh_interval: float = Field(
        default=30.0, ge=0, description="Least seconds between JWKS fetches caused by unknown kids."
    )
    health_timeout: float = Field(default=1.5, gt=0, description="Per check in GET /health.")
    openapi_cache_seconds: float = Field(default=60.0, ge=0)

    # Edge hygiene.
    cors_origins: CsvList = Field(default_factory=list, description="Exact origins; none by default.")
    trusted_proxies: CsvList = Field(
        default_factory=list, description="Addresses/CIDRs whose X-Forwarded-For / -Proto are believed."
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=0, description="413 above this (1 MiB).")
    hsts_max_age: int = Field(default=31_536_000, ge=0)

    # TLS termination (Granian reads the same files; see `gateway serve --help`).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    https_redirect: bool = Field(default=False, description="308 plain-HTTP requests to https://.")
    https_port: int = Field(default=443, ge=1, le=65535, description="Port named in HTTPS redirects.")

    # Rate limits: "<count>/<seconds>" windows.
    rate_limit_enabled: bool = True
    rate_limit_user: str = Field(default="600/60", description="Per authenticated user.")
    rate_limit_anonymous: str = Field(default="120/60", description="Per client address, no token.")
    rate_limit_strict: str = Field(
        default="10/60", description="Per client address on register, login, refresh and OAuth."
    )
    rate_limit_fail_mode: FailureMode = Field(
        default=FailureMode.open, description="General traffic when Redis is unreachable."
    )
    rate_limit_strict_fail_mode: FailureMode = Field(
        default=FailureMode.closed, description="Sign-in routes when Redis is unreachable."
    )

    @field_validator("auth_url", "history_url", "stats_url", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("auth_url", "history_url", "stats_url")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one URL is needed")
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return [url.rstrip("/") for url in value]

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # raises ValueError on garbage
        return value

    @field_validator("rate_limit_user", "rate_limit_anonymous", "rate_limit_strict")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
        return self

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file and self.tls_key_file)

    @property
    def effective_jwks_url(self) -> str:
        return self.jwks_url or f"{self.auth_url[0]}/auth/.well-known/jwks.json"

    def trusted_networks(self) -> list[IpNetwork]:
        return [ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies]


def parse_rate(text: str) -> tuple[int, int]:
    """``"10/60"`` -> (10, 60): ten requests per sixty seconds."""
    count, sep, window = text.partition("/")
    try:
        limit, seconds = int(count), int(window)
    except ValueError:
        raise ValueError(f"rate {text!r} is not '<count>/<seconds>'") from None
    if not sep or limit < 1 or seconds < 1:
        raise ValueError(f"rate {text!r} needs a positive count and window")
    return limit, seconds
