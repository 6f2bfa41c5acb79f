"""Grading on a Dask cluster (``make benchmark-cluster``): the speed-up of two grading workers over one, each
pinned to a core of its own, and the projection for 10,000 students on N machines.

    python scripts/benchmark_cluster.py [--students 6] [--notebooks 6] [--cores 16]

A scheduler (``dask scheduler``) and one or two workers (``taskset -c <core> dask worker --preload
grader_tests.engine.cluster``, each with its fork server and kernels on that core) run as separate processes on the
loopback, as on separate machines; ``make grade``'s code grades through them (``grade(..., scheduler=...)``). The
class: ``--students`` copies of the fabricated class's perfect student, the first ``--notebooks`` notebooks each.
The rate is measured from the first graded submission to the last (the workers' start and the first submission are
paid once). The projection assumes machines of ``--cores`` cores, one worker a core, each core grading at the rate
of one pinned worker here, times the efficiency measured with two (speed-up / 2), and the notebooks' relative costs
of docs/benchmarks.md for a student of all fourteen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VISUALIZING_CNNS_GRADING", str(Path(tempfile.mkdtemp(prefix="cluster-benchmark-")) / "grading"))
SCRATCH = Path(os.environ["VISUALIZING_CNNS_GRADING"]).parent
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader_tests.engine import cluster, grade  # noqa: E402
from grader_tests.engine.cluster import PRELOAD  # noqa: E402
from grader_tests.engine.course import assignments  # noqa: E402
from grader_tests.engine.fabricated_class import build_class  # noqa: E402

DASK = Path(sys.executable).parent / "dask"
NOTEBOOK_SECONDS = {"01_autograd": 4.8, "02_parameters": 4.9, "03_filters": 4.8, "04_activations": 7.2,
                    "05_saliency": 7.7, "06_gradcam": 11.0, "07_patches": 7.2, "08_dissection": 11.7,
                    "09_embeddings": 9.2, "10_class_visualization": 8.5, "11_occlusion": 11.6,
                    "12_attributions": 12.9, "13_sanity_checks": 11.4, "14_shortcut": 25.7}
"""Each notebook's execution time (docs/benchmarks.md, the notebooks' table): its relative cost."""


def make_class(out: Path, students: int, notebooks: list[str]) -> Path:
    fabricated = SCRATCH / "fabricated"
    build_class(fabricated)
    for i in range(students):
        for assignment in notebooks:
            shutil.copytree(fabricated / "perfect" / assignment, out / f"perfect{i}" / assignment)
    return out


SPENT = {"seconds": 0.0}
"""Seconds the grading process spent taking results in (files written, merged, notes read, recorded)."""


def timed(function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT["seconds"] += time.perf_counter() - started

    return wrapper


def run(submissions: Path, cores: list[int]) -> tuple[float, float, float, float]:
    """Seconds to the first graded submission, then seconds per submission, the load average during the run, and
    the grading process's seconds per result, with one worker pinned to each of ``cores``."""
    logs = SCRATCH / f"logs-{len(cores)}"
    logs.mkdir(parents=True, exist_ok=True)
    file = logs / "scheduler.json"
    processes = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(file)], cwd=ROOT,
                                  stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    try:
        while not file.exists():
            time.sleep(0.5)
        for core in cores:
            processes.append(subprocess.Popen(
                ["taskset", "-c", str(core), str(DASK), "worker", "--scheduler-file", str(file), "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--preload", PRELOAD],
                cwd=ROOT, stdout=open(logs / f"worker-{core}.log", "w"), stderr=subprocess.STDOUT))
        shutil.rmtree(grade.GRADING, ignore_errors=True)
        load = os.getloadavg()[0]
        SPENT["seconds"] = 0.0
        state = grade.grade(submissions, force=True, scheduler=json.loads(file.read_text())["address"])
        load = (load + os.getloadavg()[0]) / 2
    finally:
        for process in processes[::-1]:
            process.terminate()
            process.wait()
    failed = [key for key, entry in state.entries.items() if entry["status"] != "graded"]
    if failed:
        sys.exit(f"grading failed for {failed}")
    first, last = state.finished[0], state.finished[-1]
    return first, (last - first) / (len(state.finished) - 1), load, SPENT["seconds"] / len(state.finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6, help="copies of the perfect student")
    parser.add_argument("--notebooks", type=int, default=6, help="the first notebooks of the course, each student")
    parser.add_argument("--cores", type=int, default=16, help="cores of a machine in the projection")
    args = parser.parse_args()
    grade.merge, grade._autograded_notes = timed(grade.merge), timed(grade._autograded_notes)
    grade.State.record, cluster.write_results = timed(grade.State.record), timed(cluster.write_results)
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two cores (taskset -c 0 and -c 1)")
    notebooks = assignments()[: args.notebooks]
    submissions = make_class(SCRATCH / "class", args.students, notebooks)
    one, two = run(submissions, [0]), run(submissions, [0, 1])
    speedup, efficiency = one[1] / two[1], one[1] / two[1] / 2
    per_student = one[1] * len(notebooks)  # one worker-core, this class's notebooks
    course = sum(NOTEBOOK_SECONDS.values()) / sum(NOTEBOOK_SECONDS[name] for name in notebooks)
    print(f"\n{args.students} students x {len(notebooks)} notebooks ({', '.join(notebooks)}); load average "
          f"{one[2]:.1f} (1 worker) and {two[2]:.1f} (2 workers) on {os.cpu_count()} cores")
    print("| workers (one core each) | first submission graded after (s) | then seconds per submission | "
          "per student | speed-up |")
    print("|---|---|---|---|---|")
    for workers, (first, rate, *_) in ((1, one), (2, two)):
        print(f"| {workers} | {first:.0f} | {rate:.2f} | {rate * len(notebooks):.1f} | "
              f"{one[1] / rate:.2f}x |")
    print(f"\nprojection, 10,000 students of these {len(notebooks)} notebooks and of all fourteen (x{course:.1f}, "
          f"from the notebooks' times), machines of {args.cores} cores, one worker a core, {efficiency:.0%} "
          "efficiency:")
    print(f"| machines | {len(notebooks)} notebooks (minutes) | 14 notebooks (minutes) |")
    print("|---|---|---|")
    for machines in (1, 10, 50, 100):
        minutes = 10_000 * per_student / (machines * args.cores * efficiency) / 60
        print(f"| {machines} | {minutes:.0f} | {minutes * course:.0f} |")
    print(f"speed-up of 2 pinned workers over 1: {speedup:.2f}x; the grading process took each result in in "
          f"{1000 * two[3]:.0f} ms (merge, files, notes, state), a bound of {10_000 * 14 * two[3] / 60:.0f} min for "
          "10,000 students x 14 whatever the machines")
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
