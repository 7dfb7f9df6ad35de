"""How much CPU this process may use, and thread pools sized to it.

A container's CPU limit is not its core count: ``docker run --cpus=1`` on a 2-core box leaves
``os.cpu_count()`` at 2 and sets a CFS quota instead. Thread pools sized to the cores then burn
the quota in parallel and spin-waits, and the whole process is throttled until the next period:
on the demo, detection went from 21 ms to 195 ms p50 under a 1-CPU quota (issue 30). So the
budget is the smaller of the CPU affinity (``taskset``, cpusets) and the cgroup quota, read from
cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), each level of the
hierarchy up to the root (a parent's limit binds its children too).

Threads are the budget rounded down, at least one, as Go's ``automaxprocs`` does: a pool of two on
a 1.5-CPU quota still spends half of each period throttled.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CGROUP_ROOT = Path("/sys/fs/cgroup")
# libraries that read their pool size from the environment when they load (BLAS, OpenMP)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs this process may use: ``affinity`` cores, of which ``quota`` CPUs' worth of time."""

    affinity: int
    quota: Optional[float] = None  # None: no cgroup limit found
    quota_source: str = ""  # the file the quota came from

    @property
    def cpus(self) -> float:
        return min(float(self.affinity), self.quota if self.quota is not None else math.inf)

    @property
    def threads(self) -> int:
        return max(1, math.floor(self.cpus + 1e-9))

    @property
    def limited(self) -> bool:
        """True when a quota, not the cores, sets the budget (spin-waiting then wastes it)."""
        return self.quota is not None and self.quota < self.affinity

    @property
    def restricted(self) -> bool:
        """True when the process may use less than the machine: a quota, or an affinity narrower
        than the host's CPUs. Otherwise the libraries' own defaults (physical cores) are kept."""
        return self.limited or self.affinity < (os.cpu_count() or self.affinity)

    def describe(self) -> str:
        quota = (
            f", cgroup quota {self.quota:g} CPU in {self.quota_source}"
            if self.quota is not None
            else ", no cgroup quota"
        )
        pools = f"{self.threads} thread(s) per pool" if self.restricted else "the libraries' own thread pools"
        return f"{self.cpus:g} CPU ({self.affinity} core(s) in affinity{quota}): {pools}"


def read_cpu_budget(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Optional[str] = None) -> CpuBudget:
    """The budget of the calling process. ``proc_cgroup`` is the text of ``/proc/self/cgroup``
    (read when not given); ``cgroup_root`` where the hierarchies are mounted (tests pass a copy)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_cgroup = ""
    quota, source = _cgroup_quota(Path(cgroup_root), proc_cgroup)
    return CpuBudget(affinity, quota, source)


def _cgroup_quota(root: Path, proc_cgroup: str) -> tuple[Optional[float], str]:
    """The smallest quota on the process's cgroup path, v2 and v1 alike, and the file it is in."""
    best: tuple[Optional[float], str] = (None, "")
    for hierarchy, controllers, path in _memberships(proc_cgroup):
        if hierarchy == "0":
            mounts = [root / "unified", root] if (root / "unified").is_dir() else [root]
            reader, name = _read_v2, "cpu.max"
        elif "cpu" in controllers.split(","):
            mounts = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
            reader, name = _read_v1, "cpu.cfs_quota_us"
        else:
            continue
        for mount in mounts:
            for directory in _ancestors(mount, path):
                quota = reader(directory)
                if quota is not None and (best[0] is None or quota < best[0]):
                    best = (quota, str(directory / name))
    return best


def _memberships(proc_cgroup: str) -> list[tuple[str, str, str]]:
    """``hierarchy-id:controllers:/path`` lines of /proc/self/cgroup."""
    out = []
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
    return out


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup's directory and every parent up to the mount. Inside a container the path
    printed for the process may not exist in its namespace's mount: then the mount's root is the
    process's own group (that is what a container sees)."""
    parts = [p for p in path.split("/") if p]
    dirs = [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [d for d in dirs if d.is_dir()]


def _read_v2(directory: Path) -> Optional[float]:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _read_v1(directory: Path) -> Optional[float]:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def limit_threads(budget: CpuBudget) -> dict[str, int]:
    """Size every thread pool this process has or will load to ``budget.threads``.

    The environment is set only where the user has not set it (their choice wins) and only acts
    on libraries not loaded yet; OpenCV's and PyTorch's pools are set directly. ONNX Runtime and
    OpenVINO take the count per session: :func:`session_threads`. Returns what was set.
    """
    n = budget.threads
    applied: dict[str, int] = {}
    if not budget.restricted:
        return applied
    for var in THREAD_ENV:
        if var not in os.environ:
            os.environ[var] = str(n)
            applied[var] = n
    import cv2

    cv2.setNumThreads(n)
    applied["cv2"] = n
    torch = sys.modules.get("torch")  # never imported for this: the runtime may not have it
    if torch is not None:
        torch.set_num_threads(n)
        applied["torch"] = n
    return applied


def session_threads(configured: int = 0, budget: Optional[CpuBudget] = None) -> tuple[int, bool]:
    """Intra-op threads for an inference session and whether its workers may spin-wait.

    A configured count (> 0) wins; 0 keeps ONNX Runtime's default (one per physical core) on a
    process that may use the whole machine. Spinning keeps idle workers busy between calls: free
    on idle cores, but under a quota it spends CPU time the other stages need, so it is off when a
    quota sets the budget or the budget is a single CPU.
    """
    budget = budget or read_cpu_budget()
    threads = configured if configured > 0 else (budget.threads if budget.restricted else 0)
    spin = not budget.limited and budget.cpus > 1
    return threads, spin
