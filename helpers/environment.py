"""Check that the course can run here: ``python -m helpers`` (the notebooks call :func:`check`).

Also sizes torch's thread pool to the CPU this process may really use (:func:`limit_threads`, called when
``helpers`` is imported): on a shared machine, a JupyterHub node or in a container, torch would otherwise start one
thread per core of the whole machine, whatever else runs, and its threads then wait for each other
(``scripts/benchmark_load.py`` measures a notebook beside busy processes).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from .pretrained import CHECKPOINT, CHECKPOINT_SHA256, sha256

MIN_PYTHON = (3, 10)
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
PROC_STAT = Path("/proc/stat")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The number of CPUs this process may keep busy: the CPUs it may run on (``os.sched_getaffinity``, else
    ``os.cpu_count()``), capped by the CPU quota of its cgroup and of every cgroup above it, rounded down, at least 1.

    The quota is ``cpu.max`` (cgroup v2: ``"<quota> <period>"`` or ``"max <period>"``) or ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` (cgroup v1, where ``-1`` means no quota), read along the path that ``proc_cgroup`` names
    for this process; a quota of 1.5 CPUs gives 1 (two threads would be throttled for a third of each period).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota + 1e-9)))
    return max(1, cpus)


def _cgroup_quota(cgroup_root: Path, proc_cgroup: Path) -> float | None:
    """The smallest CPU quota (in CPUs) of this process's cgroup and its ancestors, or None where there is none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2 (unified); mounted at the root or at unified/
            for mount in (cgroup_root, cgroup_root / "unified"):
                quotas += [_read_quota(folder / "cpu.max", None) for folder in _ancestors(mount, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1: mounted as cpu, cpu,cpuacct or cpuacct,cpu
            for name in {"cpu", controllers, ",".join(sorted(controllers.split(",")))}:
                quotas += [_read_quota(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")
                           for folder in _ancestors(cgroup_root / name, path)]
    found = [quota for quota in quotas if quota is not None]
    return min(found) if found else None


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup folder of ``path`` under ``mount`` and every folder above it up to ``mount`` (those that exist:
    in a container the process's path may not be visible, and the mount's root is its own cgroup)."""
    folder = mount.joinpath(*[part for part in path.split("/") if part and part != ".."])
    folders = [folder, *folder.parents]
    return [f for f in folders[: folders.index(mount) + 1] if f.is_dir()] if mount in folders else []


def _read_quota(quota_file: Path, period_file: Path | None) -> float | None:
    try:
        text = quota_file.read_text().split()
        quota, period = (text[0], text[1]) if period_file is None else (text[0], period_file.read_text().split()[0])
        if quota in {"max", "-1"} or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError, IndexError):
        return None


def cpu_times(proc_stat: Path = PROC_STAT) -> dict[int, tuple[int, int]]:
    """``{cpu: (idle, total)}`` clock ticks of every CPU since boot, from ``/proc/stat`` (idle counts iowait too)."""
    times = {}
    for line in proc_stat.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(field) for field in fields[:8]]  # user nice system idle iowait irq softirq steal
            times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return times


def idle_share(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpus: set[int]) -> float:
    """How many of ``cpus`` were idle between two :func:`cpu_times` readings, in CPUs (0.5: one CPU half idle);
    a CPU whose clock did not tick counts as idle."""
    share = 0.0
    for cpu in cpus & before.keys() & after.keys():
        idle, total = (a - b for a, b in zip(after[cpu], before[cpu]))
        share += idle / total if total > 0 else 1.0
    return share


def free_cpus(proc_stat: Path = PROC_STAT, interval: float = 0.1) -> int:
    """The CPUs of this process's affinity that other processes leave free: their idle time over ``interval``
    seconds (this process sleeps meanwhile), rounded to whole CPUs, at least 1; all of them where ``/proc/stat``
    cannot be read (not Linux). Two busy processes on two CPUs leave 1 (never 0: this process runs too)."""
    try:
        cpus = set(os.sched_getaffinity(0))
        before = cpu_times(proc_stat)
        time.sleep(interval)
        after = cpu_times(proc_stat)
    except (AttributeError, OSError, ValueError, IndexError):
        return os.cpu_count() or 1
    return max(1, round(idle_share(before, after, cpus)))


def limit_threads() -> int:
    """Give torch at most as many threads as :func:`usable_cpus` (affinity, cgroup quota) and :func:`free_cpus`
    (the CPUs of its affinity that other processes leave free when ``helpers`` is imported) allow, never more than
    it chose itself, unless ``OMP_NUM_THREADS`` is set, which torch already follows; return the number of threads
    torch now uses. The choice is made once: a machine that gets busy later keeps the threads chosen.

    Called on ``import helpers``, so every notebook and grading kernel keeps to the CPU it was given instead of
    starting one thread per core: on two cores with two busy processes beside it, two threads each wait for the
    other at every operation (the busy processes hold the cores), one thread just runs.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = min(torch.get_num_threads(), usable_cpus(), free_cpus())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def check() -> str:
    """Verify Python, PyTorch and the embedded checkpoint; return a one-line report, raise with the fix."""
    if sys.version_info < MIN_PYTHON:
        raise RuntimeError(f"Python {platform.python_version()} is too old; the course needs >= 3.10")
    if not CHECKPOINT.is_file():
        raise RuntimeError(f"the embedded checkpoint {CHECKPOINT} is missing: reinstall with `pip install -e .`")
    if sha256(CHECKPOINT) != CHECKPOINT_SHA256:
        raise RuntimeError(
            f"the embedded checkpoint {CHECKPOINT} is corrupt: copy helpers/weights/ again from the course zip "
            "(in a clone of the repository: `git checkout -- helpers/weights`)"
        )
    device = "CUDA available" if torch.cuda.is_available() else "CPU only"
    threads = torch.get_num_threads()
    return (
        f"ok: Python {platform.python_version()}, torch {torch.__version__} ({device}, "
        f"{threads} {'thread' if threads == 1 else 'threads'}), embedded checkpoint verified"
    )


if __name__ == "__main__":
    print(check())
