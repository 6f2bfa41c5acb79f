"""A notebook's time alone and beside busy processes (``make benchmark-load``): does it keep its speed on a
shared machine?

    python scripts/benchmark_load.py [--notebook 14_shortcut] [--busy 2] [--repeat 1]

Executes the solved notebook in a fresh kernel (:func:`walkthrough.execute`, kernel start included) with nothing
of ours beside it, then again with ``--busy`` processes that each keep one core busy (``while True: pass``), and
prints both times, their ratio and the threads torch used in the kernel (read from the notebook's environment
check, which :func:`helpers.environment.limit_threads` sized). ``OMP_NUM_THREADS=N`` before the command sets the
kernel's threads instead. The load average before each run is printed too: other work on the machine counts.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import walkthrough  # scripts/walkthrough.py, next to this script

THREADS = re.compile(r"\((?:CPU only|CUDA available), (\d+) threads?\)")


def busy_processes(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy until terminated."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def kernel_threads(notebook) -> int | None:
    """The thread count the notebook's environment check printed (``... (CPU only, 2 threads) ...``), or None."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            found = THREADS.search(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", "")))
            if found:
                return int(found.group(1))
    return None


def timed(path: Path, busy: int) -> tuple[float, int | None, float]:
    """(seconds, torch threads in the kernel, 1-minute load average before) of one run beside ``busy`` processes."""
    hogs = busy_processes(busy)
    try:
        time.sleep(1.0 if busy else 0.0)  # let the busy processes start
        load = os.getloadavg()[0]
        notebook, seconds, _, _ = walkthrough.execute(path)
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.wait()
    return seconds, kernel_threads(notebook), load


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default="14_shortcut", help="assignment folder or notebook name")
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the second run (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each kind (the fastest counts)")
    args = parser.parse_args(argv)
    (path,) = walkthrough.solved_notebooks([args.notebook])
    omp = os.environ.get("OMP_NUM_THREADS")
    print(f"{path.relative_to(walkthrough.ROOT)} on {os.cpu_count()} cores"
          f" (usable: {len(os.sched_getaffinity(0))}), OMP_NUM_THREADS={omp or 'unset'}", flush=True)
    best = {}
    for busy in (0, args.busy):
        for _ in range(args.repeat):
            seconds, threads, load = timed(path, busy)
            print(f"  beside {busy} busy processes: {seconds:6.1f} s  (torch threads in the kernel: {threads}, "
                  f"load average before: {load:.2f})", flush=True)
            best[busy] = min(seconds, best.get(busy, seconds))
    print(f"ratio (fastest beside {args.busy} busy / fastest alone): {best[args.busy] / best[0]:.2f}x")


if __name__ == "__main__":
    main()
