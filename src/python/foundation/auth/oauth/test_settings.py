from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from foundation.auth.oauth import GoogleProvider, OAuthProviders, ProviderNotConfigured, UnknownProvider
from foundation.auth.oauth.settings import OAuthSettings
from foundation.shared.settings import ServiceSettings
from tests.helpers.idp import StandInIdentityProvider


class Settings(OAuthSettings, ServiceSettings):
    jwt_issuer: str = "https://api.acme.io/auth"  # production refuses the development one


def test_lists_come_from_comma_separated_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTH_REDIRECT_URIS", "https://a.example.com/cb, https://b.example.com/cb")
    monkeypatch.setenv("OAUTH_APPLE_NATIVE_CLIENT_IDS", "com.example.app")
    settings = Settings()
    assert settings.oauth_redirect_uris == ["https://a.example.com/cb", "https://b.example.com/cb"]
    assert settings.oauth_apple_native_client_ids == ["com.example.app"]
    assert (
        settings.oauth_google_metadata_url == "https://accounts.google.com/.well-known/openid-configuration"
    )
    assert settings.oauth_apple_metadata_url == "https://appleid.apple.com/.well-known/openid-configuration"


def test_a_provider_is_on_only_when_fully_configured() -> None:
    assert (Settings().google_configured, Settings().apple_configured) == (False, False)
    assert not Settings(oauth_google_client_id="id").google_configured
    assert Settings(oauth_google_client_id="id", oauth_google_client_secret="s").google_configured
    assert not Settings(
        oauth_apple_client_id="id", oauth_apple_team_id="t", oauth_apple_key_id="k"
    ).apple_configured


def test_production_refuses_a_configured_provider_without_real_secrets() -> None:
    google: dict[str, Any] = {"oauth_google_client_id": "id", "oauth_google_client_secret": "real-secret"}
    with pytest.raises(ValidationError, match="OAUTH_TOKEN_ENCRYPTION_KEYS must be set"):
        Settings(environment="production", **google)
    with pytest.raises(ValidationError, match="example value"):
        Settings(
            environment="production",
            oauth_google_client_id="id",
            oauth_google_client_secret="change-me",
            oauth_token_encryption_keys="k:AAAA",
        )
    assert Settings(
        environment="production", oauth_token_encryption_keys="k:AAAA", **google
    ).google_configured
    assert Settings(environment="production").google_configured is False  # providers off: nothing required


async def test_registry_tells_unknown_from_unconfigured_providers() -> None:
    with StandInIdentityProvider.apple() as apple:
        settings = Settings(
            oauth_google_client_id="id",
            oauth_google_client_secret="secret",
            oauth_apple_client_id=apple.client_id,
            oauth_apple_team_id=apple.team_id,
            oauth_apple_key_id=apple.key_id,
            oauth_apple_private_key=apple.team_private_key_pem,
            oauth_apple_metadata_url=apple.metadata_url,
        )
        providers = OAuthProviders.from_settings(settings)
        try:
            assert providers.names == ["apple", "google"]
            assert isinstance(providers.get("google"), GoogleProvider)
            await providers.get("apple").metadata()
        finally:
            await providers.aclose()
    only_google = OAuthProviders.from_settings(
        Settings(oauth_google_client_id="id", oauth_google_client_secret="s")
    )
    try:
        with pytest.raises(ProviderNotConfigured) as off:
            only_google.get("apple")
        assert (off.value.status, off.value.code) == (404, "provider_not_configured")
        with pytest.raises(UnknownProvider) as unknown:
            only_google.get("myspace")
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_provider")
    finally:
        await only_google.aclose()
