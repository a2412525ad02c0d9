"""The JSON shapes of the history API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from foundation.events.schema import SYSTEM_NAMESPACES
from foundation.history_service.services.timeline import EVENT_TYPE_PATTERN
from foundation.shared.params import IsoDateTime


class HistoryEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        max_length=100,
        description="Lower-case words separated by dots, e.g. `app.opened`; "
        "the namespaces user, token, session, oauth and history are reserved.",
        examples=["app.opened"],
        # What Timeline.validate checks (422 `invalid_event_type` / `reserved_event_type`).
        json_schema_extra={
            "pattern": EVENT_TYPE_PATTERN.pattern,
            "not": {"pattern": "^(" + "|".join(sorted(SYSTEM_NAMESPACES)) + ")([.]|$)"},
        },
    )
    data: dict[str, Any] = Field(default_factory=dict, description="Any JSON object, at most 16 KiB.")
    occurred_at: IsoDateTime | None = Field(
        default=None, description="When it happened (with a time zone); now when left out."
    )


class HistoryEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str
    occurred_at: datetime
    data: dict[str, Any]
    source: str = Field(description="`stream` (a service's event) or `client` (recorded with POST /history).")


class HistoryPage(BaseModel):
    items: list[HistoryEventOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")
