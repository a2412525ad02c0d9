"""``/auth/.well-known/jwks.json``: the public keys that verify access tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from foundation.auth_service.lifespan import State
from foundation.shared.lifespan import lifespan_state

router = APIRouter(prefix="/auth", tags=["keys"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    """Every key that signs now, will sign soon, or signed a token that has not expired yet."""
    response.headers["Cache-Control"] = "public, max-age=30"
    return lifespan_state(request, State)["signing_keys"].jwks()
