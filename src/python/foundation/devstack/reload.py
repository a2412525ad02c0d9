"""Hot reload: which services a source change affects, and a watcher that reports changes.

A service is affected by a change to its own package or to any ``foundation`` library it
imports, directly or through another library (found by reading the imports, so the map
grows with the code). Tests (``test_*.py``, ``conftest.py``) affect nothing.
"""

from __future__ import annotations

import ast
import queue
import threading
from collections.abc import Iterable
from pathlib import Path

NAMESPACE = "foundation"


def _imported_packages(path: Path) -> set[str]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return set()  # a file mid-edit: its package still counts as changed
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == NAMESPACE and len(parts) > 1:
                found.add(parts[1])
    return found


def import_graph(source_dir: Path) -> dict[str, set[str]]:
    """Top-level package under ``foundation`` -> the top-level packages its code imports."""
    graph: dict[str, set[str]] = {}
    root = source_dir / NAMESPACE
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).parts
        if len(relative) < 2 or _is_test(path):
            continue
        graph.setdefault(relative[0], set()).update(_imported_packages(path))
    return graph


def dependencies(graph: dict[str, set[str]], package: str) -> set[str]:
    seen = {package}
    stack = [package]
    while stack:
        for imported in graph.get(stack.pop(), set()):
            if imported not in seen:
                seen.add(imported)
                stack.append(imported)
    return seen


def _is_test(path: Path) -> bool:
    return path.name.startswith("test_") or path.name == "conftest.py"


def changed_package(source_dir: Path, path: Path) -> str | None:
    """``foundation/<package>/...`` -> package; ``""`` for files of the namespace itself."""
    try:
        relative = path.relative_to(source_dir / NAMESPACE).parts
    except ValueError:
        return None
    if not relative or _is_test(path) or path.suffix != ".py":
        return None
    return relative[0] if len(relative) > 1 else ""


def affected_packages(source_dir: Path, service_packages: Iterable[str], paths: Iterable[Path]) -> set[str]:
    """The service packages to restart after ``paths`` changed."""
    changed = {pkg for pkg in (changed_package(source_dir, Path(p)) for p in paths) if pkg is not None}
    if not changed:
        return set()
    services = set(service_packages)
    if "" in changed:
        return services
    graph = import_graph(source_dir)
    return {service for service in services if dependencies(graph, service) & changed}


def touches_migrations(source_dir: Path, package: str, paths: Iterable[Path]) -> bool:
    folder = source_dir / NAMESPACE / package / "migrations"
    return any(Path(p).is_relative_to(folder) for p in paths)


class SourceWatcher:
    """Puts each batch of changed ``.py`` paths under ``source_dir`` on ``changes``."""

    def __init__(self, source_dir: Path, changes: queue.Queue[set[Path]]) -> None:
        self.source_dir = source_dir
        self.changes = changes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from watchfiles import PythonFilter, watch

        for batch in watch(
            self.source_dir,
            watch_filter=PythonFilter(),
            step=100,
            stop_event=self._stop,
            raise_interrupt=False,
            rust_timeout=500,
        ):
            self.changes.put({Path(path) for _, path in batch})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
