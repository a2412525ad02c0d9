"""OAuth settings (environment variables), mixed into the settings of the service that signs in.

A provider is on when its client settings are all set, and off (404
``provider_not_configured``) otherwise. The metadata URLs default to the real providers'
discovery documents; pointing them elsewhere (a local stand-in) is configuration only.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from foundation.auth.oauth.apple import APPLE_METADATA_URL
from foundation.auth.oauth.google import GOOGLE_METADATA_URL
from foundation.shared.settings import EXAMPLE_MARKERS, CsvList, split_csv


class OAuthSettings(BaseModel):
    oauth_google_client_id: str | None = Field(default=None, description="Web client id.")
    oauth_google_client_secret: SecretStr | None = None
    oauth_google_native_client_ids: CsvList = Field(
        default_factory=list, description="Android/iOS client ids accepted as id_token audiences."
    )
    oauth_google_metadata_url: str = GOOGLE_METADATA_URL

    oauth_apple_client_id: str | None = Field(default=None, description="Services ID (web).")
    oauth_apple_native_client_ids: CsvList = Field(
        default_factory=list, description="App bundle ids accepted as id_token audiences."
    )
    oauth_apple_team_id: str | None = None
    oauth_apple_key_id: str | None = None
    oauth_apple_private_key: SecretStr | None = Field(default=None, description="PEM text or a path to it.")
    oauth_apple_metadata_url: str = APPLE_METADATA_URL

    oauth_redirect_uris: CsvList = Field(default_factory=list, description="Allow-list, exact match.")
    oauth_token_encryption_keys: SecretStr | None = Field(
        default=None, description="kid:base64url-32-byte-key, comma-separated, newest first."
    )
    oauth_state_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    oauth_data_dir: Path = Field(
        default=Path(".devstack"), description="Development only: where a generated token key is kept."
    )

    # Named apart from other mixins' validators: the same attribute name would replace this one.
    _split_oauth_lists = field_validator(
        "oauth_google_native_client_ids",
        "oauth_apple_native_client_ids",
        "oauth_redirect_uris",
        mode="before",
    )(split_csv)

    @property
    def google_configured(self) -> bool:
        return bool(self.oauth_google_client_id and self.oauth_google_client_secret)

    @property
    def apple_configured(self) -> bool:
        return bool(
            self.oauth_apple_client_id
            and self.oauth_apple_team_id
            and self.oauth_apple_key_id
            and self.oauth_apple_private_key
        )

    @model_validator(mode="after")
    def _oauth_secrets_in_production(self) -> OAuthSettings:
        if getattr(self, "environment", None) != "production":  # Environment is a str enum
            return self
        secrets: dict[str, SecretStr | None] = {}
        if self.google_configured:
            secrets["oauth_google_client_secret"] = self.oauth_google_client_secret
        if self.apple_configured:
            secrets["oauth_apple_private_key"] = self.oauth_apple_private_key
        if secrets:
            secrets["oauth_token_encryption_keys"] = self.oauth_token_encryption_keys
        for name, value in secrets.items():
            raw = value.get_secret_value() if value else ""
            if not raw:
                raise ValueError(f"{name.upper()} must be set in production")
            if any(marker in raw.lower() for marker in EXAMPLE_MARKERS):
                raise ValueError(f"{name.upper()} still holds an example value; set a real secret")
        return self
