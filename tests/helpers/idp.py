"""A local stand-in for Google's or Apple's OpenID provider, speaking real HTTP on loopback.

It serves what the real ones do, and checks what they check:

- ``/.well-known/openid-configuration``: the discovery document (issuer = its own URL).
- ``/authorize``: checks client id, redirect URI, PKCE S256 challenge, nonce and state, then
  "signs in" ``idp.user`` and sends the browser back: a 302 to ``redirect_uri?code&state``
  (Google), or with ``response_mode=form_post`` an auto-submitting HTML form with ``code``,
  ``state``, an ``id_token`` and, on that user's first authorization, ``user`` (Apple).
- ``/token``: checks client authentication (Google: the client secret; Apple: the ES256
  client-secret JWT against the team's public key: ``kid``, ``iss`` = team id, ``sub`` =
  client id, ``aud`` = https://appleid.apple.com, not expired, at most six months long), the
  code (single use, bound to client and redirect URI) and the PKCE verifier; answers tokens
  and an RS256 id_token.
- ``/jwks``: its public signing keys, with ``Cache-Control: public, max-age=...`` as Google
  sends it (``jwks_max_age``). ``rotate_signing_key()`` switches to a new key (both stay
  published); ``withdraw_signing_key(kid)`` stops publishing one.
- ``/revoke``: checks client authentication and records the token (``idp.revoked``).

Switches for unhappy paths (``idp.faults``): id_tokens for another audience, expired, signed
with a key it does not publish, carrying another nonce, another issuer; an outage of the token
endpoint. ``issue_id_token()`` makes an id_token as a mobile SDK would receive it.

Runs an aiohttp server in a background thread with its own event loop; use it as a context
manager (``with StandInIdentityProvider.google() as idp:``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

APPLE_AUDIENCE = "https://appleid.apple.com"
SIX_MONTHS = 15_777_000

Kind = Literal["google", "apple"]


@dataclass
class IdpUser:
    sub: str
    email: str | None = None
    email_verified: bool = True
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


@dataclass
class Faults:
    """Set a field to make the next id_tokens (or endpoints) misbehave."""

    audience: str | None = None  # id_token "aud" is this instead of the client id
    expired: bool = False  # id_token "exp" lies in the past
    bad_signature: bool = False  # signed with a key that is not published (same kid)
    nonce: str | None = None  # id_token "nonce" is this instead of the request's
    issuer: str | None = None  # id_token "iss" is this instead of the provider's
    token_status: int | None = None  # the token endpoint answers this status

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    user: IdpUser
    expires_at: float
    offline: bool


@dataclass
class AuthorizationResponse:
    """What the browser carries back to the app after the provider's sign-in page."""

    redirect_uri: str
    params: dict[str, str]
    form_post: bool

    @property
    def code(self) -> str:
        return self.params["code"]

    @property
    def state(self) -> str:
        return self.params["state"]


class _FormFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values.get("action", "")
        if tag == "input" and "name" in values:
            self.fields[values["name"]] = values.get("value", "")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class _SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    @classmethod
    def new(cls, kid: str | None = None) -> _SigningKey:
        return cls(
            kid or secrets.token_hex(8), rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}


