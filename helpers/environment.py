"""Check that the course can run here: ``python -m helpers.environment`` (the notebooks call :func:`check`).

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
PROC_LOADAVG = Path("/proc/loadavg")


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


def free_cpus(loadavg: Path = PROC_LOADAVG, samples: int = 5, interval: float = 0.004) -> int:
    """The CPUs of this machine that other processes do not keep busy right now: ``os.cpu_count()`` minus the
    runnable tasks other than this one (the fourth field of ``/proc/loadavg``, ``runnable/total``, counts the reader),
    the fewest of ``samples`` readings ``interval`` seconds apart (a process that runs for a moment is not a busy one);
    at least 1, and ``os.cpu_count()`` where the file cannot be read (not Linux)."""
    cpus = os.cpu_count() or 1
    runnable = []
    for sample in range(samples):
        try:
            runnable.append(int(loadavg.read_text().split()[3].split("/")[0]))
        except (OSError, ValueError, IndexError):
            return cpus
        if sample + 1 < samples:
            time.sleep(interval)
    return max(1, cpus - max(0, min(runnable) - 1))


def limit_threads() -> int:
    """Give torch at most as many threads as :func:`usable_cpus` (affinity, cgroup quota) and :func:`free_cpus`
    (what other processes leave free when ``helpers`` is imported) allow, never more than it chose itself, unless
    ``OMP_NUM_THREADS`` is set, which torch already follows; return the number of threads torch now uses.

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
