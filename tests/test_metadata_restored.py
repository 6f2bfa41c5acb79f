"""A submission's nbgrader metadata never decides its grade: every released cell is graded with the released
``metadata.nbgrader`` (points, grade/solution/locked flags, ids, checksum, schema version), the student's own cells
carry none, and each change is noted. Before, ``grade: true, points: 1000`` on an answer cell made nbgrader's
``OverwriteCells`` fail (``MissingEntry``): the submission was lost, not graded.

The unit tests call :func:`repair` directly (no kernel); the end-to-end test grades ``01_autograd`` (the smallest
notebook) through the real pipeline and asserts the exact points and notes.
"""

from __future__ import annotations

import copy

import nbformat
import pytest
from conftest import grading_in

from grader_tests.engine import grade as G
from grader_tests.engine.fabricated_class import graded_tests, perfect, released
from grader_tests.engine.nbgrader_plugins import grade_id, notes, repair

A = "01_autograd"
TESTS = graded_tests(A)  # {"test_gradient_at": 2.0, "test_linear_grads_autograd": 2.0, ...}
ANSWER = "gradient_at"  # a code answer cell: grade false, solution true
TEST = "test_gradient_at"  # a locked graded test cell worth 2
WRITTEN = "answer_zero_grad"  # a written answer: grade true, solution true, 1 point


def _meta(nb: nbformat.NotebookNode, key: str) -> dict:
    (cell,) = [cell for cell in nb.cells if grade_id(cell) == key]
    return cell.metadata.nbgrader


def _all_meta(nb: nbformat.NotebookNode) -> dict[str, dict]:
    return {grade_id(cell): dict(cell.metadata.nbgrader) for cell in nb.cells if "nbgrader" in cell.metadata}


