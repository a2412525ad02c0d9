from __future__ import annotations

import contextlib
import queue
import time
from pathlib import Path

from foundation.devstack.reload import (
    SourceWatcher,
    affected_packages,
    changed_package,
    import_graph,
    touches_migrations,
)

SERVICES = ["gateway", "auth_service", "history_service"]


def make_tree(root: Path) -> Path:
    files = {
        "foundation/__init__.py": "",
        "foundation/shared/app.py": "import fastapi\n",
        "foundation/database/engine.py": "from foundation.shared.settings import ServiceSettings\n",
        "foundation/events/outbox.py": "import foundation.database.base\n",
        "foundation/auth/verifier.py": "from . import keys\n",
        "foundation/gateway/app.py": (
            "from foundation.shared.app import create_service_app\nfrom foundation.auth import verifier\n"
        ),
        "foundation/auth_service/app.py": "from foundation.events.outbox import record\n",
        "foundation/auth_service/migrations/versions/0001_initial.py": "",
        "foundation/history_service/app.py": "from foundation.database.engine import create_engine\n",
        "foundation/history_service/broken.py": "def (:\n",
        "foundation/history_service/test_app.py": "from foundation.auth import verifier\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_import_graph_reads_absolute_foundation_imports_and_skips_tests(tmp_path: Path) -> None:
    graph = import_graph(make_tree(tmp_path))
    assert graph["gateway"] == {"shared", "auth"}
    assert graph["events"] == {"database"}
    assert graph["history_service"] == {"database"}  # not auth: that import is in a test


def test_a_service_change_restarts_only_that_service(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    assert affected_packages(root, SERVICES, [root / "foundation/gateway/app.py"]) == {"gateway"}


def test_a_library_change_restarts_every_service_that_uses_it_even_indirectly(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    changed = [root / "foundation/shared/settings.py"]
    # history -> database -> shared; auth_service -> events -> database -> shared; gateway -> shared
    assert affected_packages(root, SERVICES, changed) == set(SERVICES)
    assert affected_packages(root, SERVICES, [root / "foundation/database/engine.py"]) == {
        "auth_service",
        "history_service",
    }
    assert affected_packages(root, SERVICES, [root / "foundation/auth/keys.py"]) == {"gateway"}


def test_tests_and_files_outside_the_namespace_restart_nothing(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    assert affected_packages(root, SERVICES, [root / "foundation/history_service/test_app.py"]) == set()
    assert affected_packages(root, SERVICES, [tmp_path.parent / "elsewhere.py"]) == set()
    assert affected_packages(root, SERVICES, [root / "foundation/gateway/README.md"]) == set()
    assert changed_package(root, root / "foundation/conftest.py") is None


def test_the_namespace_init_restarts_everything(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    assert affected_packages(root, SERVICES, [root / "foundation/__init__.py"]) == set(SERVICES)


def test_migration_changes_are_recognised(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    version = root / "foundation/auth_service/migrations/versions/0001_initial.py"
    assert touches_migrations(root, "auth_service", [version])
    assert not touches_migrations(root, "history_service", [version])


def test_watcher_reports_edited_python_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    changes: queue.Queue[set[Path]] = queue.Queue()
    watcher = SourceWatcher(root, changes)
    watcher.start()
    try:
        target = root / "foundation/gateway/app.py"
        deadline = time.monotonic() + 10
        seen: set[Path] = set()
        while target not in seen and time.monotonic() < deadline:
            target.write_text(target.read_text() + "\n")  # repeat: the watcher may start late
            (root / "foundation/gateway/notes.txt").write_text("ignored")
            with contextlib.suppress(queue.Empty):
                seen |= changes.get(timeout=0.5)
        assert target in seen
        assert all(path.suffix == ".py" for path in seen)
    finally:
        watcher.stop()
