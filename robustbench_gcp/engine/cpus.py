"""The CPUs a process may use: its CPU set and its cgroups' quotas (``--workers``' default, ``make
test``'s workers)."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cpus(cgroup: str = "/sys/fs/cgroup", own_cgroup: str = "/proc/self/cgroup") -> int:
    """The CPUs this process may run on (``taskset``, a Slurm or container CPU set), not all the
    machine's, and at most what its cgroup's quota allows (``docker --cpus 2``, a Kubernetes limit,
    on a machine of 64): what ``--workers``' default and its note count, and ``make test``'s workers."""
    import math

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota(Path(cgroup), Path(own_cgroup))
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_quota(root: Path, own: Path) -> float | None:
    """The CPUs the quotas of this process's cgroup and those above it allow, the least of them:
    cgroup v2's ``cpu.max`` (``200000 100000``), else v1's ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``; None where there is none (``max``, -1) or no file. ``own`` names the
    process's cgroup (``0::/system.slice/job.scope``; ``/`` inside a container's namespace)."""
    try:
        lines = own.read_text().splitlines()
    except (OSError, ValueError):  # (a cgroup's name of bytes that are not UTF-8)
        lines = []
    v2 = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "/")
    v1 = next((line.split(":", 2)[2] for line in lines
               if line.count(":") >= 2 and "cpu" in line.split(":")[1].split(",")), "/")
    quotas = []
    for base, path, read in ((root, v2, _v2_quota), (root / "cpu", v1, _v1_quota)):
        folder = base / path.strip("/")
        while True:  # the process's cgroup, then each above it to the mount's root
            quota = read(folder)
            if quota is not None:
                quotas.append(quota)
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
        if quotas:
            break
    return min(quotas, default=None)


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return _ratio(quota, period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        return _ratio((folder / "cpu.cfs_quota_us").read_text().strip(),
                      (folder / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max"
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def default_workers() -> int:
    """Data loader processes when ``--workers`` is not given: min(8, usable CPUs). All the machine's
    CPUs were counted, so a job confined to 2 of 64 forked 8 loader processes onto those 2."""
    return min(8, usable_cpus())
