"""Read ``KEY=VALUE`` lines of a ``.env`` file (copied from ``.env.example``) into the environment.

Variables already set win, so ``GATEWAY_PORT=9000 ./pants run //:dev`` beats the file.
Blank lines and ``#`` comments are skipped; a value may be wrapped in single or double quotes.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path


def parse_env_file(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"line {number}: expected KEY=VALUE, got {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_env_file(path: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Set the file's variables that ``environ`` lacks; the names set, in file order."""
    if not path.is_file():
        return []
    loaded = []
    for key, value in parse_env_file(path.read_text()).items():
        if key not in environ:
            environ[key] = value
            loaded.append(key)
    return loaded
