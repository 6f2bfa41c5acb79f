"""Execute the solved notebooks, each in a fresh kernel, and render the walkthrough (``make walkthrough``).

    python scripts/walkthrough.py [--only NAME ...] [--out build/walkthrough] [--no-html]

Writes one HTML page per notebook, every figure embedded, and an ``index.html`` with each notebook's goals, run
time and main figure, in course order; formulas are typeset by a copy of MathJax in ``mathjax/`` next to them,
so the folder works offline (:mod:`pages`). ``--only`` executes and renders the named notebooks only (an
assignment folder such as ``01_autograd``, or a notebook name such as ``autograd``), with an index of those.
Prints each notebook's time (kernel start included) and two peaks of its kernel's memory (docs/benchmarks.md's
notebook figures come from this table), and, while a notebook runs, a line every ten seconds with the cell it is
at. ``peak MiB`` is the resident set (``ru_maxrss``), which also counts the pages of torch's shared libraries the
kernel has mapped, a number that depends on the page cache (more right after an
install); ``private MiB`` is the largest anonymous memory (``RssAnon``: heap, tensors, the libraries' own data)
sampled every 10 ms, the part the notebook's code controls.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pages  # scripts/pages.py, next to this script
import zmq
from jupyter_client import KernelManager
from nbclient import NotebookClient
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[1]
PEAK_MEMORY = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"  # KiB on Linux
PROGRESS_EVERY = 10.0  # seconds between two progress lines inside a notebook


def solved_notebooks(only: list[str] | None = None) -> list[Path]:
    """The solved notebooks in course order (the assignment folders sort in order); ``only``: those named, by
    assignment folder (``01_autograd``) or notebook name (``autograd``)."""
    notebooks = sorted((ROOT / "solutions").glob("*/*.ipynb"))
    if not only:
        return notebooks
    names = {name: path for path in notebooks for name in (path.parent.name, path.stem)}
    unknown = [name for name in only if name not in names]
    if unknown:
        choices = ", ".join(path.parent.name for path in notebooks)
        sys.exit(f"no solved notebook named {', '.join(unknown)} (choose among {choices})")
    return [path for path in notebooks if path in {names[name] for name in only}]


def kernel_config() -> Config:
    """Kernels encrypted with CurveZMQ where the kernel and pyzmq support it: ipykernel warns about a kernel that
    talks plain TCP, and the kernel manager provisions the keys when asked (``transport_encryption``)."""
    config = Config()
    if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption"):  # where jupyter_client has it
        config.KernelManager.transport_encryption = "auto"
    return config


class PrivateMemorySampler(threading.Thread):
    """Samples a process's anonymous resident memory (``RssAnon`` in ``/proc/PID/status``) until stopped;
    ``peak_mib`` is the largest value seen."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.status, self.interval, self.peak_mib = Path(f"/proc/{pid}/status"), interval, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                line = next(line for line in self.status.read_text().splitlines() if line.startswith("RssAnon:"))
            except (OSError, StopIteration):  # the kernel has ended, or no such field on this system
                return
            self.peak_mib = max(self.peak_mib, int(line.split()[1]) / 1024)

    def __enter__(self) -> PrivateMemorySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


def progress_printer(name: str, every: float = PROGRESS_EVERY) -> Callable[[int, int, float], None]:
    """A callback for :func:`execute` that prints ``  ... NAME: cell K of N, S s`` at most every ``every`` seconds."""
    last = [0.0]

    def report(cell: int, cells: int, seconds: float) -> None:
        if seconds - last[0] >= every:
            last[0] = seconds
            print(f"  ... {name}: cell {cell} of {cells}, {seconds:.0f} s", flush=True)

    return report


def execute(path: Path, progress: Callable[[int, int, float], None] | None = None,
            ) -> tuple[nbformat.NotebookNode, float, float, float]:
    """Run a notebook top to bottom in a fresh kernel: (executed notebook, seconds, peak MiB of the kernel's
    resident set, peak MiB of its private memory). ``progress(cell, cells, seconds)`` is called before each cell
    (1-based) with the seconds since the start."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", config=kernel_config(),
                            shutdown_kernel="immediate",  # nothing the kernel does after its last cell matters
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel(), PrivateMemorySampler(client.km.provisioner.pid) as private:
        for index, cell in enumerate(notebook.cells):
            if progress:
                progress(index + 1, len(notebook.cells), time.perf_counter() - start)
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        notebook.cells.append(nbformat.v4.new_code_cell(PEAK_MEMORY))  # asked of the same kernel, then dropped
        probe = client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
        notebook.cells.pop()
    peak_mib = int(probe.outputs[0]["text"]) / 1024
    return notebook, seconds, peak_mib, private.peak_mib


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "walkthrough", help="the pages' folder")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="only these notebooks: 01_autograd (assignment) or autograd (notebook)")
    parser.add_argument("--no-html", action="store_true", help="only execute and time (the benchmark)")
    args = parser.parse_args(argv)
    notebooks = solved_notebooks(args.only)
    if not notebooks:
        sys.exit("no notebooks in solutions/")
    if not args.no_html:
        args.out.mkdir(parents=True, exist_ok=True)
        pages.copy_mathjax(args.out)  # first: a missing MathJax stops the build before an hour of work
        exporter = pages.exporter()
    titles = [(f"{path.parent.name}.html", pages.title(nbformat.read(path, as_version=4), path.parent.name))
              for path in notebooks]  # (page, title) in course order, for the links between pages
    cards, total = [], 0.0
    print(f"{'notebook':<36}{'seconds':>9}{'peak MiB':>10}{'private MiB':>13}", flush=True)
    for index, path in enumerate(notebooks):
        name = f"{path.parent.name}/{path.name}"
        notebook, seconds, peak, private = execute(path, progress_printer(f"{name} ({index + 1}/{len(notebooks)})"))
        total += seconds
        print(f"{name:<36}{seconds:>9.1f}{peak:>10.0f}{private:>13.0f}", flush=True)
        if not args.no_html:
            page, title = titles[index]
            body = pages.render_page(notebook, title, pages.nav_bar(titles, index), exporter)
            args.out.joinpath(page).write_text(body, encoding="utf-8")
            cards.append(pages.summary(notebook, page, name, seconds, peak))
    print(f"{'total':<36}{total:>9.1f}")
    if cards:
        print(f"walkthrough: {pages.write_index(args.out, cards)}")


if __name__ == "__main__":
    main()
