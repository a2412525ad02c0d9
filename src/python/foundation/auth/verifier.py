"""Access-token verification: one code path for every service and the gateway.

The algorithm list is fixed here, never taken from the token: ``alg: none`` and HMAC tokens
(including one "signed" with a public key as an HMAC secret) are refused before any key is
used. ``typ`` must be ``at+jwt`` (RFC 9068), and ``iss``, ``aud``, ``exp``, ``nbf``, ``iat``,
``sub``, ``sid`` and ``jti`` must be present and right.

Warm cache: a token that verified before is remembered (by its exact bytes) until its own
``exp``, so repeated requests skip the signature check. Nothing outlives the token or its key:
a warm hit still asks the key source for the token's ``kid`` (a dict read while the JWKS is
fresh), so once a withdrawn key drops out of the refreshed set its tokens are refused too. The
session deny-list is checked by the caller on every request, so revocation still applies.
No trustworthy key set at all (auth-service's JWKS never fetched, or stale past its bound)
is a 503 ``keys_unavailable``, not a 401 that would make clients drop good tokens.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence

import jwt

from foundation.auth.jwks import JwksUnavailable
from foundation.auth.keys import JwksKeySource, KeySource, StaticKeySource
from foundation.auth.principal import Principal
from foundation.shared.errors import ServiceUnavailable, Unauthorized
from foundation.shared.logging import get_logger
from foundation.shared.settings import ServiceSettings

ALGORITHMS: tuple[str, ...] = ("EdDSA", "ES256")
TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret


def _invalid(detail: str) -> Unauthorized:
    return Unauthorized(detail, code="invalid_token")


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ALGORITHMS,
        leeway: int = 0,
        cache_size: int = 50_000,
    ) -> None:
        unsafe = {alg for alg in algorithms if alg == "none" or alg.upper().startswith("HS")}
        if unsafe:
            raise ValueError(f"refusing unsafe algorithms: {sorted(unsafe)}")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self._cache: OrderedDict[str, tuple[Principal, str]] = OrderedDict()
        self._cache_size = cache_size

    async def verify(self, token: str) -> Principal:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            principal, kid = cached
            if principal.expires_at + self.leeway > now:
                await self._key(kid, forget=token)  # the key must still be published
                return principal
            self._cache.pop(token, None)
        principal, kid = await self._verify_uncached(token)
        self._remember(token, principal, kid)
        return principal

    async def aclose(self) -> None:
        """Close the key source's HTTP client, when it has one."""
        closer = getattr(self.keys, "aclose", None)
        if closer is not None:
            await closer()

    def _remember(self, token: str, principal: Principal, kid: str) -> None:
        self._cache[token] = (principal, kid)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _key(self, kid: str, *, forget: str | None = None) -> jwt.PyJWK:
        try:
            return await self.keys.key_for(kid)
        except KeyError as exc:
            if forget is not None:
                self._cache.pop(forget, None)
            raise _invalid("The access token was signed with an unknown key.") from exc
        except JwksUnavailable as exc:
            raise ServiceUnavailable(
                "The keys that verify access tokens are unavailable; try again shortly.",
                code="keys_unavailable",
            ) from exc

    async def _verify_uncached(self, token: str) -> tuple[Principal, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _invalid("The access token is malformed.") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise _invalid("The access token's algorithm is not accepted.")
        if str(header.get("typ", "")).lower() not in {TOKEN_TYPE, "application/at+jwt"}:
            raise _invalid("The token is not an access token.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("The access token names no key.")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "sid", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise _invalid(f"The access token is not valid: {exc}.") from exc
        try:
            roles = claims.get("roles", [])
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise ValueError("roles must be a list of strings")
            principal = Principal(
                user_id=uuid.UUID(str(claims["sub"])),
                session_id=uuid.UUID(str(claims["sid"])),
                roles=frozenset(roles),
                token_id=str(claims["jti"]),
                expires_at=int(claims["exp"]),
            )
        except (ValueError, TypeError) as exc:
            raise _invalid("The access token's claims are malformed.") from exc
        return principal, kid


def service_verifier(settings: ServiceSettings) -> TokenVerifier:
    """``build_verifier``, except that outside production a missing JWKS_URL gives a verifier
    that refuses every token (logged), so a service can still start and answer /health."""
    if settings.jwks_url or settings.is_production:
        return build_verifier(settings)
    get_logger(__name__).warning("JWKS_URL is not set: every access token will be refused")
    return TokenVerifier(
        StaticKeySource({"keys": []}), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )


def build_verifier(settings: ServiceSettings) -> TokenVerifier:
    if not settings.jwks_url:
        raise RuntimeError("JWKS_URL is not set: point it at auth-service's /auth/.well-known/jwks.json")
    return TokenVerifier(
        JwksKeySource(settings.jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