class StandInIdentityProvider:
    def __init__(
        self,
        kind: Kind,
        *,
        client_id: str,
        client_secret: str | None = None,
        native_client_ids: tuple[str, ...] = (),
        team_id: str | None = None,
        key_id: str | None = None,
        team_public_key: ec.EllipticCurvePublicKey | None = None,
    ) -> None:
        if kind == "google" and not client_secret:
            raise ValueError("a Google-like provider needs a client secret")
        if kind == "apple" and not (team_id and key_id and team_public_key):
            raise ValueError("an Apple-like provider needs the team id, key id and team public key")
        self.kind = kind
        self.client_id = client_id
        self.client_secret = client_secret
        self.native_client_ids = native_client_ids
        self.team_id = team_id
        self.key_id = key_id
        self.team_public_key = team_public_key
        self.team_private_key_pem: str | None = None  # set by .apple()
        self.user = IdpUser(sub="000123", email="someone@example.com", name="Some One")
        self.faults = Faults()
        self.revoked: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.client_secrets_seen: list[str] = []
        self.issued_tokens: list[str] = []  # every access and refresh token it handed out
        self._codes: dict[str, _Code] = {}
        self._authorized_subs: set[str] = set()
        self._keys: list[_SigningKey] = [_SigningKey.new()]
        self.jwks_max_age = 19_800  # what Google's JWKS answers carry
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def google(cls, **kwargs: Any) -> StandInIdentityProvider:
        kwargs.setdefault("client_id", "web-client.apps.example.com")
        kwargs.setdefault("client_secret", "stand-in-google-secret-" + secrets.token_hex(8))
        kwargs.setdefault("native_client_ids", ("ios-client.apps.example.com",))
        return cls("google", **kwargs)

    @classmethod
    def apple(cls, **kwargs: Any) -> StandInIdentityProvider:
        team_key = ec.generate_private_key(ec.SECP256R1())
        kwargs.setdefault("client_id", "com.example.web")
        kwargs.setdefault("native_client_ids", ("com.example.app",))
        kwargs.setdefault("team_id", "TEAM123456")
        kwargs.setdefault("key_id", "KEY7890ABC")
        idp = cls("apple", team_public_key=team_key.public_key(), **kwargs)
        idp.team_private_key_pem = team_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        idp.user = IdpUser(
            sub="001234.abcdef", email="someone@privaterelay.example.com", first_name="Some", last_name="One"
        )
        return idp

    # -- addresses ---------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def current_kid(self) -> str:
        return self._keys[-1].kid

    def rotate_signing_key(self) -> str:
        """Sign with a new key from now on (both stay published), like a provider's rotation."""
        with self._lock:
            self._keys.append(_SigningKey.new())
        return self.current_kid

    def withdraw_signing_key(self, kid: str) -> None:
        """Stop publishing (and signing with) the key ``kid``, as a provider retires a key."""
        with self._lock:
            self._keys = [key for key in self._keys if key.kid != kid]
            if not self._keys:
                self._keys.append(_SigningKey.new())

    def sign_with_current_key(self, claims: dict[str, Any], kid: str | None = None) -> str:
        """``claims`` signed RS256 with the current key, under its ``kid`` or the one given."""
        key = self._keys[-1]
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": kid or key.kid})

    # -- running -----------------------------------------------------------------------------

    def __enter__(self) -> StandInIdentityProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> StandInIdentityProvider:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self._app(), access_log=None)
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                self.port = runner.addresses[0][1]
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"stand-in-{self.kind}-idp", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise TimeoutError("the stand-in identity provider did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/revoke", self._revoke)
        return app

    # -- endpoints ---------------------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.Response:
        base = self.issuer
        return web.json_response(
            {
                "issuer": base,
                "authorization_endpoint": base + "/authorize",
                "token_endpoint": base + "/token",
                "jwks_uri": base + "/jwks",
                "revocation_endpoint": base + "/revoke",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query", "form_post"],
                "subject_types_supported": ["public" if self.kind == "google" else "pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile" if self.kind == "google" else "name"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        problems = [
            name
            for name, ok in [
                ("response_type", q.get("response_type") == "code"),
                ("client_id", q.get("client_id") == self.client_id),
                ("redirect_uri", bool(q.get("redirect_uri"))),
                ("state", bool(q.get("state"))),
                ("nonce", bool(q.get("nonce"))),
                ("code_challenge", len(q.get("code_challenge", "")) == 43),
                ("code_challenge_method", q.get("code_challenge_method") == "S256"),
                ("scope", "openid" in q.get("scope", "").split()),
            ]
            if not ok
        ]
        if problems:
            return web.json_response({"error": "invalid_request", "fields": problems}, status=400)
        code = secrets.token_urlsafe(24)
        user = self.user
        with self._lock:
            self._codes[code] = _Code(
                client_id=q["client_id"],
                redirect_uri=q["redirect_uri"],
                challenge=q["code_challenge"],
                nonce=q["nonce"],
                user=user,
                expires_at=time.time() + 60,
                offline=q.get("access_type") == "offline",
            )
            first = user.sub not in self._authorized_subs
            self._authorized_subs.add(user.sub)
        params = {"code": code, "state": q["state"]}
        if q.get("response_mode") == "form_post":
            if self.kind == "apple":
                params["id_token"] = self.issue_id_token(user, nonce=q["nonce"])
            if first and self.kind == "apple":
                params["user"] = json.dumps(
                    {"name": {"firstName": user.first_name, "lastName": user.last_name}, "email": user.email}
                )
            inputs = "".join(
                f'<input type="hidden" name="{escape(k)}" value="{escape(v)}"/>' for k, v in params.items()
            )
            page = (
                f'<html><body onload="document.forms[0].submit()"><form method="post" '
                f'action="{escape(q["redirect_uri"])}">{inputs}</form></body></html>'
            )
            return web.Response(text=page, content_type="text/html")
        raise web.HTTPFound(
            q["redirect_uri"] + ("&" if "?" in q["redirect_uri"] else "?") + urlencode(params)
        )

    def _client_authenticated(self, request: web.Request, form: dict[str, str]) -> bool:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        if client_id != self.client_id or not secret:
            return False
        if self.kind == "google":
            return hmac.compare_digest(secret, str(self.client_secret))
        self.client_secrets_seen.append(secret)
        return self._apple_client_secret_valid(secret)

    def _apple_client_secret_valid(self, secret: str) -> bool:
        assert self.team_public_key is not None
        try:
            header = jwt.get_unverified_header(secret)
            c = jwt.decode(
                secret,
                self.team_public_key,
                algorithms=["ES256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return False
        now = time.time()
        return (
            header.get("kid") == self.key_id
            and c.get("iss") == self.team_id
            and c.get("sub") == self.client_id
            and c.get("aud") == APPLE_AUDIENCE
            and isinstance(c.get("exp"), int)
            and isinstance(c.get("iat"), int)
            and c["iat"] <= now + 60
            and c["exp"] > now
            and c["exp"] - c["iat"] <= SIX_MONTHS
        )

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        with self._lock:
            self.token_requests.append(form)
        if self.faults.token_status:
            return web.json_response({"error": "temporarily_unavailable"}, status=self.faults.token_status)
        if not self._client_authenticated(request, form):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        with self._lock:
            code = self._codes.pop(form.get("code", ""), None)  # single use, even when refused
        verifier = form.get("code_verifier", "")
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        if (
            code is None
            or code.expires_at < time.time()
            or code.client_id != form.get("client_id", self.client_id)
            or code.redirect_uri != form.get("redirect_uri")
            or not hmac.compare_digest(challenge, code.challenge)
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        access_token = f"{self.kind}-access-{secrets.token_urlsafe(24)}"
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "id_token": self.issue_id_token(code.user, nonce=code.nonce, access_token=access_token),
        }
        if self.kind == "apple" or code.offline:
            body["refresh_token"] = f"{self.kind}-refresh-{secrets.token_urlsafe(24)}"
        with self._lock:
            self.issued_tokens.extend(t for t in (access_token, body.get("refresh_token")) if t)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _jwks(self, request: web.Request) -> web.Response:
        with self._lock:
            keys = [key.public_jwk() for key in self._keys]
        return web.json_response(
            {"keys": keys}, headers={"Cache-Control": f"public, max-age={self.jwks_max_age}"}
        )

    async def _revoke(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not self._client_authenticated(request, form):
            return web.json_response({"error": "invalid_client"}, status=401)
        with self._lock:
            self.revoked.append({"token": form.get("token", ""), "hint": form.get("token_type_hint", "")})
        return web.Response(status=200)

    # -- tokens ------------------------------------------------------------------------------

    def issue_id_token(
        self,
        user: IdpUser | None = None,
        *,
        nonce: str | None,
        audience: str | None = None,
        access_token: str | None = None,
        expires_in: int = 600,
    ) -> str:
        """An id_token as this provider signs it (the faults apply)."""
        user = user or self.user
        now = int(time.time())
        f = self.faults
        claims: dict[str, Any] = {
            "iss": f.issuer or self.issuer,
            "aud": f.audience or audience or self.client_id,
            "sub": user.sub,
            "iat": now - (3600 if f.expired else 0),
            "exp": now - 600 if f.expired else now + expires_in,
            "auth_time": now,
        }
        if nonce is not None or f.nonce:
            claims["nonce"] = f.nonce or nonce
        if user.email:
            claims["email"] = user.email
            verified: Any = user.email_verified
            claims["email_verified"] = str(verified).lower() if self.kind == "apple" else verified
        if self.kind == "google":
            claims["azp"] = claims["aud"]
            if user.name:
                claims["name"] = user.name
            if access_token:
                digest = hashlib.sha256(access_token.encode()).digest()
                claims["at_hash"] = _b64(digest[:16])
        else:
            claims["is_private_email"] = "false"
        key = self._keys[-1]
        if f.bad_signature:
            key = _SigningKey.new(kid=key.kid)  # the published kid, an unpublished key
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})

    # -- the browser's part ------------------------------------------------------------------

    async def authorize(self, authorization_url: str) -> AuthorizationResponse:
        """Open ``authorization_url`` as a browser would and return what it brings back."""
        async with httpx.AsyncClient(follow_redirects=False, timeout=5) as client:
            response = await client.get(authorization_url)
        if response.status_code == 302:
            location = urlsplit(response.headers["location"])
            params = {k: v[0] for k, v in parse_qs(location.query).items()}
            redirect = location._replace(query="").geturl()
            return AuthorizationResponse(redirect_uri=redirect, params=params, form_post=False)
        if response.status_code == 200 and response.headers["content-type"].startswith("text/html"):
            form = _FormFields()
            form.feed(response.text)
            return AuthorizationResponse(redirect_uri=form.action, params=form.fields, form_post=True)
        raise AssertionError(f"authorize answered {response.status_code}: {response.text}")
