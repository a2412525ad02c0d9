"""``/auth/login``, ``/auth/refresh``, ``/auth/logout``: the token endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from foundation.auth_service.api.deps import Client, DbSession, Sessions
from foundation.auth_service.api.schemas import LoginRequest, RefreshRequest, TokenResponse
from foundation.auth_service.services.sessions import TokenPair

router = APIRouter(prefix="/auth", tags=["tokens"])

# RFC 6749 5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _token_response(pair: TokenPair) -> Response:
    # Serialised here, once: FastAPI would validate and encode the model again
    # (``response_model`` still documents it in the OpenAPI schema).
    body = TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=NO_STORE)


@router.post("/login", response_model=TokenResponse)
async def login(body: LoginRequest, sessions: Sessions, client: Client) -> Response:
    """Sign in. 401 `invalid_credentials` for an unknown email or a wrong password alike;
    429 `too_many_attempts` with `Retry-After` after repeated failures."""
    pair = await sessions.login(body.email, body.password, client)
    return _token_response(pair)


@router.post("/refresh", response_model=TokenResponse)
async def refresh(body: RefreshRequest, sessions: Sessions, client: Client) -> Response:
    """Rotate the refresh token. 401 when it is unknown, expired, revoked or reused (reuse
    outside the grace window signs the whole session out)."""
    pair = await sessions.refresh(body.refresh_token, client)
    return _token_response(pair)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, db: DbSession, sessions: Sessions) -> Response:
    """End the session of this refresh token (204 even if it had ended already)."""
    await sessions.logout(db, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
