"""``/auth/oauth/{provider}/...``: sign in with Google or Apple, link and unlink them.

The service (providers, Redis state store, token cipher) is built by auth-service's lifespan
(``services.oauth.open_oauth``) and read from its state.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foundation.auth.dependencies import CurrentPrincipal, get_principal
from foundation.auth.oauth.base import InvalidGrant, InvalidIdToken, ProviderUnavailable
from foundation.auth.oauth.registry import ProviderNotConfigured, UnknownProvider
from foundation.auth.principal import Principal
from foundation.auth_service.api.deps import Client, DbSession
from foundation.auth_service.api.schemas import TokenResponse
from foundation.auth_service.api.tokens import NO_STORE, over_https
from foundation.auth_service.lifespan import State
from foundation.auth_service.services.oauth import (
    BindingMismatch,
    BindingMissing,
    CallbackData,
    InvalidNonce,
    InvalidState,
    OAuthService,
)
from foundation.shared.errors import AppError, BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from foundation.shared.lifespan import lifespan_state
from foundation.shared.logging import get_logger
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises

log = get_logger(__name__)

Provider = Annotated[str, Field(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


router = APIRouter(prefix="/auth/oauth", tags=["oauth"])


async def get_oauth(request: Request) -> OAuthService:
    return lifespan_state(request, State)["oauth_service"]


OAuth = Annotated[OAuthService, Depends(get_oauth)]


# The web flow's binding, for browsers: set by `authorize`, sent back by the browser to the
# callback on the same site. HttpOnly (scripts need not read it: they may send the `binding`
# from the answer instead), SameSite=Lax, and only to these routes.
BINDING_COOKIE = "oauth_binding"
BINDING_COOKIE_PATH = "/auth/oauth"
BINDING_MIN, BINDING_MAX = 16, 256


class AuthorizationUrl(BaseModel):
    authorization_url: str
    binding: str = Field(
        description="Send it back with the callback (`binding`), or let the browser send the "
        "`oauth_binding` cookie set with this answer: only the client that started the sign-in "
        "can finish it."
    )
    expires_in: int = Field(description="Seconds this sign-in may take before it must start again.")


class NativeNonce(BaseModel):
    nonce: str = Field(
        description="Give it to the provider's SDK (Apple: its SHA-256, hex), then send it with the "
        "id_token to the callback. Valid once."
    )
    expires_in: int


class CallbackBody(BaseModel):
    """``{code, state}`` (JSON or Apple's form_post, which adds ``id_token`` and ``user``),
    or ``{id_token, nonce}`` from a native app."""

    model_config = ConfigDict(
        extra="ignore",
        # ``_one_shape`` below, as the schema says it: one of the three shapes, with strings.
        json_schema_extra={
            "anyOf": [
                {
                    "required": list(names),
                    "properties": {name: {"type": "string", "minLength": 1} for name in names},
                }
                for names in (("state", "code"), ("state", "error"), ("id_token", "nonce"))
            ]
        },
    )

    code: str | None = Field(default=None, min_length=1, max_length=2048)
    state: str | None = Field(default=None, min_length=1, max_length=256)
    id_token: str | None = Field(default=None, min_length=1, max_length=16_384)
    nonce: str | None = Field(default=None, min_length=16, max_length=512)
    user: str | dict[str, Any] | None = Field(default=None, description="Apple: the name, first time only.")
    error: str | None = Field(default=None, max_length=200)
    binding: str | None = Field(
        default=None,
        min_length=BINDING_MIN,
        max_length=BINDING_MAX,
        description="Web flow: the `binding` of the authorize answer (or send its cookie).",
    )

    @model_validator(mode="after")
    def _one_shape(self) -> CallbackBody:
        web = bool(self.state and (self.code or self.error))
        native = bool(self.id_token and self.nonce)
        if not (web or native):
            raise ValueError(
                "send {code, state} from the provider's redirect, or {id_token, nonce} from an app"
            )
        return self

    def data(self) -> CallbackData:
        web = bool(self.state and (self.code or self.error))
        return CallbackData(
            code=self.code if web else None,
            state=self.state if web else None,
            # A form_post id_token is ignored: the one from the token endpoint is authoritative.
            id_token=None if web else self.id_token,
            nonce=None if web else self.nonce,
            user=self.user,
            error=self.error if web else None,
            binding=self.binding if web else None,
        )


async def callback_body(request: Request) -> CallbackBody:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw: Any
    if content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.form()
        raw = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        try:
            raw = await request.json()
        except ValueError:
            raw = None
    cookie = request.cookies.get(BINDING_COOKIE, "")
    # A cookie that cannot be a binding (garbled, another app's) is as good as none.
    if isinstance(raw, dict) and "binding" not in raw and BINDING_MIN <= len(cookie) <= BINDING_MAX:
        raw = {**raw, "binding": cookie}
    try:
        return CallbackBody.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err.get("loc", ()))} for err in exc.errors(include_url=False)]
        ) from exc


Callback = Annotated[CallbackBody, Depends(callback_body)]


def _callback_body_schema() -> dict[str, Any]:
    """``requestBody`` of the callback and link routes (read by ``callback_body``, so FastAPI
    cannot see it): JSON, or a form as Apple's form_post sends it (strings only)."""
    schema = CallbackBody.model_json_schema()
    # A form has no null and no objects: each field is its string form, or absent.
    form_fields = {
        name: next((b for b in field.get("anyOf", [field]) if b.get("type") == "string"), {"type": "string"})
        for name, field in schema["properties"].items()
    }
    form = {**schema, "properties": form_fields}
    return {
        "parameters": [
            {
                "name": BINDING_COOKIE,
                "in": "cookie",
                "required": False,
                "schema": {"type": "string", "minLength": BINDING_MIN, "maxLength": BINDING_MAX},
                "description": "The web flow's binding, as `authorize` set it (instead of `binding`).",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": form},
            },
        },
    }


CALLBACK_BODY = _callback_body_schema()

PROVIDER_PROBLEMS = (raises(UnknownProvider), raises(ProviderNotConfigured), raises(ProviderUnavailable))
# What a provider's answer can be refused for (callback and link alike).
CALLBACK_PROBLEMS = (
    raises(BindingMissing),
    raises(InvalidState),
    raises(BindingMismatch),
    raises(InvalidNonce),
    raises(InvalidGrant),
    raises(BadRequest, "authorization_denied"),
    raises(InvalidIdToken),
    raises(Forbidden, "email_not_verified"),
)


class LinkOut(BaseModel):
    provider: str
    linked_at: str


async def optional_principal(request: Request, link: bool = False) -> Principal | None:
    return await get_principal(request) if link else None


@router.get("/{provider}/authorize", response_model=AuthorizationUrl)
@documented(
    raises(BadRequest, "redirect_uri_not_allowed"),
    # `link=true` only: signing in needs no token.
    raises(Unauthorized, "missing_token", "invalid_token", "token_expired", "session_revoked"),
    *PROVIDER_PROBLEMS,
    UNAVAILABLE,
)
async def authorize(
    provider: Provider,
    oauth: OAuth,
    redirect_uri: Annotated[str, Query(min_length=1, max_length=2048)],
    principal: Annotated[Principal | None, Depends(optional_principal)],
    request: Request,
    response: Response,
    link: bool = False,
) -> AuthorizationUrl:
    """The provider's sign-in URL (state, nonce and PKCE S256 kept server-side for a few
    minutes) and the flow's `binding`, also set as the `oauth_binding` cookie: the callback
    must bring one of them. `link=true` (signed in) starts linking the provider to the current
    account. 404 `unknown_provider` / `provider_not_configured`; 400 `redirect_uri_not_allowed`."""
    started = await oauth.authorization_url(
        provider, redirect_uri, link_user_id=principal.user_id if principal else None
    )
    secure = request.app.state.settings.is_production or over_https(request)
    response.set_cookie(
        BINDING_COOKIE,
        started.binding,
        max_age=started.expires_in,
        path=BINDING_COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    response.headers.update(NO_STORE)
    return AuthorizationUrl(
        authorization_url=started.url, binding=started.binding, expires_in=started.expires_in
    )


@router.post("/{provider}/nonce", response_model=NativeNonce)
@documented(raises(UnknownProvider), raises(ProviderNotConfigured), UNAVAILABLE)
async def native_nonce(provider: Provider, oauth: OAuth, response: Response) -> NativeNonce:
    """A nonce for a native app's sign-in: pass it to the provider's SDK, then send
    `{id_token, nonce}` to the callback (or link). Each nonce works once and expires."""
    nonce, expires_in = await oauth.native_nonce(provider)
    response.headers.update(NO_STORE)
    return NativeNonce(nonce=nonce, expires_in=expires_in)


@router.post("/{provider}/callback", response_model=TokenResponse, openapi_extra=CALLBACK_BODY)
@documented(
    *CALLBACK_PROBLEMS,
    raises(Unauthorized, "account_disabled"),
    raises(Conflict, "account_exists"),
    *PROVIDER_PROBLEMS,
    UNAVAILABLE,
)
async def callback(
    provider: Provider, body: Callback, oauth: OAuth, db: DbSession, client: Client, response: Response
) -> TokenResponse:
    """Finish signing in: the same token pair as a password login. 400 `binding_missing` /
    `invalid_state` / `binding_mismatch` / `invalid_grant` / `invalid_nonce`; 401
    `invalid_id_token`; 409 `account_exists` when an account already has the provider's email
    (sign in to it and link instead); 502 `provider_unavailable`."""
    pair = await oauth.sign_in(db, provider, body.data(), client)
    response.headers.update(NO_STORE)
    response.delete_cookie(BINDING_COOKIE, path=BINDING_COOKIE_PATH)
    return TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )


@router.post("/{provider}/link", response_model=LinkOut, openapi_extra=CALLBACK_BODY)
@documented(
    SIGNED_IN,
    *CALLBACK_PROBLEMS,
    raises(NotFound, "user_not_found"),
    raises(Conflict, "provider_account_in_use", "provider_already_linked"),
    *PROVIDER_PROBLEMS,
    UNAVAILABLE,
)
async def link(
    provider: Provider,
    body: Callback,
    principal: CurrentPrincipal,
    oauth: OAuth,
    db: DbSession,
    response: Response,
) -> LinkOut:
    """Link the provider account to the signed-in user (same inputs as the callback; a web
    flow must start at `authorize?link=true`). 409 `provider_account_in_use` /
    `provider_already_linked`."""
    row = await oauth.link(db, provider, body.data(), principal.user_id)
    response.delete_cookie(BINDING_COOKIE, path=BINDING_COOKIE_PATH)
    return LinkOut(provider=row.provider, linked_at=row.created_at.isoformat())


@router.delete("/{provider}", status_code=status.HTTP_204_NO_CONTENT)
@documented(
    SIGNED_IN,
    raises(UnknownProvider),
    raises(NotFound, "provider_not_linked"),
    raises(Conflict, "last_sign_in_method"),
    UNAVAILABLE,
)
async def unlink(provider: Provider, principal: CurrentPrincipal, oauth: OAuth, db: DbSession) -> Response:
    """Unlink the provider and revoke its stored token. 404 `provider_not_linked`; 409
    `last_sign_in_method` when the account would have no way left to sign in."""
    await oauth.unlink(db, provider, principal.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


__all__ = ["AppError", "router"]
