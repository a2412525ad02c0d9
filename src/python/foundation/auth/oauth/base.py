"""OpenID Connect sign-in with one provider, configured from its discovery document.

``OpenIDProvider`` builds the authorization URL (state, nonce, PKCE S256), exchanges a code
at the token endpoint, verifies id_tokens against the provider's JWKS (signature, ``iss``,
``aud``, ``exp``, ``iat``, ``nonce``; ``at_hash`` when an access token came with it) and calls
the revocation endpoint. Subclasses (``google.py``, ``apple.py``) add what differs: how the
client authenticates, extra authorization parameters, how claims become an ``Identity``.

Library choice: Authlib builds the protocol messages (authorization URI, token request,
PKCE challenge, the ``at_hash`` half-hash); PyJWT, which also signs and verifies
auth-service's own tokens, does every JOSE operation (id_token signature and claims, the JWKS
keys, Apple's client-secret JWT), so one library, one set of errors and one algorithm
allow-list cover all of them. The provider's JWKS is kept by ``foundation.auth.keys``'s
``JwksKeySource``, the same refresh policy as auth-service's own keys: a key the provider
withdraws stops verifying within minutes. HTTP goes through a plain ``httpx.AsyncClient``
rather than Authlib's httpx integration, which is deprecated in favour of ``httpx2`` and
would hide the timeouts and error mapping we want to control.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import jwt
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oidc.core.util import create_half_hash

from foundation.auth.jwks import JwksPolicy, JwksUnavailable, UnknownSigningKey
from foundation.auth.keys import PROVIDER_KEY_TYPES, JwksKeySource
from foundation.auth.oauth.pkce import s256_challenge
from foundation.shared.errors import BadGateway, BadRequest, Unauthorized

log = logging.getLogger(__name__)

# Asymmetric algorithms only: never "none" or an HMAC keyed with something public.
SIGNING_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})
WELL_KNOWN_PATH = "/.well-known/openid-configuration"


class InvalidIdToken(Unauthorized):
    code = "invalid_id_token"
    title = "Invalid id_token"


class InvalidGrant(BadRequest):
    code = "invalid_grant"
    title = "Authorization code refused"


class ProviderUnavailable(BadGateway):
    code = "provider_unavailable"
    title = "Identity provider unavailable"


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of an OIDC discovery document we use."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    revocation_endpoint: str | None = None
    id_token_signing_alg_values_supported: tuple[str, ...] = ("RS256",)

    @classmethod
    def from_document(cls, document: Mapping[str, Any], metadata_url: str) -> ProviderMetadata:
        try:
            issuer = str(document["issuer"])
            meta = cls(
                issuer=issuer,
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
                revocation_endpoint=document.get("revocation_endpoint"),
                id_token_signing_alg_values_supported=tuple(
                    document.get("id_token_signing_alg_values_supported") or ("RS256",)
                ),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"discovery document lacks {exc}") from exc
        # OpenID Connect Discovery 1.0, section 4.3: the issuer must be the URL it came from.
        if issuer.rstrip("/") + WELL_KNOWN_PATH != metadata_url:
            raise ValueError(f"discovery document at {metadata_url} names another issuer ({issuer})")
        return meta


@dataclass(frozen=True)
class ProviderTokens:
    """A token endpoint's answer (RFC 6749 section 5.1, with OpenID's id_token)."""

    id_token: str
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None
    scope: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in. ``(provider, subject)`` is the stable identity."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    expires_at: int
    name: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)


def claim_is_true(value: object) -> bool:
    """OIDC booleans; Apple sends some as the strings "true"/"false"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


