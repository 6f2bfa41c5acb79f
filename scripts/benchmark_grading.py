"""Grading throughput (``make benchmark-grading``): seconds per student (all six notebooks) serially and in
parallel, against plain execution of the same notebooks, and the projection for a class of 300.

    python scripts/benchmark_grading.py [--students 4] [--workers 1 2] [--full]

The class: ``--students`` copies of the fabricated class's perfect student plus its untouched one (the release
as is), each submitting all six notebooks. Plain execution runs the same submitted notebooks with nbclient, one
after the other in fresh kernels, one thread per kernel, as grading does. Grading writes to a scratch folder;
its set-up (intake, an empty gradebook) is timed apart, once per class, and the rest is divided by the students.
``--full`` grades with every figure and cell, as ``make grade --full`` does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Before grader_tests.grade reads it. Worker processes re-import this file: they inherit the parent's folder.
os.environ.setdefault("VISUALIZING_CNNS_GRADING", str(Path(tempfile.mkdtemp(prefix="grading-benchmark-")) / "grading"))
SCRATCH = Path(os.environ["VISUALIZING_CNNS_GRADING"]).parent
os.environ["OMP_NUM_THREADS"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat
from nbclient import NotebookClient

from grader_tests import grade
from grader_tests.fabricated_class import build_class


def make_class(out: Path, copies: int) -> list[str]:
    fabricated = out.parent / "fabricated"
    build_class(fabricated)
    students = [f"perfect{i}" for i in range(copies)] + ["untouched"]
    for student in students:
        shutil.copytree(fabricated / student.rstrip("0123456789"), out / student)
    return students


def plain_execution(submissions: Path) -> float:
    started = time.perf_counter()
    for path in sorted(submissions.glob("*/*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, allow_errors=True, resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - started


def timed_grading(submissions: Path, workers: int, full: bool) -> tuple[float, float]:
    """Seconds of set-up and of grading proper."""
    shutil.rmtree(grade.GRADING, ignore_errors=True)
    started = time.perf_counter()
    state = grade.grade(submissions, workers=workers, force=True, full=full)
    seconds = time.perf_counter() - started
    failed = [key for key, entry in state.entries.items() if entry["status"] != "graded"]
    if failed:
        sys.exit(f"grading failed for {failed}")
    return state.set_up_seconds, seconds - state.set_up_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4, help="copies of the perfect student (plus one untouched)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="grading runs, by worker count")
    parser.add_argument("--full", action="store_true", help="grade with every figure and cell (make grade --full)")
    args = parser.parse_args()
    submissions = SCRATCH / "class"
    students = make_class(submissions, args.students)
    n = len(students)
    plain = plain_execution(submissions)
    runs = {workers: timed_grading(submissions, workers, args.full) for workers in args.workers}
    print(f"\n{n} students x 6 notebooks, {os.cpu_count()} cores{', --full' if args.full else ''}")
    print("| run | set-up (s) | grading (s) | seconds per student | 300 students (min) |")
    print("|---|---|---|---|---|")
    print(f"| plain execution (nbclient, serial) | | {plain:.0f} | {plain / n:.1f} | {300 * plain / n / 60:.0f} |")
    for workers, (set_up, seconds) in runs.items():
        print(f"| grading, {workers} worker{'s' if workers > 1 else ''} | {set_up:.0f} | {seconds:.0f} | "
              f"{seconds / n:.1f} | {(set_up + 300 * seconds / n) / 60:.0f} |")
    serial = runs.get(1)
    if serial:
        print(f"grading over plain execution, both serial: {serial[1] / plain - 1:+.0%}")
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
