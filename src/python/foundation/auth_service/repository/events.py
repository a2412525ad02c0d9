"""Outbox rows written outside an ORM session (one statement, autocommit).

Changes made through the SQLAlchemy session record their events with
``foundation.events.outbox.record`` in the same transaction instead.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from foundation.database.direct import DirectSql
from foundation.events import outbox

_INSERT = outbox.insert_sql()


async def add(
    direct: DirectSql, type: str, user_id: uuid.UUID | None, data: dict[str, Any], occurred_at: datetime
) -> None:
    await direct.execute(_INSERT, outbox.insert_params(type, user_id, data, occurred_at=occurred_at))
