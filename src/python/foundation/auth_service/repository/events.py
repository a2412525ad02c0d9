"""Outbox rows written outside an ORM session (one statement, autocommit).

Changes made through the SQLAlchemy session record their events with
``foundation.events.outbox.record`` in the same transaction instead.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from foundation.database.direct import DirectSql

_INSERT = """
    INSERT INTO outbox (event_id, type, user_id, occurred_at, data, version)
    VALUES (%(event_id)s, %(type)s, %(user_id)s, %(occurred_at)s, %(data)s::jsonb, 1)
"""


async def add(
    direct: DirectSql, type: str, user_id: uuid.UUID | None, data: dict[str, Any], occurred_at: datetime
) -> None:
    await direct.execute(
        _INSERT,
        {
            "event_id": uuid.uuid4(),
            "type": type,
            "user_id": user_id,
            "occurred_at": occurred_at,
            "data": json.dumps(data, separators=(",", ":")),
        },
    )
