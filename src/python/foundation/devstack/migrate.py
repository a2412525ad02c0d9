"""``python -m foundation.devstack.migrate PACKAGE=URL ...``: apply services' migrations.

The runner calls this in a child process with the services' ``PYTHONPATH``, so migrations
come from the same source tree the services run from (the working copy, even when the
runner itself runs from a PEX).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from foundation.database.migrations import upgrade


def main(argv: Sequence[str] | None = None) -> int:
    pairs = list(sys.argv[1:] if argv is None else argv)
    for pair in pairs:
        package, sep, url = pair.partition("=")
        if not sep or not package or not url:
            print(f"expected PACKAGE=URL, got {pair!r}", file=sys.stderr)
            return 2
        upgrade(url, package)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
