"""Autograding end to end: the fabricated class gets exactly its expected grades, with a reason for every broken
submission, no hidden test in any feedback, and the same grades when graded again."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import grading_in

from grader_tests.engine import grade as G
from grader_tests.engine.fabricated_class import build_class, graded_tests
from grader_tests.engine.nbgrader_plugins import JudgeHiddenChecks, expected_checks, is_autograded_test, notes, repair
from grader_tests.kernel.record import RECORD_MIME, Probe, encode

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grading(tmp_path_factory):
    with grading_in(tmp_path_factory.mktemp("grading")) as folder:
        yield folder


@pytest.fixture(scope="module")
def graded(grading, tmp_path_factory):
    submissions = tmp_path_factory.mktemp("class")
    students = build_class(submissions)
    state = G.grade(submissions, workers=2, timeout=30)
    rows = {row["student"]: row for row in G.write_reports(state)}
    return submissions, students, state, rows


def _autograded(row: dict, assignment: str) -> float:
    """The points of the graded *test* cells (written answers are graded by hand)."""
    return sum(float(row[f"{assignment}/{name}"] or 0) for name in graded_tests(assignment))


def _feedback(grading: Path, student: str) -> str:
    return "\n".join(path.read_text() for path in sorted((grading / "feedback" / student).rglob("*.html")))


def test_every_submission_is_graded_and_none_fails(graded):
    _, students, state, _ = graded
    expected = {f"{student}/{assignment}" for student, s in students.items() for assignment in s.expected}
    assert set(state.entries) == expected
    assert {key: entry["status"] for key, entry in state.entries.items() if entry["status"] != "graded"} == {}


def test_the_fabricated_class_gets_its_expected_grades(graded):
    _, students, _, rows = graded
    actual = {s: {a: _autograded(rows[s], a) for a in students[s].expected} for s in students}
    assert actual == {s: dict(students[s].expected) for s in students}


def test_assignments_not_submitted_stay_empty_in_the_csv(graded, grading):
    _, students, _, _ = graded
    with open(grading / "grades.csv") as handle:
        table = {row["student"]: row for row in csv.DictReader(handle)}
    assert set(table) == set(students)
    assert table["warning"]["06_gradcam"] == "" and table["warning"]["02_parameters"] != ""
    assert float(table["perfect"]["total"]) == sum(students["perfect"].expected.values())  # answers not graded yet
    assert (grading / "scores.png").stat().st_size > 0
    assert not (grading / "lms").exists()  # an nbgrader folder came from no LMS: no gradebook import to write


def test_each_broken_submission_gets_its_reason_in_the_feedback(graded, grading):
    _, students, _, _ = graded
    for student, info in students.items():
        if info.note:
            assert info.note in _feedback(grading, student).lower(), student


def test_no_feedback_shows_a_hidden_test_or_a_record(graded, grading):
    _, students, _, _ = graded
    check_names = {name.rsplit(".", 1)[1] for name in _hidden_check_names()}
    for student in students:
        text = _feedback(grading, student)
        assert text, f"no feedback for {student}"
        assert "BEGIN HIDDEN TESTS" not in text and RECORD_MIME not in text
        assert not [name for name in check_names if name in text], student
        if student != "importsgrader":  # quotes its own import of the grader's package
            assert "grader_tests" not in text, student


def test_a_rerun_grades_nothing_again_and_a_regrade_gives_the_same_grades(graded, grading):
    submissions, _, _, rows = graded
    again = G.grade(submissions, workers=2, timeout=30)
    assert again.graded_now == 0
    only = submissions.parent / "regrade"
    (only / "partlywrong").mkdir(parents=True)
    for assignment in ("06_gradcam",):
        shutil.copytree(submissions / "partlywrong" / assignment, only / "partlywrong" / assignment)
    regraded = G.grade(only, workers=1, timeout=30, force=True)
    assert regraded.graded_now == 1
    assert G.grade_table(["partlywrong"], G.MAIN_DB)[1][0] == rows["partlywrong"]


def test_grading_skips_figures_and_the_cells_no_test_depends_on_and_says_so(graded, grading):
    autograded = nbformat.read(grading / "autograded" / "perfect" / "06_gradcam" / "gradcam.ipynb", as_version=4)
    marker = next(i for i, cell in enumerate(autograded.cells) if cell.metadata.get("visualizing_cnns") == "not-run")
    assert is_autograded_test(autograded.cells[marker - 1])
    after = [cell for cell in autograded.cells[marker:] if cell.cell_type == "code"]
    assert after and all(not cell.outputs for cell in after)
    before = [cell for cell in autograded.cells[:marker] if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in before)  # every cell before the last test feeds a test here
    images = [key for cell in before for out in cell.outputs for key in out.get("data", {}) if "image" in key]
    assert images == []
    assert "Grading stopped here" in _feedback(grading, "perfect")
    # cells before the last test that no test depends on (figures of the demo filters) are not run either
    filters = nbformat.read(grading / "autograded" / "perfect" / "03_filters" / "filters.ipynb", as_version=4)
    marker = next(i for i, cell in enumerate(filters.cells) if cell.metadata.get("visualizing_cnns") == "not-run")
    code = [cell for cell in filters.cells[:marker] if cell.cell_type == "code"]
    skipped = [cell for cell in code if not cell.execution_count]
    assert len(skipped) == 5
    assert all(cell.outputs[0]["data"]["text/plain"].startswith("Not run in grading") for cell in skipped)
    assert all(cell.execution_count for cell in code
               if cell.metadata.get("nbgrader", {}).get("solution") or is_autograded_test(cell))


def test_full_grading_renders_every_figure_and_cell_for_the_same_grade(graded, grading):
    submissions, _, _, rows = graded
    only = submissions.parent / "full"
    (only / "perfect").mkdir(parents=True)
    shutil.copytree(submissions / "perfect" / "06_gradcam", only / "perfect" / "06_gradcam")
    G.grade(only, workers=1, timeout=30, force=True, full=True)
    feedback = (grading / "feedback" / "perfect" / "06_gradcam" / "gradcam.html").read_text()
    assert "data:image/png" in feedback and "Grading stopped here" not in feedback
    assert G.grade_table(["perfect"], G.MAIN_DB)[1][0] == rows["perfect"]


def _hidden_check_names() -> list[str]:
    import importlib

    names = []
    for module in ("autograd", "parameters", "filters", "activations", "saliency", "gradcam", "patches", "dissection",
                   "embeddings", "class_visualization", "occlusion", "attributions",
                   "sanity_checks", "shortcut"):
        namespace = vars(importlib.import_module(f"grader_tests.kernel.{module}"))
        names += [check.name for check in namespace.values() if isinstance(check, Probe)]
    return names


# --- the pieces, without a kernel ------------------------------------------------------------------------------


def test_every_graded_test_cell_has_a_hidden_check_the_judge_knows():
    known = set(_hidden_check_names())
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                names = expected_checks(cell.source)
                assert names and set(names) <= known, (path.name, meta["grade_id"])


def _release(assignment: str = "06_gradcam") -> nbformat.NotebookNode:
    return nbformat.read(next((ROOT / "notebooks" / assignment).glob("*.ipynb")), as_version=4)


def _ids(nb: nbformat.NotebookNode) -> list:
    return [cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nb.cells]


def test_repair_restores_deleted_duplicated_retyped_and_edited_cells_and_keeps_extra_cells():
    release = _release()
    nb = _release()
    index = {key: i for i, key in enumerate(_ids(nb))}
    nb.cells[index["setup"]].source = "pass  # edited"
    answer = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution")
                  and c.cell_type == "code")
    nb.cells[answer].source = "def f():\n    return 1"
    nb.cells[answer] = nbformat.v4.new_markdown_cell(nb.cells[answer].source, metadata=nb.cells[answer].metadata)
    nb.cells.insert(answer + 1, nbformat.v4.new_code_cell("helper = 42"))
    nb.cells.insert(index["model_code"], nbformat.from_dict(nb.cells[index["model_code"]]))  # duplicate
    del nb.cells[index["intro"]]
    fixed = repair(nb, release)
    assert [key for key in _ids(fixed) if key] == [key for key in _ids(release) if key]
    by_id = {key: cell for key, cell in zip(_ids(fixed), fixed.cells) if key}
    assert by_id["setup"].source == release.cells[index["setup"]].source
    answer_id = release.cells[answer].metadata.nbgrader["grade_id"]
    assert by_id[answer_id].cell_type == "code" and by_id[answer_id].source == "def f():\n    return 1"
    position = _ids(fixed).index(answer_id)
    assert fixed.cells[position + 1].source == "helper = 42"
    text = " ".join(notes(fixed))
    assert "`intro` was missing" in text and "`setup` had been edited" in text
    assert "`model_code` appeared 2 times" in text and "changed to markdown" in text


def _graded_cell(source_hidden: str, outputs: list) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(
        f"assert True\n### BEGIN HIDDEN TESTS\n{source_hidden}\n### END HIDDEN TESTS\n",
        metadata={"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "t", "points": 1}},
    )
    cell.outputs, cell.execution_count = outputs, 3
    return cell


def _judge(cell: nbformat.NotebookNode) -> list:
    nb = nbformat.v4.new_notebook(cells=[cell])
    JudgeHiddenChecks().preprocess(nb, {})
    return [out for out in nb.cells[0].outputs if out.output_type == "error"]


def test_the_judge_fails_a_wrong_answer_that_the_kernel_reported_as_passing():
    from grader_tests.judges import parameters as P
    from grader_tests.kernel.parameters import check_conv2d_params

    hidden = "from grader_tests.kernel.parameters import check_conv2d_params\ncheck_conv2d_params(conv2d_params)"
    wrong = encode(check_conv2d_params.name, check_conv2d_params.probe(lambda *args: 7))
    right = encode(check_conv2d_params.name, check_conv2d_params.probe(P.conv2d_params))
    record = {"output_type": "display_data", "metadata": {}, "data": {RECORD_MIME: wrong, "text/plain": ""}}
    errors = _judge(_graded_cell(hidden, [nbformat.from_dict(record)]))  # no error in the kernel: it was patched
    assert len(errors) == 1 and errors[0].ename == "HiddenTestFailed"
    record["data"][RECORD_MIME] = right
    assert _judge(_graded_cell(hidden, [nbformat.from_dict(record)])) == []
    assert "did not run" in _judge(_graded_cell(hidden, []))[0].evalue  # no record: no points


def test_the_judge_refuses_records_that_are_not_data():
    import base64
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    payload = base64.b64encode(pickle.dumps({"check": "x", "observations": Evil()})).decode()
    record = {"output_type": "display_data", "metadata": {}, "data": {RECORD_MIME: payload}}
    hidden = "from grader_tests.kernel.parameters import check_conv2d_params\ncheck_conv2d_params(conv2d_params)"
    cell = _graded_cell(hidden, [nbformat.from_dict(record)])
    nb = nbformat.v4.new_notebook(cells=[cell])
    JudgeHiddenChecks().preprocess(nb, {})
    assert nb.cells[-1].outputs[-1].ename == "HiddenTestFailed" and "malformed" in " ".join(notes(nb))


def test_an_lms_zip_is_sorted_into_students_and_assignments(grading, tmp_path):
    release = next((ROOT / "notebooks" / "06_gradcam").glob("*.ipynb")).read_bytes()
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("alice_4711_gradcam.ipynb", release)
        zipped.writestr("submissions/bob_gradcam.ipynb", release)
        zipped.writestr("carol_notes.txt", "not a notebook")
    tasks, skipped = G.intake(archive)
    assert skipped == ["carol_notes.txt: not a notebook"] or [line.split(":")[0] for line in skipped] == [
        "carol_notes.txt"]
    assert sorted(task.key for task in tasks) == ["alice/06_gradcam", "bob/06_gradcam"]
    assert json.loads((grading / "submitted" / "bob" / "06_gradcam" / "gradcam.ipynb").read_text())["cells"]


def test_nbgrader_zip_collect_by_hand_files_an_lms_zip_under_the_students(tmp_path):
    """README's by-hand route: `nbgrader zip_collect` with this course's configuration and LMS file names."""
    import os
    import subprocess
    import sys

    release = next((ROOT / "notebooks" / "06_gradcam").glob("*.ipynb")).read_bytes()
    archive = tmp_path / "grading" / "downloaded" / "06_gradcam" / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "download.zip", "w") as zipped:
        zipped.writestr("alice_4711_gradcam.ipynb", release)
        zipped.writestr("bob_gradcam.ipynb", release)
        zipped.writestr("josé_gradcam.ipynb", release)  # not cut to its ASCII tail
        zipped.writestr(".._gradcam.ipynb", release)  # no id of dots
    env = {**os.environ, "VISUALIZING_CNNS_GRADING": str(tmp_path / "grading")}
    nbgrader = Path(sys.executable).parent / "nbgrader"
    done = subprocess.run([str(nbgrader), "zip_collect", "06_gradcam"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    submitted = tmp_path / "grading" / "submitted"
    assert sorted(p.relative_to(submitted).as_posix() for p in submitted.rglob("*.ipynb")) == [
        "alice/06_gradcam/gradcam.ipynb", "bob/06_gradcam/gradcam.ipynb", "josé/06_gradcam/gradcam.ipynb"]


def test_the_merge_takes_only_automatic_scores_from_a_task_gradebook(grading, tmp_path):
    """A task's gradebook is the grader's, but nothing in it besides the automatic scores reaches the class's."""
    from nbgrader.api import Gradebook

    task = tmp_path / "task.db"
    G.empty_gradebook(task)
    with Gradebook(f"sqlite:///{task}") as gb:
        gb.add_student("mallory")
        submission = gb.add_submission("02_parameters", "mallory")
        for grade in submission.notebooks[0].grades:
            grade.auto_score, grade.manual_score, grade.extra_credit = 1.0, 99.0, 50.0
        gb.db.commit()
    main = tmp_path / "main.db"
    G.empty_gradebook(main)
    with Gradebook(f"sqlite:///{main}") as gb:
        G.merge(gb, G.task_scores(task, "02_parameters", "mallory"), "02_parameters", "mallory")
        grades = gb.find_submission("02_parameters", "mallory").notebooks[0].grades
        assert {(g.auto_score, g.manual_score, g.extra_credit) for g in grades} == {(1.0, None, None)}
