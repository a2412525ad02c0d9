"""One log stream for the whole stack: every line tagged with the process it came from."""

from __future__ import annotations

import threading
from typing import IO

_COLOURS = ("36", "33", "35", "32", "34", "91", "96", "93")  # cyan, yellow, magenta, green, ...
RUNNER_TAG = "devstack"


class LogSink:
    """Writes whole lines from many threads, ``<tag> | <line>``, coloured tags on a terminal."""

    def __init__(self, stream: IO[str], *, color: bool, tag_width: int = len(RUNNER_TAG)) -> None:
        self.stream = stream
        self.color = color
        self.tag_width = tag_width
        self._lock = threading.Lock()
        self._colours: dict[str, str] = {RUNNER_TAG: "1"}

    def widen(self, tags: list[str]) -> None:
        self.tag_width = max([self.tag_width, *map(len, tags)])

    def _prefix(self, tag: str) -> str:
        text = f"{tag:<{self.tag_width}} |"
        if not self.color:
            return text
        colour = self._colours.setdefault(tag, _COLOURS[(len(self._colours) - 1) % len(_COLOURS)])
        return f"\033[{colour}m{text}\033[0m"

    def line(self, tag: str, text: str) -> None:
        prefix = self._prefix(tag)
        with self._lock:
            self.stream.write(f"{prefix} {text}\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        """A line of the runner itself."""
        self.line(RUNNER_TAG, text)


def table(rows: list[tuple[str, str, str]], header: tuple[str, str, str]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    return [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in [header, *rows]]
