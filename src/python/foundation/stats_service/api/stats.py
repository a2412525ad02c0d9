"""`GET /stats/me` (own aggregates) and `GET /stats/summary` (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from foundation.auth.dependencies import AdminPrincipal, CurrentPrincipal
from foundation.shared.errors import Forbidden, ValidationFailed
from foundation.shared.lifespan import lifespan_state
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises
from foundation.shared.params import IsoDate
from foundation.stats_service.lifespan import State
from foundation.stats_service.schemas import (
    DayActivity,
    DaySummaryOut,
    MyStats,
    Sessions,
    SummaryOut,
    Totals,
)
from foundation.stats_service.services.reports import Reports

router = APIRouter(prefix="/stats", tags=["stats"])


async def get_reports(request: Request) -> Reports:
    return lifespan_state(request, State)["reports"]


ReportsDep = Annotated[Reports, Depends(get_reports)]


@router.get("/me", response_model=MyStats, summary="My own aggregates")
@documented(SIGNED_IN, UNAVAILABLE)
async def my_stats(principal: CurrentPrincipal, reports: ReportsDep) -> MyStats:
    report = await reports.for_user(principal.user_id)
    return MyStats(
        user_id=report.user_id,
        logins=report.logins,
        failed_logins=report.failed_logins,
        last_login_at=report.last_login_at,
        sessions=Sessions(started=report.sessions_started, ended=report.sessions_ended),
        events_by_type=report.events_by_type,
        daily_activity=[DayActivity(day=d.day, events=d.events) for d in report.daily_activity],
    )


@router.get(
    "/summary", response_model=SummaryOut, summary="Sign-ups, logins and active users per day (admin)"
)
@documented(SIGNED_IN, raises(Forbidden), raises(ValidationFailed, "invalid_range"), UNAVAILABLE)
async def summary(
    _: AdminPrincipal,
    reports: ReportsDep,
    since: Annotated[
        IsoDate | None, Query(description="First day (UTC), inclusive; default 29 days before until.")
    ] = None,
    until: Annotated[IsoDate | None, Query(description="Last day (UTC), inclusive; default today.")] = None,
) -> SummaryOut:
    result = await reports.summary(since, until)
    return SummaryOut(
        since=result.since,
        until=result.until,
        totals=Totals(**result.totals),
        days=[
            DaySummaryOut(
                day=d.day,
                sign_ups=d.sign_ups,
                logins=d.logins,
                failed_logins=d.failed_logins,
                active_users=d.active_users,
            )
            for d in result.days
        ],
    )
