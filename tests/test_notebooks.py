"""The notebooks as code: nbgrader metadata, student versions in sync and leak-free, stubs fail cleanly.

The solved notebooks themselves run under nbval (``solutions/`` is a test path with ``--nbval-lax``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SOLVED = sorted((ROOT / "solutions").glob("*/*.ipynb"))
RELEASED = sorted((ROOT / "notebooks").glob("*/*.ipynb"))
ids = lambda paths: [p.parent.name for p in paths]  # noqa: E731


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def test_assignments_in_course_order():
    assert [p.parent.name for p in SOLVED] == [
        "01_autograd", "02_parameters", "03_filters", "04_activations", "05_saliency", "06_gradcam", "07_patches",
        "08_dissection", "09_embeddings", "10_class_visualization", "11_occlusion", "12_attributions",
        "13_sanity_checks", "14_shortcut",
    ]
    assert ids(RELEASED) == ids(SOLVED)


@pytest.mark.parametrize("path", SOLVED, ids=ids(SOLVED))
def test_solved_notebook_metadata(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    grade_ids = [_nbgrader(c)["grade_id"] for c in notebook.cells if _nbgrader(c)]
    assert len(grade_ids) == len(set(grade_ids)), "grade_id values must be unique"
    kinds = {"solution": 0, "test": 0}
    for cell in notebook.cells:
        meta = _nbgrader(cell)
        assert not cell.get("outputs"), f"stored output in a solved notebook: {cell.source[:60]!r}"
        if "BEGIN SOLUTION" in cell.source:
            assert meta.get("solution"), f"solution region outside a solution cell: {cell.source[:60]!r}"
        if "BEGIN HIDDEN TESTS" in cell.source:
            assert meta.get("grade") and not meta.get("solution"), "hidden tests outside a test cell"
        if meta.get("grade"):
            assert meta.get("points", 0) > 0, f"graded cell {meta['grade_id']} has no points"
        if meta.get("solution") and cell.cell_type == "code":
            kinds["solution"] += 1
        if meta.get("grade") and not meta.get("solution"):
            kinds["test"] += 1
            assert meta.get("locked"), f"test cell {meta['grade_id']} must be locked"
            last = ast.parse(cell.source).body[-1]
            bare = isinstance(last, ast.Expr) and not (isinstance(last.value, ast.Call) and getattr(last.value.func, "id", "") == "print")
            assert not bare, f"test cell {meta['grade_id']} ends in an expression nbgrader could read as a score"
    assert kinds["solution"] >= 1 and kinds["test"] >= 1


@pytest.mark.parametrize("path", RELEASED, ids=ids(RELEASED))
def test_student_version_holds_no_solution_and_no_hidden_test(path):
    text = path.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "grader_tests"):
        assert marker not in text, f"{marker!r} leaked into {path}"


def test_student_versions_are_generated_from_the_solutions(tmp_path):
    release = tmp_path / "release"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_notebooks.py"), "--release-dir", str(release),
         "--db", f"sqlite:///{tmp_path / 'gradebook.db'}"],
        check=True, capture_output=True, cwd=ROOT,
    )
    fresh = sorted(release.glob("*/*.ipynb"))
    assert [p.relative_to(release) for p in fresh] == [p.relative_to(ROOT / "notebooks") for p in RELEASED]
    for new, committed in zip(fresh, RELEASED):
        assert json.loads(new.read_text()) == json.loads(committed.read_text()), (
            f"{committed.relative_to(ROOT)} is out of date: run `make notebooks` and commit notebooks/"
        )


@pytest.mark.parametrize("path", RELEASED, ids=ids(RELEASED))
def test_untouched_student_version_fails_only_at_the_todos(path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [(i, out.ename) for i, cell in enumerate(notebook.cells) for out in cell.get("outputs", [])
              if out.output_type == "error"]
    assert errors, "no cell failed: does the student version still contain a solution?"
    assert {name for _, name in errors} == {"NotImplementedError"}, f"cells failing otherwise: {errors}"
