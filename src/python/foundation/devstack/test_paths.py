from __future__ import annotations

from pathlib import Path

import pytest

from foundation.devstack.paths import default_data_dir, package_source_dir, repo_root, source_dir


def test_repo_root_is_the_nearest_folder_with_pants_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FOUNDATION_REPO_ROOT", raising=False)
    (tmp_path / "pants.toml").write_text("")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert repo_root(nested) == tmp_path.resolve()


def test_repo_root_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDATION_REPO_ROOT", str(tmp_path))
    assert repo_root(Path("/")) == tmp_path.resolve()


def test_sources_come_from_the_repo_when_it_has_them(tmp_path: Path) -> None:
    (tmp_path / "src" / "python" / "foundation").mkdir(parents=True)
    assert source_dir(tmp_path) == tmp_path / "src" / "python"
    # A folder without sources (a PEX run elsewhere): the imported package's source root.
    assert source_dir(tmp_path / "elsewhere") == package_source_dir()
    assert source_dir(None) == package_source_dir()
    assert (package_source_dir() / "foundation" / "devstack" / "paths.py").is_file()


def test_data_lives_in_dot_devstack(tmp_path: Path) -> None:
    assert default_data_dir(tmp_path) == tmp_path / ".devstack"
