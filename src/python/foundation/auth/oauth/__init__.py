"""Sign-in with OpenID Connect providers (Google, Apple) and the server-side state it needs."""

from foundation.auth.oauth.apple import AppleProvider, AppleUser, parse_apple_user
from foundation.auth.oauth.base import (
    Identity,
    InvalidGrant,
    InvalidIdToken,
    OpenIDProvider,
    ProviderMetadata,
    ProviderTokens,
    ProviderUnavailable,
)
from foundation.auth.oauth.google import GoogleProvider
from foundation.auth.oauth.registry import OAuthProviders, ProviderNotConfigured, UnknownProvider
from foundation.auth.oauth.settings import OAuthSettings
from foundation.auth.oauth.state import OAuthStateStore, PendingAuthorization

__all__ = [
    "AppleProvider",
    "AppleUser",
    "GoogleProvider",
    "Identity",
    "InvalidGrant",
    "InvalidIdToken",
    "OAuthProviders",
    "OAuthSettings",
    "OAuthStateStore",
    "OpenIDProvider",
    "PendingAuthorization",
    "ProviderMetadata",
    "ProviderNotConfigured",
    "ProviderTokens",
    "ProviderUnavailable",
    "UnknownProvider",
    "parse_apple_user",
]