class OpenIDProvider:
    name: ClassVar[str] = "oidc"
    scopes: ClassVar[tuple[str, ...]] = ("openid", "email", "profile")

    def __init__(
        self,
        *,
        metadata_url: str,
        client_id: str,
        native_client_ids: Iterable[str] = (),
        http: httpx.AsyncClient | None = None,
        leeway: int = 60,
        metadata_max_age: float = 24 * 3600.0,
        jwks_policy: JwksPolicy | None = None,
        jwks_clock: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata_url = metadata_url
        self.client_id = client_id
        # id_tokens from the web flow carry the web client id; a native SDK's carry the app's id.
        self.audiences: tuple[str, ...] = (client_id, *[c for c in native_client_ids if c and c != client_id])
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False)
        self.leeway = leeway
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._metadata_max_age = metadata_max_age
        self.jwks = JwksKeySource(
            self._jwks_uri,
            policy=jwks_policy,
            key_types=PROVIDER_KEY_TYPES,
            what=f"{self.name} JWKS",
            client=self._http,
            clock=jwks_clock,
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- discovery ---------------------------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is None or time.monotonic() - self._metadata_at > self._metadata_max_age:
            try:
                response = await self._http.get(self.metadata_url, headers={"Accept": "application/json"})
                response.raise_for_status()
                self._metadata = ProviderMetadata.from_document(response.json(), self.metadata_url)
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("oauth discovery failed", extra={"provider": self.name, "error": str(exc)})
                raise ProviderUnavailable(f"{self.name} discovery document is unavailable") from exc
            self._metadata_at = time.monotonic()
        return self._metadata

    async def _jwks_uri(self) -> str:
        return (await self.metadata()).jwks_uri

    def accepted_issuers(self, metadata: ProviderMetadata) -> list[str]:
        return [metadata.issuer]

    # -- authorization request ---------------------------------------------------------------

    def authorization_params(self) -> dict[str, str]:
        """Extra query parameters this provider needs (e.g. Apple's ``response_mode``)."""
        return {}

    async def authorization_url(
        self, redirect_uri: str, *, state: str, nonce: str, code_verifier: str
    ) -> str:
        metadata = await self.metadata()
        return str(
            prepare_grant_uri(
                metadata.authorization_endpoint,
                client_id=self.client_id,
                response_type="code",
                redirect_uri=redirect_uri,
                scope=" ".join(self.scopes),
                state=state,
                nonce=nonce,
                code_challenge=s256_challenge(code_verifier),
                code_challenge_method="S256",
                **self.authorization_params(),
            )
        )

    # -- client authentication ---------------------------------------------------------------

    async def client_secret(self) -> str:
        raise NotImplementedError

    async def _client_auth(self) -> dict[str, str]:
        # client_secret_post: Google and Apple both accept it; Apple accepts nothing else.
        return {"client_id": self.client_id, "client_secret": await self.client_secret()}

    # -- token endpoint ----------------------------------------------------------------------

    async def exchange_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> ProviderTokens:
        metadata = await self.metadata()
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
            **await self._client_auth(),
        )
        data = await self._post_form(metadata.token_endpoint, body, "token")
        id_token = data.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderUnavailable(f"{self.name} answered the code exchange without an id_token")
        expires_in = data.get("expires_in")
        return ProviderTokens(
            id_token=id_token,
            access_token=data.get("access_token"),
            refresh_token=data.get("refresh_token"),
            expires_in=(
                int(expires_in) if isinstance(expires_in, int | str) and str(expires_in).isdigit() else None
            ),
            scope=data.get("scope"),
        )

    async def revoke(self, token: str, token_type_hint: str = "refresh_token") -> None:  # noqa: S107
        """Revoke ``token`` at the provider (RFC 7009). Raises ``ProviderUnavailable`` on failure."""
        metadata = await self.metadata()
        if not metadata.revocation_endpoint:
            raise ProviderUnavailable(f"{self.name} has no revocation endpoint")
        form = {"token": token, "token_type_hint": token_type_hint, **await self._client_auth()}
        await self._post_form(metadata.revocation_endpoint, form, "revocation", expect_json=False)

    async def _post_form(
        self, url: str, body: str | Mapping[str, str], what: str, *, expect_json: bool = True
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        try:
            if isinstance(body, str):
                response = await self._http.post(url, content=body, headers=headers)
            else:
                response = await self._http.post(url, data=dict(body), headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{self.name} {what} endpoint is unreachable") from exc
        if response.status_code == 400 and what == "token":
            error = _json_or_empty(response).get("error", "invalid_grant")
            raise InvalidGrant(f"{self.name} refused the authorization code ({error})")
        if response.status_code != 200:
            log.warning(
                "oauth provider error",
                extra={"provider": self.name, "endpoint": what, "status": response.status_code},
            )
            raise ProviderUnavailable(f"{self.name} {what} endpoint answered {response.status_code}")
        if not expect_json:
            return {}
        data = _json_or_empty(response)
        if not data:
            raise ProviderUnavailable(f"{self.name} {what} endpoint did not answer JSON")
        return data

    # -- id_token ----------------------------------------------------------------------------

    def nonce_candidates(self, nonce: str) -> tuple[str, ...]:
        """Values an id_token's ``nonce`` may hold for the ``nonce`` we were given."""
        return (nonce,)

    async def verify_id_token(
        self, id_token: str, *, nonce: str, access_token: str | None = None, native: bool = False
    ) -> Identity:
        """Verify signature, ``iss``, ``aud``, ``exp``, ``iat`` and ``nonce``; return who signed in.

        ``native``: the token came from an app's SDK, so its nonce may be in the provider's
        native form (``nonce_candidates``).
        """
        metadata = await self.metadata()
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise InvalidIdToken("id_token is not a signed JWT") from exc
        alg = header.get("alg")
        allowed = SIGNING_ALGORITHMS.intersection(metadata.id_token_signing_alg_values_supported)
        if alg not in allowed:
            raise InvalidIdToken("id_token is signed with an algorithm we do not accept")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidIdToken("id_token names no signing key")
        try:
            key = await self.jwks.key_for(kid)
        except UnknownSigningKey as exc:
            raise InvalidIdToken("id_token is signed with an unknown key") from exc
        except JwksUnavailable as exc:
            raise ProviderUnavailable(f"{self.name} signing keys are unavailable") from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=[alg],
                audience=list(self.audiences),
                issuer=self.accepted_issuers(metadata),
                leeway=self.leeway,
                options={"require": ["iss", "aud", "sub", "exp", "iat"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise InvalidIdToken("id_token signature is invalid") from exc
        except jwt.ExpiredSignatureError as exc:
            raise InvalidIdToken("id_token has expired") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidIdToken(_claim_problem(exc.claim)) from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidIdToken(_claim_problem("aud")) from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidIdToken(_claim_problem("iss")) from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidIdToken(_claim_problem("iat")) from exc
        except jwt.PyJWTError as exc:
            raise InvalidIdToken("id_token could not be verified") from exc
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise InvalidIdToken(_claim_problem("sub"))
        self._check_access_token_hash(claims.get("at_hash"), access_token, alg)
        self._check_authorized_party(claims)
        self._check_nonce(claims.get("nonce"), self.nonce_candidates(nonce) if native else (nonce,))
        return self.identity(claims)

    @staticmethod
    def _check_access_token_hash(at_hash: object, access_token: str | None, alg: str) -> None:
        # OIDC Core 3.1.3.8: optional in the code flow; when present it must match.
        if at_hash is None or access_token is None:
            return
        expected = create_half_hash(access_token, alg) or b""
        if not isinstance(at_hash, str) or not hmac.compare_digest(at_hash.encode(), expected):
            raise InvalidIdToken(_claim_problem("at_hash"))

    def _check_authorized_party(self, claims: Mapping[str, Any]) -> None:
        # OIDC Core 3.1.3.7: several audiences need an azp, and it must be one of ours.
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") not in self.audiences:
            raise InvalidIdToken("id_token was issued to another party (azp)")

    @staticmethod
    def _check_nonce(actual: object, expected: Iterable[str]) -> None:
        if not isinstance(actual, str) or not actual:
            raise InvalidIdToken("id_token carries no nonce")
        matches = [hmac.compare_digest(actual.encode(), value.encode()) for value in expected]
        if not any(matches):
            raise InvalidIdToken("id_token nonce does not match this sign-in")

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        email = claims.get("email")
        return Identity(
            provider=self.name,
            subject=str(claims["sub"]),
            email=email.lower() if isinstance(email, str) and email else None,
            email_verified=claim_is_true(claims.get("email_verified")),
            expires_at=int(claims["exp"]),
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
            claims=dict(claims),
        )


def _claim_problem(claim: str) -> str:
    return {
        "aud": "id_token was issued for another audience",
        "iss": "id_token was issued by another issuer",
        "iat": "id_token is issued in the future",
        "nbf": "id_token is not valid yet",
        "at_hash": "id_token does not match the access token",
    }.get(claim, f"id_token claim '{claim}' is missing or invalid")


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
