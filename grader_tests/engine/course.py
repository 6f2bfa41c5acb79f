"""The course as nbgrader sees it: assignments, their released notebooks and graded cells, nbgrader's API on
this course's configuration (``nbgrader_config.py``), and generating the student versions."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import nbformat

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


def nbgrader_api(db_url: str | None = None, release_dir: Path | None = None, **execute: Any) -> Any:
    """nbgrader's API on ``nbgrader_config.py``, optionally with another gradebook, release folder or options of
    the grading kernels' ``GuardedExecute`` (``timeout``, ``figures``, ``every_cell``; None keeps the default)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config, PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
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


def generate(release_dir: Path | None = None, db_url: str | None = None, quiet: bool = False) -> None:
    """``nbgrader generate_assignment`` for every assignment of ``solutions/`` (into ``notebooks/`` by default)."""
    api = nbgrader_api(db_url, release_dir)
    Path(api.coursedir.db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for assignment in assignments(folder="solutions"):
        result = api.generate_assignment(assignment, force=True)
        if not result["success"]:
            sys.exit(f"generating {assignment} failed:\n{result.get('error') or result.get('log')}")
        if not quiet:
            print(f"generated {assignment}")
