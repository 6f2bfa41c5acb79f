"""Grading throughput (``make benchmark-grading``): seconds per student (every notebook of the course) and per
notebook, serially and in parallel, against plain execution of the same notebooks, and the projection for a class
of 300.

    python scripts/benchmark_grading.py [--students 10] [--plain 2] [--workers 1 2 3]

The class: ``--students`` copies of the fabricated class's perfect student plus its untouched one (the release
as is), each submitting every notebook of the course, graded as ``make grade`` does with each ``--workers``. The overhead
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
import threading
import time
from pathlib import Path

# Before grader_tests.engine.grade reads it. Worker processes re-import this file: they inherit the parent's folder.
os.environ.setdefault("VISUALIZING_CNNS_GRADING", str(Path(tempfile.mkdtemp(prefix="grading-benchmark-")) / "grading"))
SCRATCH = Path(os.environ["VISUALIZING_CNNS_GRADING"]).parent
os.environ["OMP_NUM_THREADS"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat
from nbclient import NotebookClient

from grader_tests.engine import grade
from grader_tests.engine.course import assignments
from grader_tests.engine.fabricated_class import build_class

NOTEBOOKS = len(assignments())
"""Notebooks a student submits: the course's, counted (every rate below is per submission, one notebook)."""


def make_class(out: Path, students: list[str]) -> Path:
    """``out/<student>/``: a copy of the fabricated student the name starts with (``perfect3``: ``perfect``), whose
    own cells (the solution cells) end with a line of its name: each student's own cells differ from the others',
    as a real class's do, and no cache of the grader spares them."""
    fabricated = SCRATCH / "fabricated"
    if not fabricated.exists():
        build_class(fabricated)
    for student in students:
        shutil.copytree(fabricated / student.rstrip("0123456789"), out / student)
        for path in (out / student).glob("*/*.ipynb"):
            nb = nbformat.read(path, as_version=4)
            for cell in nb.cells:
                if cell.metadata.get("nbgrader", {}).get("solution"):
                    cell.source += f"\n# {student}" if cell.cell_type == "code" else f"\n\n{student}"
            nbformat.write(nb, path)
    return out


def plain_execution(submissions: Path) -> float:
    started = time.perf_counter()
    for path in sorted(submissions.glob("*/*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, allow_errors=True, resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - started


def timed_grading(submissions: Path, workers: int, full: bool = False) -> tuple[float, float, float]:
    """Seconds to the first graded submission (set-up, the workers' start, one submission), seconds per
    submission after it, and the peak memory of this process and all it started (GB of PSS; 0 off Linux)."""
    shutil.rmtree(grade.GRADING, ignore_errors=True)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(5):
            peak.append(_tree_pss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        state = grade.grade(submissions, workers=workers, force=True, full=full)
    finally:
        done.set()
        sampler.join()
    failed = [key for key, entry in state.entries.items() if entry["status"] != "graded"]
    if failed:
        sys.exit(f"grading failed for {failed}")
    first, last = state.finished[0], state.finished[-1]
    return first, (last - first) / (len(state.finished) - 1), max(peak) / 2**30


def _tree_pss() -> int:
    """Bytes of proportional set size of this process and its descendants (workers, fork servers, kernels)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, grown = {os.getpid()}, True
    while grown:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= found
        grown = bool(found)
    total = 0
    for pid in tree:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:"))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10, help="copies of the perfect student (plus one untouched)")
    parser.add_argument("--plain", type=int, default=2,
                        help="students whose notebooks run plainly, for comparison (0: skip the comparison)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, grade.WORKERS],
                        help="grading runs, by worker count")
    args = parser.parse_args()
    if args.plain:
        few = make_class(SCRATCH / "few", [f"perfect{i}" for i in range(args.plain)])
        plain = plain_execution(few) / args.plain
        full_start, full_rate, _ = timed_grading(few, workers=1, full=True)
        full = (full_start + full_rate * (NOTEBOOKS * args.plain - 1)) / args.plain  # all of it: same work as plain execution
    students = [f"perfect{i}" for i in range(args.students)] + ["untouched"]
    submissions = make_class(SCRATCH / "class", students)
    runs = {workers: timed_grading(submissions, workers) for workers in dict.fromkeys(args.workers)}
    print(f"\n{os.cpu_count()} cores, {NOTEBOOKS} notebooks a student, one thread per kernel; {len(students)} students")
    print("| run | first submission graded after (s) | then seconds per notebook | per student | "
          "300 students (min) | peak memory (GB) |")
    print("|---|---|---|---|---|---|")
    if args.plain:
        print(f"| plain execution, serial ({args.plain} students) | | {plain / NOTEBOOKS:.2f} | {plain:.1f} | "
              f"{300 * plain / 60:.0f} | |")
        print(f"| grading `--full`, 1 worker (the same {args.plain}) | | {full / NOTEBOOKS:.2f} | {full:.1f} | "
              f"{300 * full / 60:.0f} | |")
    for workers, (start, rate, memory) in runs.items():
        print(f"| grading, {workers} worker{'s' if workers > 1 else ''} | {start:.0f} | {rate:.2f} | "
              f"{NOTEBOOKS * rate:.1f} | {(start + rate * (NOTEBOOKS * 300 - 1)) / 60:.0f} | {memory:.1f} |")
    if args.plain:
        print(f"overhead of grading over plain execution of the same notebooks (--full, serial): {full / plain - 1:+.0%}")
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
