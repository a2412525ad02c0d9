"""Request value types the services' APIs share: dates and times as ISO 8601 text only.

pydantic (lax mode) also reads a number as a Unix timestamp and a bare date as midnight, so
``?until=0.5`` was taken for 1970 although the schema says ``format: date-time``. These types
accept what their documented format says (and already-parsed values), nothing else.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
# RFC 3339 date-time; the offset may be left out (the routes say what a missing one means).
DATE_TIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")


def _date_text(value: Any) -> Any:
    if isinstance(value, date) or (isinstance(value, str) and DATE_TEXT.fullmatch(value)):
        return value
    raise ValueError("expected a date such as 2025-01-31")


def _date_time_text(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and DATE_TIME_TEXT.fullmatch(value)):
        return value
    raise ValueError("expected a date and time such as 2025-01-31T12:00:00Z")


IsoDate = Annotated[date, BeforeValidator(_date_text)]
IsoDateTime = Annotated[datetime, BeforeValidator(_date_time_text)]
