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


def test_free_cpus_leaves_out_the_processes_that_stay_runnable(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("2.10 1.50 0.80 3/250 12345\n")  # this process and two others
    assert free_cpus(loadavg, interval=0) == 2
    loadavg.write_text("9.00 9.00 9.00 12/250 12345\n")
    assert free_cpus(loadavg, interval=0) == 1  # never fewer than one
    loadavg.write_text("0.00 0.00 0.00 1/250 12345\n")
    assert free_cpus(loadavg, interval=0) == 4
    assert free_cpus(tmp_path / "missing", interval=0) == 4


def test_free_cpus_takes_the_fewest_runnable_of_its_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    readings = iter(["4/250", "2/250", "3/250"])

    class Flicker:  # a process that ran for a moment in one reading only is not a busy one
        def read_text(self):
            return f"0.5 0.5 0.5 {next(readings)} 1\n"

    assert free_cpus(Flicker(), samples=3, interval=0) == 3


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
