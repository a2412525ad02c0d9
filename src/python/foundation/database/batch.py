"""Insert a batch of rows with one short statement and one parameter.

A multi-row ``VALUES`` list is a new, long statement for every batch size, which the driver
parses again each time (profiled as the stream consumers' biggest cost). Here the rows travel
as one JSON array and PostgreSQL turns them into typed rows, in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, TextClause, text


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
