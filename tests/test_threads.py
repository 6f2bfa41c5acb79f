"""torch's threads follow the CPU a process may really use: its affinity and its cgroup's CPU quota."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import environment
from helpers.environment import free_cpus, limit_threads, usable_cpus

ROOT = Path(__file__).resolve().parents[1]
CPUS = len(os.sched_getaffinity(0))


def _v2(tmp_path: Path, quotas: dict[str, str], path: str = "/user.slice/job") -> tuple[Path, Path]:
    """A fake cgroup v2 tree with ``cpu.max`` files (folder relative to the root -> content) and the process's
    ``/proc/self/cgroup``."""
    root = tmp_path / "cgroup"
    root.joinpath(path.strip("/")).mkdir(parents=True)
    for folder, content in quotas.items():
        root.joinpath(folder.strip("/"), "cpu.max").write_text(content + "\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text(f"0::{path}\n")
    return root, proc


def test_a_v2_quota_caps_the_cpus_rounded_down(tmp_path):
    root, proc = _v2(tmp_path, {"/user.slice/job": "150000 100000"})
    assert usable_cpus(root, proc) == 1
    root, proc = _v2(tmp_path / "two", {"/user.slice/job": "max 100000"})
    assert usable_cpus(root, proc) == CPUS
    root, proc = _v2(tmp_path / "small", {"/user.slice/job": "20000 100000"})
    assert usable_cpus(root, proc) == 1  # a fifth of a CPU still gets one thread


def test_a_parent_cgroups_quota_counts_too(tmp_path):
    root, proc = _v2(tmp_path, {"/": "max 100000", "/user.slice": "100000 100000", "/user.slice/job": "max 100000"})
    assert usable_cpus(root, proc) == 1


def test_a_v1_quota_under_a_combined_mount(tmp_path):
    root = tmp_path / "cgroup"
    job = root / "cpu,cpuacct" / "docker" / "abc"
    job.mkdir(parents=True)
    (job / "cpu.cfs_quota_us").write_text("100000\n")
    (job / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    assert usable_cpus(root, proc) == 1
    (job / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cpus(root, proc) == CPUS


def test_no_cgroup_files_leaves_the_affinity(tmp_path):
    assert usable_cpus(tmp_path / "none", tmp_path / "missing") == CPUS
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/gone\n")
    assert usable_cpus(tmp_path, proc) == CPUS


STAT = """cpu  {u} 0 0 {i} 0 0 0 0 0 0
cpu0 {u0} 0 10 {i0} 5 0 0 0 0 0
cpu1 {u1} 0 10 {i1} 5 0 0 0 0 0
intr 12345
"""


def test_cpu_times_and_idle_share_read_proc_stat(tmp_path):
    before = tmp_path / "before"
    after = tmp_path / "after"
    before.write_text(STAT.format(u=0, i=0, u0=100, i0=1000, u1=100, i1=1000))
    after.write_text(STAT.format(u=0, i=0, u0=200, i0=1000, u1=150, i1=1050))  # cpu0 busy, cpu1 half idle
    assert environment.cpu_times(before) == {0: (1005, 1115), 1: (1005, 1115)}
    assert environment.idle_share(environment.cpu_times(before), environment.cpu_times(after), {0, 1}) == 0.5
    assert environment.idle_share(environment.cpu_times(before), environment.cpu_times(after), {1}) == 0.5
    assert environment.idle_share(environment.cpu_times(before), environment.cpu_times(before), {0, 1}) == 2.0


def test_free_cpus_counts_the_idle_cpus_of_the_affinity_only(tmp_path, monkeypatch):
    readings = iter([STAT.format(u=0, i=0, u0=0, i0=0, u1=0, i1=0),
                     STAT.format(u=0, i=0, u0=0, i0=100, u1=100, i1=0)])  # cpu0 idle, cpu1 busy

    class Stat:
        def read_text(self):
            return next(readings)

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert free_cpus(Stat(), interval=0) == 1
    readings = iter([STAT.format(u=0, i=0, u0=0, i0=0, u1=0, i1=0)] * 2)  # no tick: idle
    assert free_cpus(Stat(), interval=0) == 2
    readings = iter([STAT.format(u=0, i=0, u0=0, i0=0, u1=0, i1=0),
                     STAT.format(u=0, i=0, u0=100, i0=0, u1=100, i1=0)])  # both busy: still one thread
    assert free_cpus(Stat(), interval=0) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1})
    readings = iter([STAT.format(u=0, i=0, u0=0, i0=0, u1=0, i1=0),
                     STAT.format(u=0, i=0, u0=100, i0=0, u1=0, i1=100)])  # cpu0 busy, but not ours
    assert free_cpus(Stat(), interval=0) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert free_cpus(tmp_path / "missing", interval=0) == 4


@pytest.mark.skipif(CPUS < 2, reason="needs two CPUs")
def test_two_busy_processes_on_the_cpus_of_a_process_leave_it_one_thread():
    hogs = [subprocess.Popen(["taskset", "-c", "0,1", sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        import time

        time.sleep(0.5)
        done = subprocess.run(["taskset", "-c", "0,1", sys.executable, "-c",
                               "from helpers.environment import free_cpus; print(free_cpus(interval=0.3))"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert done.stdout.split()[-1] == "1"


def _threads_in_child(command: str, env: dict[str, str], cpus: str | None = None) -> int:
    prefix = ["taskset", "-c", cpus] if cpus else []
    done = subprocess.run([*prefix, sys.executable, "-c", command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(CPUS < 2, reason="needs two CPUs to pin a process to one of them")
def test_importing_helpers_follows_the_affinity_unless_omp_num_threads_is_set():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    probe = "import torch; torch.set_num_threads({n}); import helpers; print(torch.get_num_threads())"
    # torch itself asked for all CPUs; importing helpers brings it down to the one CPU the process may use
    assert _threads_in_child(probe.format(n=CPUS), env, cpus="0") == 1
    assert _threads_in_child(probe.format(n=CPUS), {**env, "OMP_NUM_THREADS": str(CPUS)}, cpus="0") == CPUS


def test_limit_threads_applies_the_quota_and_the_free_cpus(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(environment, "usable_cpus", lambda: 1)
    monkeypatch.setattr(environment, "free_cpus", lambda: 8)
    try:
        torch.set_num_threads(2)
        assert limit_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(environment, "usable_cpus", lambda: 8)
        monkeypatch.setattr(environment, "free_cpus", lambda: 1)
        torch.set_num_threads(2)
        assert limit_threads() == 1 and torch.get_num_threads() == 1  # a busy machine: one thread
        monkeypatch.setattr(environment, "free_cpus", lambda: 8)
        torch.set_num_threads(2)
        assert limit_threads() == 2  # never more than torch chose
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(2)
        assert limit_threads() == 2  # the user's choice stands
    finally:
        torch.set_num_threads(before)


def test_the_check_says_thread_in_the_singular():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert "(CPU only, 1 thread)" in environment.check() or "(CUDA available, 1 thread)" in environment.check()
    finally:
        torch.set_num_threads(before)
