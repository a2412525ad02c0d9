from __future__ import annotations

from pathlib import Path

import pytest

from foundation.shared.cpu import affinity_cores, cgroup_cpu_limit, usable_cores

AFFINITY = affinity_cores()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_is_read_in_cores(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert usable_cores(tmp_path) == AFFINITY


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_quota_is_read_in_cores(tmp_path: Path, controller: str) -> None:
    write(tmp_path / controller / "cpu.cfs_quota_us", "50000\n")
    write(tmp_path / controller / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path) == 0.5
    assert usable_cores(tmp_path) == 1  # rounded up, never 0


def test_cgroup_v1_without_a_quota(tmp_path: Path) -> None:
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_no_cgroup_files_means_the_affinity_mask(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None
    assert usable_cores(tmp_path) == AFFINITY


def test_a_limit_above_the_affinity_mask_changes_nothing(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", f"{(AFFINITY + 4) * 100000} 100000\n")
    assert usable_cores(tmp_path) == AFFINITY


def test_a_limit_below_the_affinity_mask_caps_it(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "120000 100000\n")
    assert usable_cores(tmp_path) == min(AFFINITY, 2)
