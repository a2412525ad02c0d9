"""The configured providers of a service, by name ("google", "apple")."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from foundation.auth.oauth.apple import AppleProvider
from foundation.auth.oauth.base import OpenIDProvider
from foundation.auth.oauth.google import GoogleProvider
from foundation.auth.oauth.settings import OAuthSettings
from foundation.shared.errors import NotFound

KNOWN_PROVIDERS = ("google", "apple")


class UnknownProvider(NotFound):
    code = "unknown_provider"
    title = "Unknown sign-in provider"


class ProviderNotConfigured(NotFound):
    code = "provider_not_configured"
    title = "Sign-in provider not configured"


class OAuthProviders:
    def __init__(
        self, providers: Mapping[str, OpenIDProvider], http: httpx.AsyncClient | None = None
    ) -> None:
        self._providers = dict(providers)
        self._http = http

    @classmethod
    def from_settings(cls, settings: OAuthSettings, http: httpx.AsyncClient | None = None) -> OAuthProviders:
        http = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False)
        providers: dict[str, OpenIDProvider] = {}
        if settings.google_configured:
            assert settings.oauth_google_client_id
            assert settings.oauth_google_client_secret
            providers["google"] = GoogleProvider(
                client_id=settings.oauth_google_client_id,
                client_secret=settings.oauth_google_client_secret.get_secret_value(),
                native_client_ids=settings.oauth_google_native_client_ids,
                metadata_url=settings.oauth_google_metadata_url,
                http=http,
            )
        if settings.apple_configured:
            assert settings.oauth_apple_client_id
            assert settings.oauth_apple_private_key
            providers["apple"] = AppleProvider(
                client_id=settings.oauth_apple_client_id,
                team_id=str(settings.oauth_apple_team_id),
                key_id=str(settings.oauth_apple_key_id),
                private_key=settings.oauth_apple_private_key.get_secret_value(),
                native_client_ids=settings.oauth_apple_native_client_ids,
                metadata_url=settings.oauth_apple_metadata_url,
                http=http,
            )
        return cls(providers, http)

    def get(self, name: str) -> OpenIDProvider:
        provider = self._providers.get(name)
        if provider is not None:
            return provider
        if name in KNOWN_PROVIDERS:
            raise ProviderNotConfigured(f"Sign-in with {name.capitalize()} is not configured on this server.")
        raise UnknownProvider(f"There is no sign-in provider called {name[:40]!r}.")

    @property
    def names(self) -> list[str]:
        return sorted(self._providers)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        if self._http is not None:
            await self._http.aclose()
