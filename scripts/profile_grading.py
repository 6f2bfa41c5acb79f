"""Where grading time goes (``make profile-grading``): one worker's seconds per notebook, by phase, and the CPU time
of everything it runs (grader, fork server, sandboxes, kernels), for the course's perfect student.

    python scripts/profile_grading.py [--students 2] [--full]

The worker grades ``--students`` copies of the fabricated class's perfect student in this process, one submission
after the other, as a grading worker does (``grader_tests.engine.grade.grade_task``); the figures are those of the
last student, when every cache of the worker is warm. Phases: starting a kernel (the fork server forks it and builds
its sandbox), waiting until it answers, the cells (the student's code, the visible checks and the hidden probes),
shutting it down, the judges of the hidden checks, the rest of nbgrader's autograde step (its gradebook, its other
preprocessors, reading and writing notebooks) and the feedback page. CPU time is read from a cgroup (v1 ``cpuacct``
or v2 ``cpu.stat``) that holds this process and all it starts; where none can be made (not root), only this
process's own CPU time is shown. ``--full`` grades as ``make grade --full`` does (every cell and figure).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Before grader_tests.engine.grade reads it.
os.environ.setdefault("VISUALIZING_CNNS_GRADING", str(Path(tempfile.mkdtemp(prefix="grading-profile-")) / "grading"))
os.environ["OMP_NUM_THREADS"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


class CpuClock:
    """CPU seconds of this process and everything it starts: a cgroup of its own where one can be made."""

    def __init__(self) -> None:
        self.read: Callable[[], float] = time.process_time
        self.scope = "this process only (no cgroup could be made: run as root for the whole tree)"
        self.path: Path | None = None
        with contextlib.suppress(OSError):
            if Path("/sys/fs/cgroup/cgroup.controllers").exists():  # v2: a child of this process's cgroup
                own = Path("/proc/self/cgroup").read_text().split("::", 1)[1].strip()
                self.path = Path("/sys/fs/cgroup") / own.lstrip("/") / f"profile-{os.getpid()}"
                self.path.mkdir()
                self.read = lambda: int(next(line.split()[1] for line in (self.path / "cpu.stat").read_text()
                                             .splitlines() if line.startswith("usage_usec"))) / 1e6
            else:  # v1
                self.path = Path(f"/sys/fs/cgroup/cpuacct/profile-{os.getpid()}")
                self.path.mkdir()
                self.read = lambda: int((self.path / "cpuacct.usage").read_text()) / 1e9
            (self.path / "cgroup.procs").write_text(str(os.getpid()))
            self.scope = "this process and everything it started (a cgroup)"
            atexit.register(self.remove)

    def remove(self) -> None:
        """Leave the cgroup and remove it (once the fork server and its kernels are gone)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                (self.path.parent / "cgroup.procs").write_text(str(os.getpid()))
                self.path.rmdir()


def timed(phases: dict[str, float], owner: Any, name: str, phase: str) -> None:
    """Add the wall time of every call of ``owner.name`` to ``phases[phase]``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[phase] += time.perf_counter() - started

    setattr(owner, name, wrapper)


@contextlib.contextmanager
def instrumented(phases: dict[str, float]) -> Iterator[None]:
    from nbclient import NotebookClient

    from grader_tests.engine import nbgrader_plugins

    timed(phases, NotebookClient, "start_new_kernel", "kernel: start (fork, sandbox)")
    timed(phases, NotebookClient, "start_new_kernel_client", "kernel: until it answers")
    timed(phases, nbgrader_plugins.GuardedExecute, "preprocess_cell", "cells (student code, checks, probes)")
    timed(phases, NotebookClient, "_cleanup_kernel", "kernel: shutdown")
    timed(phases, nbgrader_plugins.JudgeHiddenChecks, "preprocess", "judges of the hidden checks")
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=2, help="copies of the perfect student (the last is measured)")
    parser.add_argument("--full", action="store_true", help="every cell and figure, as make grade --full")
    args = parser.parse_args()

    import warnings

    import torch
    from benchmark_grading import make_class

    from grader_tests.engine import grade
    from grader_tests.engine.forkserver import start_early

    clock = CpuClock()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    start_early()
    phases: dict[str, float] = collections.defaultdict(float)
    submissions = make_class(grade.GRADING.parent / "class", [f"perfect{i}" for i in range(args.students)])
    grade.GRADING.mkdir(parents=True, exist_ok=True)
    tasks, _ = grade.intake(submissions)
    template = grade.GRADING / "template.db"
    grade.empty_gradebook(template)
    execute = {"timeout": None, "figures": args.full or None, "every_cell": args.full or None, "memory_mb": None}
    last = f"perfect{args.students - 1}"
    totals: dict[str, float] = collections.defaultdict(float)
    with instrumented(phases):
        for task in tasks:
            if task.student == last and "wall" not in totals:
                phases.clear()
                totals["wall"], totals["cpu"] = -time.perf_counter(), -clock.read()
            result = grade.grade_task(task, template, execute)
            if "error" in result:
                sys.exit(f"grading {task.key} failed: {result['error']}")
            if task.student == last:
                totals["autograde"] += result["seconds"]["autograde"]
                totals["feedback"] += result["seconds"]["feedback"]
    totals["wall"] += time.perf_counter()
    totals["cpu"] += clock.read()
    notebooks = sum(task.student == last for task in tasks)
    phases["nbgrader's other steps (gradebook, preprocessors, files)"] = totals["autograde"] - sum(phases.values())
    phases["feedback page"] = totals["feedback"]
    print(f"\n{'--full' if args.full else 'default'} grading, one worker, {notebooks} notebooks of one student "
          f"(the last of {args.students}, caches warm); load average {os.getloadavg()[0]:.1f}")
    print("| phase | seconds per notebook | share |")
    print("|---|---|---|")
    for phase, seconds in phases.items():
        print(f"| {phase} | {seconds / notebooks:.2f} | {seconds / totals['wall']:.0%} |")
    print(f"| **all (wall)** | **{totals['wall'] / notebooks:.2f}** | |")
    print(f"| CPU time, {clock.scope} | {totals['cpu'] / notebooks:.2f} | |")


if __name__ == "__main__":
    main()
