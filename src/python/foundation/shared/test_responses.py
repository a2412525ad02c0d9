from __future__ import annotations

import pytest

from foundation.shared.errors import BadRequest
from foundation.shared.responses import decode_cursor, encode_cursor, page


def test_cursor_round_trips_and_is_url_safe() -> None:
    cursor = encode_cursor({"t": "2026-01-01T00:00:00+00:00", "id": "a/b+c"})
    assert all(c.isalnum() or c in "-_" for c in cursor)
    assert decode_cursor(cursor) == {"t": "2026-01-01T00:00:00+00:00", "id": "a/b+c"}


@pytest.mark.parametrize("garbage", ["!!!", "bm90IGpzb24", encode_cursor({"a": 1})[:-3] + "###", "WzFd"])
def test_bad_cursor_is_a_400(garbage: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_cursor(garbage)
    assert caught.value.code == "invalid_cursor"


def test_page_uses_the_extra_row_only_to_signal_more() -> None:
    rows = [{"id": n} for n in range(4)]
    first = page(rows, 3, lambda row: {"id": row["id"]})
    assert [row["id"] for row in first.items] == [0, 1, 2]
    assert first.next_cursor is not None
    assert decode_cursor(first.next_cursor) == {"id": 2}
    last = page(rows[:2], 3, lambda row: {"id": row["id"]})
    assert last.next_cursor is None
    assert len(last.items) == 2
