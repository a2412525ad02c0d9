"""Where the stack finds its sources and keeps its data.

The repository root is ``FOUNDATION_REPO_ROOT`` when set, else the nearest folder holding
``pants.toml`` above the working directory (``./pants run`` starts programs in the build
root), else above the imported ``foundation`` package. Without a repository (a copied
source tree, a PEX) the sources are wherever ``foundation`` was imported from.
"""

from __future__ import annotations

import os
from pathlib import Path

import foundation

REPO_ROOT_ENV = "FOUNDATION_REPO_ROOT"
DATA_DIR_NAME = ".devstack"


def _find_upwards(start: Path, marker: str) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / marker).is_file():
            return folder
    return None


def package_source_dir() -> Path:
    """The folder that holds the imported ``foundation`` package (a source root)."""
    return Path(foundation.__file__).resolve().parent.parent


def repo_root(cwd: Path | None = None) -> Path | None:
    configured = os.environ.get(REPO_ROOT_ENV)
    if configured:
        return Path(configured).resolve()
    return _find_upwards((cwd or Path.cwd()).resolve(), "pants.toml") or _find_upwards(
        package_source_dir(), "pants.toml"
    )


def source_dir(root: Path | None) -> Path:
    """The source root the services run from and the reloader watches."""
    if root is not None and (root / "src" / "python" / "foundation").is_dir():
        return root / "src" / "python"
    return package_source_dir()


def default_data_dir(root: Path | None) -> Path:
    return (root or Path.cwd()) / DATA_DIR_NAME
