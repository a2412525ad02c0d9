"""``/auth/sessions`` and ``/auth/logout-all``: the signed-in user's sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from foundation.auth.dependencies import CurrentPrincipal
from foundation.auth_service.api.deps import DbSession, Sessions
from foundation.auth_service.api.schemas import SessionOut
from foundation.shared.errors import BadRequest, NotFound
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises
from foundation.shared.responses import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, page

router = APIRouter(prefix="/auth", tags=["sessions"])


def _after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    values = decode_cursor(cursor)
    try:
        return datetime.fromisoformat(str(values["t"])), uuid.UUID(str(values["id"]))
    except (KeyError, ValueError) as exc:
        raise BadRequest("The cursor is not valid.", code="invalid_cursor") from exc


@router.get("/sessions", response_model=Page[SessionOut])
@documented(SIGNED_IN, raises(BadRequest, "invalid_cursor"), UNAVAILABLE)
async def list_sessions(
    principal: CurrentPrincipal,
    db: DbSession,
    sessions: Sessions,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[SessionOut]:
    """The user's live sessions, newest sign-in first."""
    rows = await sessions.live_sessions(db, principal.user_id, limit=limit + 1, after=_after(cursor))
    items = [
        SessionOut(
            id=row.family_id,
            created_at=row.authenticated_at,
            last_used_at=row.created_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            ip=row.ip,
            current=row.family_id == principal.session_id,
        )
        for row in rows
    ]
    return page(items, limit, lambda item: {"t": item.created_at.isoformat(), "id": str(item.id)})


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
@documented(SIGNED_IN, raises(NotFound, "session_not_found"), UNAVAILABLE)
async def delete_session(
    session_id: uuid.UUID, principal: CurrentPrincipal, db: DbSession, sessions: Sessions
) -> Response:
    """End one of your sessions (its access tokens stop working at once). 404 if it is not
    one of your live sessions. 503 `redis_unavailable` if its access tokens cannot be put on
    the deny-list: the session has ended all the same; a retry (404) denies them."""
    await sessions.revoke(db, principal.user_id, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
@documented(SIGNED_IN, UNAVAILABLE)
async def logout_all(principal: CurrentPrincipal, db: DbSession, sessions: Sessions) -> Response:
    """End every session of the user, this one included. 503 `redis_unavailable` if their
    access tokens cannot be put on the deny-list: the sessions have ended all the same."""
    await sessions.logout_all(db, principal.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
