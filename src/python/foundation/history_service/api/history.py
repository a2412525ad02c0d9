"""`GET /history` and `POST /history`: the signed-in user's own timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from foundation.auth.dependencies import CurrentPrincipal
from foundation.history_service.lifespan import State
from foundation.history_service.schemas import HistoryEventIn, HistoryEventOut, HistoryPage
from foundation.history_service.services.timeline import (
    EVENT_TYPE_PATTERN,
    MAX_TYPE_LENGTH,
    EventDataTooLarge,
    Timeline,
    TimelineQuery,
)
from foundation.shared.errors import BadRequest, Forbidden, PayloadTooLarge, ValidationFailed
from foundation.shared.lifespan import lifespan_state
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises
from foundation.shared.params import IsoDateTime
from foundation.shared.responses import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/history", tags=["history"])

# A body larger than this is refused before it is read (body_limit.BodyLimit, installed by
# the app); the cap on `data` is checked after parsing.
MAX_BODY_BYTES = 64 * 1024


async def get_timeline(request: Request) -> Timeline:
    return lifespan_state(request, State)["timeline"]


TimelineDep = Annotated[Timeline, Depends(get_timeline)]


@router.get("", response_model=HistoryPage, summary="My timeline, newest first")
@documented(
    SIGNED_IN,
    raises(BadRequest, "invalid_cursor"),
    raises(ValidationFailed, "invalid_range"),
    UNAVAILABLE,
)
async def list_history(
    principal: CurrentPrincipal,
    timeline: TimelineDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    type: Annotated[str | None, Query(max_length=MAX_TYPE_LENGTH, pattern=EVENT_TYPE_PATTERN.pattern)] = None,
    since: Annotated[IsoDateTime | None, Query(description="Inclusive; UTC when without a zone.")] = None,
    until: Annotated[IsoDateTime | None, Query(description="Exclusive; UTC when without a zone.")] = None,
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
)
@documented(
    SIGNED_IN,
    raises(Forbidden, "account_deleted"),
    raises(PayloadTooLarge),
    raises(EventDataTooLarge),
    raises(
        ValidationFailed,
        "invalid_event_type",
        "reserved_event_type",
        "naive_datetime",
        "occurred_at_in_future",
        "occurred_at_too_old",
        "invalid_event_data",
    ),
    UNAVAILABLE,
)
async def record_history(
    body: HistoryEventIn, principal: CurrentPrincipal, timeline: TimelineDep
) -> HistoryEventOut:
    event = await timeline.record(principal.user_id, body.type, body.data, body.occurred_at)
    return HistoryEventOut.model_validate(event)