def _forged(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Every kind of metadata edit a student can make, on released cells and on cells of their own."""
    _meta(nb, ANSWER).update(grade=True, points=1000)
    _meta(nb, TEST).update(points=1000, locked=False, checksum="0" * 32)
    _meta(nb, WRITTEN).update(points=1000, grade_id=WRITTEN)  # same id, more points
    _meta(nb, "setup").update(solution=True, schema_version=1)
    _meta(nb, "test_sgd_step")["grade"] = False  # a test cell made ungraded
    index = next(i for i, cell in enumerate(nb.cells) if grade_id(cell) == TEST)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "grade_id": "bonus", "points": 1000,
        "schema_version": 3}}))
    nb.cells.insert(index + 2, nbformat.v4.new_code_cell("pass  # a second copy of the test", metadata={
        "nbgrader": copy.deepcopy(_meta(nb, TEST))}))
    nb.cells.append(nbformat.v4.new_markdown_cell("mine", metadata={"nbgrader": "not a mapping"}))
    return nb


# --- repair, without a kernel ----------------------------------------------------------------------------------


def test_every_released_cell_gets_the_released_metadata_whatever_the_submission_says():
    release = released(A)
    fixed = repair(_forged(perfect(A)), release)
    assert _all_meta(fixed) == _all_meta(release)  # the same cells, ids and metadata; the own cells carry none
    assert [grade_id(cell) for cell in fixed.cells if grade_id(cell)] == [
        grade_id(cell) for cell in release.cells if grade_id(cell)]
    (answer,) = [cell for cell in fixed.cells if grade_id(cell) == ANSWER]
    assert answer.source == next(c.source for c in perfect(A).cells if grade_id(c) == ANSWER)  # the answer is kept
    assert [cell.source for cell in fixed.cells if cell.source in ("pass", "mine")] == ["pass", "mine"]
    assert notes(fixed) == [
        "locked cell `setup`: its nbgrader metadata had been changed (schema_version, solution): restored from the "
        "released notebook",
        "answer cell `gradient_at`: its nbgrader metadata had been changed (grade, keys of its own): restored from "
        "the released notebook",
        "locked cell `test_gradient_at`: its nbgrader metadata had been changed (checksum, locked, points): restored "
        "from the released notebook",
        "locked cell `test_gradient_at` appeared 2 times (duplicate): one copy kept",
        "locked cell `test_sgd_step`: its nbgrader metadata had been changed (grade): restored from the released "
        "notebook",
        "answer cell `answer_zero_grad`: its nbgrader metadata had been changed (points): restored from the released "
        "notebook",
        '2 cell(s) of your own carried nbgrader metadata (grade_id="bonus", grade=true, solution=false, '
        "points=1000; not a mapping: str): removed, they are not graded",
    ]


def test_an_untouched_submission_gets_no_note_and_the_same_metadata():
    release = released(A)
    fixed = repair(perfect(A), release)
    assert notes(fixed) == [] and _all_meta(fixed) == _all_meta(release)


@pytest.mark.parametrize("forged", [{"grade_id": ["not", "a", "string"]}, {"grade_id": 7}, "text", ["a"], 3])
def test_metadata_of_any_shape_is_no_crash_and_no_grade(forged):
    nb = perfect(A)
    nb.cells.insert(3, nbformat.v4.new_code_cell("x = 1"))
    nb.cells[3].metadata["nbgrader"] = forged
    fixed = repair(nb, released(A))
    assert _all_meta(fixed) == _all_meta(released(A))
    assert "x = 1" in [cell.source for cell in fixed.cells]
    assert notes(fixed)[-1].startswith("1 cell(s) of your own carried nbgrader metadata")


def test_an_answer_cells_metadata_with_values_of_the_wrong_type_is_restored():
    nb = perfect(A)
    cell = next(c for c in nb.cells if grade_id(c) == ANSWER)
    index = nb.cells.index(cell)
    nb.cells[index] = copy.deepcopy(cell)
    nb.cells[index].metadata["nbgrader"] = {"grade_id": ANSWER, "solution": "yes", "grade": "true"}
    fixed = repair(nb, released(A))
    assert _meta(fixed, ANSWER) == _meta(released(A), ANSWER)
    assert notes(fixed) == ["answer cell `gradient_at`: its nbgrader metadata had been changed (cell_type, checksum, "
                            "grade, locked, schema_version, solution): restored from the released notebook"]


# --- graded end to end -------------------------------------------------------------------------------------------


def test_forged_metadata_is_graded_with_the_real_points_and_noted(tmp_path_factory):
    submissions = tmp_path_factory.mktemp("class")
    for student, nb in {"forgedright": _forged(perfect(A)), "forgedstubs": _forged(released(A))}.items():
        (submissions / student / A).mkdir(parents=True)
        nbformat.write(nb, submissions / student / A / "autograd.ipynb")
    with grading_in(tmp_path_factory.mktemp("grading")) as grading:
        state = G.grade(submissions, workers=2, timeout=30)
        rows = {row["student"]: row for row in G.write_reports(state)}
        assert {key: entry["status"] for key, entry in state.entries.items()} == {
            f"forgedright/{A}": "graded", f"forgedstubs/{A}": "graded"}
        points = {student: {name: float(rows[student][f"{A}/{name}"] or 0) for name in TESTS} for student in rows}
        assert points == {"forgedright": dict(TESTS), "forgedstubs": dict.fromkeys(TESTS, 0.0)}
        assert float(rows["forgedright"][A]) == sum(TESTS.values())  # nothing of "bonus" or the 1000 points
        assert rows["forgedright"]["max"] == rows["forgedstubs"]["max"] == sum(G.graded_cells(A).values())

        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{G.MAIN_DB}") as gradebook:
            (notebook,) = gradebook.find_submission(A, "forgedright").notebooks
            assert {grade.name: grade.max_score for grade in notebook.grades} == G.graded_cells(A)
        autograded = nbformat.read(grading / "autograded" / "forgedright" / A / "autograd.ipynb", as_version=4)
        def without_checksums(metadata: dict[str, dict]) -> dict[str, dict]:  # nbgrader rewrites them
            return {key: {k: v for k, v in meta.items() if k != "checksum"} for key, meta in metadata.items()}

        assert without_checksums(_all_meta(autograded)) == without_checksums(_all_meta(released(A)))
        for student in ("forgedright", "forgedstubs"):
            written = state.entries[f"{student}/{A}"]["notes"]
            assert ("answer cell `gradient_at`: its nbgrader metadata had been changed (grade, keys of its own): "
                    "restored from the released notebook") in written
            assert ("locked cell `test_gradient_at`: its nbgrader metadata had been changed (checksum, locked, "
                    "points): restored from the released notebook") in written
