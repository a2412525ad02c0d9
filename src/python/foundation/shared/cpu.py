"""How many CPU cores this process can actually use.

``os.cpu_count()`` and the affinity mask report the machine's (or node's) cores; in a
container with a CPU limit the kernel's CFS quota allows fewer. Work sized to the cores
(argon2 hashing threads) should follow the quota, or a pod limited to 2 CPUs on a 16-core
node would run 16 hashes at once and be throttled.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU limit of this process's cgroup in cores (cgroup v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us``), or None when there is none or it cannot be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for controller in ("cpu", "cpu,cpuacct"):
        try:
            quota_us = int((root / controller / "cpu.cfs_quota_us").read_text())
            period_us = int((root / controller / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def affinity_cores() -> int:
    """The cores this process may be scheduled on (its affinity mask where the platform has
    one, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def usable_cores(root: Path = CGROUP_ROOT) -> int:
    """The cores this process may run on (its affinity mask), capped by its cgroup's CPU
    limit rounded up; at least 1."""
    cores = affinity_cores()
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)
