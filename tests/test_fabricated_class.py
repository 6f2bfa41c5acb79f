"""The fabricated class builds the same bytes every time, writes valid notebooks and expects sensible grades.

Nothing is executed here: whether each expectation holds is what the autograding pipeline's tests check.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from grader_tests.engine.fabricated_class import (
    EXPECTED_TOTAL_POINTS,
    ROOT,
    assignments,
    autograded_points,
    build_class,
    notebook_name,
)

ASSIGNMENTS = assignments()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("class")
    return out, build_class(out)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_builds_are_byte_identical(built, tmp_path):
    out, students = built
    again = build_class(tmp_path)
    assert again == students
    assert _files(tmp_path) == _files(out)


def test_layout_and_ids(built):
    out, students = built
    assert {"perfect", "untouched"} <= set(students)
    assert sorted(p.name for p in out.iterdir()) == sorted(students)
    for sid, student in students.items():
        assert re.fullmatch(r"[a-z0-9]+", sid), sid
        assert student.expected, f"{sid} submits nothing"
        assert sorted(p.name for p in (out / sid).iterdir()) == sorted(student.expected)
        assert set(student.expected) <= set(ASSIGNMENTS)
        assert student.note is None or (student.note and student.note == student.note.lower())
        assert student.description


def test_every_notebook_but_the_truncated_one_is_valid(built):
    out, _ = built
    invalid = []
    for path in sorted(out.rglob("*.ipynb")):
        try:
            notebook = nbformat.reads(path.read_text(), as_version=4)
        except (json.JSONDecodeError, nbformat.reader.NotJSONError):
            invalid.append(path.relative_to(out).parts[0])
            continue
        nbformat.validate(notebook)
        assert all(not cell.get("outputs") for cell in notebook.cells), path
    assert invalid == ["invalidjson"]


def test_no_solution_markers_or_hidden_tests(built):
    out, _ = built
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode(errors="replace")
            for marker in ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "END SOLUTION"):
                assert marker not in text, f"{marker!r} in {path.relative_to(out)}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_perfect_keeps_the_released_cells(built, assignment):
    out, _ = built
    name = notebook_name(assignment)
    released = nbformat.read(ROOT / "notebooks" / assignment / name, as_version=4)
    submitted = nbformat.read(out / "perfect" / assignment / name, as_version=4)
    assert [c.id for c in submitted.cells] == [c.id for c in released.cells]
    assert submitted.metadata == released.metadata
    for mine, theirs in zip(submitted.cells, released.cells):
        assert mine.metadata == theirs.metadata  # checksums included
        assert mine.cell_type == theirs.cell_type
        nbgrader = theirs.metadata.get("nbgrader", {})
        if nbgrader.get("locked") or not nbgrader.get("solution"):
            assert mine.source == theirs.source, f"{assignment}: cell {theirs.id} changed"
        else:
            assert mine.source != theirs.source, f"{assignment}: solution {nbgrader['grade_id']} not filled"
            assert "NotImplementedError" not in mine.source and "YOUR ANSWER HERE" not in mine.source


def test_points_come_from_the_metadata():
    for assignment in ASSIGNMENTS:
        released = nbformat.read(ROOT / "notebooks" / assignment / notebook_name(assignment), as_version=4)
        manual = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "markdown"]
        assert manual, f"{assignment}: the written answers should exist (and are not autograded)"
        assert EXPECTED_TOTAL_POINTS[assignment] == autograded_points(assignment) > 0


def test_expected_points(built):
    _, students = built
    assert students["perfect"].expected == EXPECTED_TOTAL_POINTS
    assert students["untouched"].expected == dict.fromkeys(ASSIGNMENTS, 0.0)
    for sid, student in students.items():
        for assignment, points in student.expected.items():
            assert 0 <= points <= EXPECTED_TOTAL_POINTS[assignment], (sid, assignment, points)
