from __future__ import annotations

import io

from foundation.devstack.logs import LogSink, table


def test_lines_are_tagged_and_aligned() -> None:
    out = io.StringIO()
    sink = LogSink(out, color=False)
    sink.widen(["history-2"])
    sink.line("auth", "listening")
    sink.say("ready")
    assert out.getvalue().splitlines() == ["auth      | listening", "devstack  | ready"]


def test_tags_are_coloured_on_a_terminal_one_colour_per_tag() -> None:
    out = io.StringIO()
    sink = LogSink(out, color=True)
    sink.line("auth", "a")
    sink.line("stats", "b")
    sink.line("auth", "c")
    first, second, third = out.getvalue().splitlines()
    assert first.startswith("\033[")
    assert first.endswith("\033[0m a")
    assert first.split("m", 1)[0] != second.split("m", 1)[0]
    assert first.split("m", 1)[0] == third.split("m", 1)[0]


def test_table_columns_line_up() -> None:
    assert table(
        [("gateway", "http://x:1", "pid 1"), ("redis", "redis://y", "")], ("what", "where", "notes")
    ) == [
        "what     where       notes",
        "gateway  http://x:1  pid 1",
        "redis    redis://y",
    ]
