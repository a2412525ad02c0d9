"""Sign in with Google (OpenID Connect; https://developers.google.com/identity/openid-connect)."""

from __future__ import annotations

from typing import Any, ClassVar

from foundation.auth.oauth.base import OpenIDProvider, ProviderMetadata

GOOGLE_METADATA_URL = "https://accounts.google.com/.well-known/openid-configuration"
GOOGLE_ISSUER = "https://accounts.google.com"


class GoogleProvider(OpenIDProvider):
    name: ClassVar[str] = "google"
    scopes: ClassVar[tuple[str, ...]] = ("openid", "email", "profile")

    def __init__(self, *, client_secret: str, metadata_url: str = GOOGLE_METADATA_URL, **kwargs: Any) -> None:
        super().__init__(metadata_url=metadata_url, **kwargs)
        self._client_secret = client_secret

    async def client_secret(self) -> str:
        return self._client_secret

    def accepted_issuers(self, metadata: ProviderMetadata) -> list[str]:
        # Google documents that its id_tokens carry either form of its issuer.
        if metadata.issuer == GOOGLE_ISSUER:
            return [GOOGLE_ISSUER, "accounts.google.com"]
        return [metadata.issuer]
