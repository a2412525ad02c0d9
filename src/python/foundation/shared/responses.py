"""Response helpers: the cursor pagination envelope shared by every list endpoint.

A cursor is an opaque, URL-safe token that encodes the sort key of the last item returned
(keyset pagination): stable while rows are inserted concurrently, unlike offsets.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from foundation.shared.errors import BadRequest

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("The cursor is not valid.", code="invalid_cursor") from exc
    if not isinstance(value, dict):
        raise BadRequest("The cursor is not valid.", code="invalid_cursor")
    return value


def page(items: list[T], limit: int, cursor_of: Any) -> Page[T]:
    """Build a page from ``limit + 1`` fetched rows: the extra row only says there is more."""
    more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(cursor_of(items[-1])) if more and items else None
    return Page[T](items=items, next_cursor=next_cursor)
