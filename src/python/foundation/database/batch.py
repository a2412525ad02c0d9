"""Batches with one short, constant statement and one parameter.

A multi-row ``VALUES`` list (or an ``IN`` list) is a new, long statement for every batch
size, which the driver parses again each time (profiled as the stream consumers' biggest
cost). Here inserted rows travel as one JSON array that PostgreSQL turns into typed rows, in
order, and looked-up ids as one array (``= ANY(:ids)``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, TextClause, Uuid, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

_UUIDS = ARRAY(Uuid())


def batch_insert(table: Table, columns: Sequence[str], tail: str) -> TextClause:
    """``INSERT INTO table (columns)`` the rows bound by ``batch_params(rows)``.

    ``tail``: ``ON CONFLICT ...`` / ``RETURNING ...``. Table and column names come from the
    models, never from input.
    """
    names = ", ".join(f'"{c}"' for c in columns)
    return text(
        f'INSERT INTO "{table.name}" AS target ({names}) SELECT {names} '  # noqa: S608 - fixed names
        f'FROM jsonb_populate_recordset(CAST(NULL AS "{table.name}"), CAST(:rows AS jsonb)) '
        f"WITH ORDINALITY AS batch ORDER BY batch.ordinality {tail}"
    )


def batch_params(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The parameter of a ``batch_insert`` (keys that are not columns of it are ignored)."""
    return {"rows": json.dumps(list(rows), separators=(",", ":"), default=str)}


async def uuids_among(
    session: AsyncSession, column: InstrumentedAttribute[uuid.UUID], ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``ids`` appear in ``column``: one constant statement whatever their number."""
    wanted = set(ids)
    if not wanted:
        return set()
    rows = await session.scalars(
        select(column).where(column == any_(bindparam("ids", type_=_UUIDS))), {"ids": list(wanted)}
    )
    return set(rows.all())
