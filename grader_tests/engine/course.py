"""The course as nbgrader sees it: assignments, their released notebooks and graded cells, nbgrader's API on
this course's configuration (``nbgrader_config.py``), and generating the student versions."""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import ClearSolutions

ROOT = Path(__file__).resolve().parents[2]


def assignments(root: Path = ROOT, folder: str = "notebooks") -> list[str]:
    """Assignment ids in course order: the folders of ``folder`` (``solutions`` before generating)."""
    return sorted(path.name for path in (root / folder).iterdir() if path.is_dir() and any(path.glob("*.ipynb")))


def notebook_path(assignment: str, root: Path = ROOT, folder: str = "notebooks") -> Path:
    """The one notebook of an assignment."""
    (path,) = (root / folder / assignment).glob("*.ipynb")
    return path


def graded_cells(assignment: str, root: Path = ROOT, *, autograded_only: bool = False) -> dict[str, float]:
    """``{grade_id: points}`` of the graded cells in notebook order; ``autograded_only``: the test code cells,
    without the written answers graded by hand."""
    cells = {}
    for cell in nbformat.read(notebook_path(assignment, root), as_version=4).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not (autograded_only and (meta.get("solution") or cell.cell_type != "code")):
            cells[meta["grade_id"]] = float(meta["points"])
    return cells


def nbgrader_api(
    db_url: str | None = None, release_dir: Path | None = None, root: Path = ROOT, **execute: Any
) -> Any:
    """nbgrader's API on ``root/nbgrader_config.py``, optionally with another gradebook, release folder or options
    of the grading kernels' ``GuardedExecute`` (``timeout``, ``figures``, ``every_cell``; None keeps the default)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config, PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    overrides = Config()
    if db_url is not None:
        overrides.CourseDirectory.db_url = db_url
    if release_dir is not None:
        overrides.CourseDirectory.release_directory = str(Path(release_dir).resolve())
    for name, value in execute.items():
        if value is not None:
            overrides.GuardedExecute[name] = value
    config.merge(overrides)
    # nbgrader runs `alembic` as a subprocess to create a new gradebook: find the one next to this Python
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


class NamedStubs(ClearSolutions):
    """nbgrader's ``ClearSolutions`` whose code stub names the function the student writes: ``{function}`` in
    ``ClearSolutions.code_stub`` (``nbgrader_config.py``) becomes the name of the ``def`` whose body holds the
    solution region, so an unfinished task stops Run All with ``NotImplementedError: write gradient_at: ...``.

    A region outside any ``def`` (never the case in this course: TODOs are function bodies) gets
    ``outside_function`` instead.
    """

    outside_function = "the code of this cell"

    def _replace_solution_region(self, cell: NotebookNode, language: str) -> bool:
        replaced = super()._replace_solution_region(cell, language)
        named = [line.strip() for line in self.code_stub[language].split("\n") if "{function}" in line]
        if not (replaced and cell.cell_type == "code" and named):
            return replaced
        lines = cell.source.split("\n")
        for number, line in enumerate(lines, start=1):
            if line.strip() in named:
                function = enclosing_function(cell.source, number) or self.outside_function
                lines[number - 1] = line.replace("{function}", function)
        cell.source = "\n".join(lines)
        return replaced


def enclosing_function(source: str, line: int) -> str | None:
    """The name of the innermost function whose body holds line ``line`` (1-based) of ``source``; None at top
    level. Source that is not plain Python (IPython magics) is read by indentation: the nearest ``def`` above
    that is indented less."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        lines = source.split("\n")
        depth = len(lines[line - 1]) - len(lines[line - 1].lstrip())
        for above in reversed(lines[: line - 1]):
            match = re.match(r"(\s*)(?:async\s+)?def\s+(\w+)", above)
            if match and len(match[1]) < depth:
                return match[2]
        return None
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.body[0].lineno <= line <= (node.end_lineno or node.lineno)]
    return max(functions, key=lambda node: node.lineno).name if functions else None


def generate(
    release_dir: Path | None = None, db_url: str | None = None, quiet: bool = False, root: Path = ROOT
) -> None:
    """``nbgrader generate_assignment`` for every assignment of ``root/solutions/`` (into ``root/notebooks/`` by
    default)."""
    api = nbgrader_api(db_url, release_dir, root)
    Path(api.coursedir.db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for assignment in assignments(root, folder="solutions"):
        result = api.generate_assignment(assignment, force=True)
        if not result["success"]:
            sys.exit(f"generating {assignment} failed:\n{result.get('error') or result.get('log')}")
        if not quiet:
            print(f"generated {assignment}")
