"""Grading throughput (``make benchmark-grading``): seconds per student (all six notebooks) serially and in
parallel, against plain execution of the same notebooks, and the projection for a class of 300.

    python scripts/benchmark_grading.py [--students 10] [--plain 2] [--workers 1 2 3]

The class: ``--students`` copies of the fabricated class's perfect student plus its untouched one (the release
as is), each submitting all six notebooks, graded as ``make grade`` does with each ``--workers``. The overhead
of grading is measured on the first ``--plain`` students alone: their notebooks run plainly with nbclient, one
after the other in fresh kernels, one thread per kernel, against grading them with ``--full`` (the same work:
every figure, every cell) and one worker. Grading writes to a scratch folder. What a run pays once (intake, an
empty gradebook, starting the workers) ends with the first graded submission; the rate after it, measured
until the last one, projects a class of 300.
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


def make_class(out: Path, students: list[str]) -> Path:
    """``out/<student>/``: a copy of the fabricated student the name starts with (``perfect3``: ``perfect``)."""
    fabricated = SCRATCH / "fabricated"
    if not fabricated.exists():
        build_class(fabricated)
    for student in students:
        shutil.copytree(fabricated / student.rstrip("0123456789"), out / student)
    return out


def plain_execution(submissions: Path) -> float:
    started = time.perf_counter()
    for path in sorted(submissions.glob("*/*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, allow_errors=True, resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - started


def timed_grading(submissions: Path, workers: int, full: bool = False) -> tuple[float, float]:
    """Seconds to the first graded submission (set-up, the workers' start, one submission) and seconds per
    submission after it."""
    shutil.rmtree(grade.GRADING, ignore_errors=True)
    state = grade.grade(submissions, workers=workers, force=True, full=full)
    failed = [key for key, entry in state.entries.items() if entry["status"] != "graded"]
    if failed:
        sys.exit(f"grading failed for {failed}")
    first, last = state.finished[0], state.finished[-1]
    return first, (last - first) / (len(state.finished) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10, help="copies of the perfect student (plus one untouched)")
    parser.add_argument("--plain", type=int, default=2, help="students whose notebooks run plainly, for comparison")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, grade.WORKERS],
                        help="grading runs, by worker count")
    args = parser.parse_args()
    few = make_class(SCRATCH / "few", [f"perfect{i}" for i in range(args.plain)])
    plain = plain_execution(few) / args.plain
    full_start, full_rate = timed_grading(few, workers=1, full=True)
    full = (full_start + full_rate * (6 * args.plain - 1)) / args.plain  # all of it: same work as plain execution
    students = [f"perfect{i}" for i in range(args.students)] + ["untouched"]
    submissions = make_class(SCRATCH / "class", students)
    runs = {workers: timed_grading(submissions, workers) for workers in dict.fromkeys(args.workers)}
    print(f"\n{os.cpu_count()} cores, six notebooks a student, one thread per kernel; {len(students)} students")
    print("| run | first submission graded after (s) | then seconds per student | 300 students (min) |")
    print("|---|---|---|---|")
    print(f"| plain execution, serial ({args.plain} students) | | {plain:.1f} | {300 * plain / 60:.0f} |")
    print(f"| grading `--full`, 1 worker (the same {args.plain}) | | {full:.1f} | {300 * full / 60:.0f} |")
    for workers, (start, rate) in runs.items():
        print(f"| grading, {workers} worker{'s' if workers > 1 else ''} | {start:.0f} | {6 * rate:.1f} | "
              f"{(start + rate * (6 * 300 - 1)) / 60:.0f} |")
    print(f"overhead of grading over plain execution of the same notebooks (--full, serial): {full / plain - 1:+.0%}")
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
