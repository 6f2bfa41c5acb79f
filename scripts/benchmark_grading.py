"""Grading throughput (``make benchmark-grading``): seconds per student (all six notebooks) serially and in
parallel, against plain execution of the same notebooks, and the projection for a class of 300.

    python scripts/benchmark_grading.py [--students 4]

The class: ``--students`` copies of the fabricated class's perfect student plus its untouched one (the release
as is), each submitting all six notebooks. Plain execution runs the same submitted notebooks with nbclient, one
after the other, one thread per kernel, as grading does. Grading writes to a scratch folder.
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


def timed_grading(submissions: Path, workers: int) -> float:
    shutil.rmtree(grade.GRADING, ignore_errors=True)
    started = time.perf_counter()
    state = grade.grade(submissions, workers=workers, force=True)
    seconds = time.perf_counter() - started
    failed = [key for key, entry in state.entries.items() if entry["status"] != "graded"]
    if failed:
        sys.exit(f"grading failed for {failed}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4, help="copies of the perfect student (plus one untouched)")
    args = parser.parse_args()
    submissions = SCRATCH / "class"
    students = make_class(submissions, args.students)
    n = len(students)
    plain = plain_execution(submissions)
    serial = timed_grading(submissions, workers=1)
    parallel = timed_grading(submissions, workers=2)
    print(f"\n{n} students x 6 notebooks, {os.cpu_count()} cores")
    print("| run | seconds | seconds per student |")
    print("|---|---|---|")
    print(f"| plain execution (nbclient, serial) | {plain:.0f} | {plain / n:.1f} |")
    print(f"| grading, 1 worker | {serial:.0f} | {serial / n:.1f} |")
    print(f"| grading, 2 workers | {parallel:.0f} | {parallel / n:.1f} |")
    print(f"overhead of grading over plain execution (serial): {serial / plain - 1:+.0%}")
    print(f"300 students at the parallel rate: {300 * parallel / n / 60:.0f} min "
          "(the set-up of each run, about 10 s, is included in the measured runs)")
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
