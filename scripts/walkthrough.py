"""Execute the solved notebooks, each in a fresh kernel, and render the walkthrough (``make walkthrough``).

    python scripts/walkthrough.py [--out build/walkthrough] [--no-html]

Writes one HTML page per notebook, every figure embedded, and an ``index.html`` that lists them in course
order. Prints each notebook's time (kernel start included) and its kernel's peak memory: the README's
notebook figures come from this table.
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
PEAK_MEMORY = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"  # KiB on Linux


def solved_notebooks() -> list[Path]:
    """The solved notebooks in course order (the assignment folders sort in order)."""
    return sorted((ROOT / "solutions").glob("*/*.ipynb"))


def execute(path: Path) -> tuple[nbformat.NotebookNode, float, float]:
    """Run a notebook top to bottom in a fresh kernel: (executed notebook, seconds, peak MiB of the kernel)."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        notebook.cells.append(nbformat.v4.new_code_cell(PEAK_MEMORY))  # asked of the same kernel, then dropped
        probe = client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
        notebook.cells.pop()
    peak_mib = int(probe.outputs[0]["text"]) / 1024
    return notebook, seconds, peak_mib


def title(notebook: nbformat.NotebookNode, fallback: str) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def write_index(out: Path, pages: list[tuple[str, str]]) -> None:
    items = "\n".join(f'    <li><a href="{html.escape(page)}">{html.escape(name)}</a></li>' for page, name in pages)
    out.joinpath("index.html").write_text(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Visualizing CNNs: the walkthrough</title></head>\n"
        "<body>\n  <h1>Visualizing CNNs: the walkthrough</h1>\n  <p>The solved notebooks, executed, in course order.</p>\n"
        f"  <ol>\n{items}\n  </ol>\n</body></html>\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "walkthrough")
    parser.add_argument("--no-html", action="store_true", help="only execute and time (the benchmark)")
    args = parser.parse_args()
    notebooks = solved_notebooks()
    if not notebooks:
        sys.exit("no notebooks in solutions/")
    args.out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    pages, total = [], 0.0
    print(f"{'notebook':<36}{'seconds':>9}{'peak MiB':>10}")
    for path in notebooks:
        notebook, seconds, peak = execute(path)
        total += seconds
        name = f"{path.parent.name}/{path.name}"
        print(f"{name:<36}{seconds:>9.1f}{peak:>10.0f}", flush=True)
        if not args.no_html:
            page = f"{path.parent.name}.html"
            body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title(notebook, name)}})
            args.out.joinpath(page).write_text(body, encoding="utf-8")
            pages.append((page, title(notebook, name)))
    print(f"{'total':<36}{total:>9.1f}")
    if pages:
        write_index(args.out, pages)
        print(f"walkthrough: {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
