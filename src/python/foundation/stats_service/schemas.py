"""The JSON shapes of the stats API."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field


class DayActivity(BaseModel):
    day: date
    events: int


class Sessions(BaseModel):
    started: int = Field(description="Sign-ins (each starts a session).")
    ended: int = Field(description="Sign-outs and revoked sessions.")


class MyStats(BaseModel):
    user_id: uuid.UUID
    logins: int
    failed_logins: int
    last_login_at: datetime | None
    sessions: Sessions
    events_by_type: dict[str, int] = Field(description="Every event in my history, counted by type.")
    daily_activity: list[DayActivity] = Field(description="The last 30 days (UTC), oldest first.")


class DaySummaryOut(BaseModel):
    day: date
    sign_ups: int
    logins: int
    failed_logins: int
    active_users: int


class Totals(BaseModel):
    sign_ups: int
    logins: int
    failed_logins: int


class SummaryOut(BaseModel):
    since: date
    until: date
    totals: Totals
    days: list[DaySummaryOut]
