"""`GET /history` and `POST /history`: the signed-in user's own timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from foundation.auth.dependencies import CurrentPrincipal
from foundation.history_service.schemas import HistoryEventIn, HistoryEventOut, HistoryPage
from foundation.history_service.services.timeline import Timeline, TimelineQuery
from foundation.shared.errors import PayloadTooLarge
from foundation.shared.responses import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/history", tags=["history"])

# A body larger than this is refused before it is read (the data cap is checked after).
MAX_BODY_BYTES = 64 * 1024


async def get_timeline(request: Request) -> Timeline:
    timeline: Timeline = request.app.state.timeline
    return timeline


TimelineDep = Annotated[Timeline, Depends(get_timeline)]


async def limit_body_size(request: Request) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES} bytes.")


@router.get("", response_model=HistoryPage, summary="My timeline, newest first")
async def list_history(
    principal: CurrentPrincipal,
    timeline: TimelineDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[datetime | None, Query(description="Inclusive.")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive.")] = None,
) -> HistoryPage:
    result = await timeline.read(
        principal.user_id, TimelineQuery(limit=limit, cursor=cursor, type=type, since=since, until=until)
    )
    return HistoryPage(
        items=[HistoryEventOut.model_validate(event) for event in result.items],
        next_cursor=result.next_cursor,
    )


@router.post(
    "",
    response_model=HistoryEventOut,
    status_code=status.HTTP_201_CREATED,
    summary="Record one of my own app events",
    dependencies=[Depends(limit_body_size)],
)
async def record_history(
    body: HistoryEventIn, principal: CurrentPrincipal, timeline: TimelineDep
) -> HistoryEventOut:
    event = await timeline.record(principal.user_id, body.type, body.data, body.occurred_at)
    return HistoryEventOut.model_validate(event)
