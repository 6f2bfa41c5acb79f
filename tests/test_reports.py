"""The instructor's reports (grades.csv, scores.png, the summary) on fabricated grading states: every student of the
download, totals and maxima per collected assignment, written answers empty until graded by hand."""

from __future__ import annotations

import csv
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest
from conftest import grading_in

from grader_tests.engine import grade as G
from grader_tests.engine.course import graded_cells

COLLECTED = ["02_parameters", "06_gradcam"]
SKIPPED = [
    "attempt_receipt.txt: not a notebook",
    "dave_4711_998877_parameter.ipynb: unknown notebook name `parameter.ipynb` (expected one of ...)",
    "ann_4712_998877_notes.txt: not a notebook",
]


def _gradebook(db: Path) -> None:
    """A gradebook that knows 02 and 06 (their graded cells and points, as the course's gradebook has them) and
    holds the fabricated class: ann (02 and 06), bob (02), carol (06, whose grading failed: no submission)."""
    from nbgrader.api import Gradebook

    warnings.filterwarnings("ignore", module="nbgrader")
    with pytest.MonkeyPatch.context() as patch:  # nbgrader runs `alembic` to create a gradebook: the one of this Python
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        Gradebook(f"sqlite:///{db}").close()
    with Gradebook(f"sqlite:///{db}") as gb:
        for assignment in COLLECTED:
            gb.add_assignment(assignment)
            notebook = assignment.split("_", 1)[1]
            gb.add_notebook(notebook, assignment)
            tests = graded_cells(assignment, autograded_only=True)
            for name, points in graded_cells(assignment).items():
                gb.add_grade_cell(name, notebook, assignment, max_score=points,
                                  cell_type="code" if name in tests else "markdown")
        scores = {  # (student, assignment): {cell: (auto_score, manual_score)}
            ("ann", "02_parameters"): {"test_get_module_params_num": (3.0, None), "test_conv2d_params": (1.0, None),
                                       "test_linear_params": (1.0, None), "answer_first_linear": (0.0, None),
                                       "answer_gap": (0.0, None)},  # answers unchanged: nbgrader scores them 0
            ("ann", "06_gradcam"): {"test_vis_gradcam": (2.0, None), "answer_relu": (None, 1.0)},
            ("bob", "02_parameters"): {"test_get_module_params_num": (0.0, None), "test_conv2d_params": (1.0, None),
                                       "test_linear_params": (0.0, None), "answer_gap": (None, 2.0)},
        }
        for (student, assignment), cells in scores.items():
            gb.update_or_create_student(student)
            submission = gb.add_submission(assignment, student)
            for grade in submission.notebooks[0].grades:
                grade.auto_score, grade.manual_score = cells.get(grade.name, (0.0, None))
                grade.needs_manual_grade = grade.auto_score is None and grade.manual_score is None
        gb.db.commit()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grading")
    with grading_in(folder):
        _gradebook(folder / "gradebook.db")
        state = G.State(folder / "state.json")
        for key in ("ann/02_parameters", "ann/06_gradcam", "bob/02_parameters"):
            state.entries[key] = {"digest": "x", "status": "graded", "notes": []}
        state.entries["carol/06_gradcam"] = {"digest": "y", "status": "failed", "notes": [],
                                             "error": "nbgrader autograde failed: MemoryError"}
        state.skipped = list(SKIPPED)
        figures = []
        patch = pytest.MonkeyPatch()
        import matplotlib.figure

        patch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, path, **kw: figures.append(fig))
        try:
            rows = G.write_reports(state)
        finally:
            patch.undo()
        with open(folder / "grades.csv", newline="") as handle:
            table = list(csv.reader(handle))
    return rows, table, figures


def test_grades_csv_has_every_student_of_the_download_with_totals_and_maxima_per_collected_assignment(reports):
    _, table, _ = reports
    header = ["student",
              "02_parameters/test_get_module_params_num", "02_parameters/test_conv2d_params",
              "02_parameters/test_linear_params", "02_parameters/answer_first_linear", "02_parameters/answer_gap",
              "02_parameters", "02_parameters max",
              "06_gradcam/test_class_activation_map", "06_gradcam/test_class_activation_map_side_effects",
              "06_gradcam/test_vis_gradcam", "06_gradcam/test_vis_gradcam_hooks",
              "06_gradcam/test_vis_gradcam_no_grads",
              "06_gradcam/test_vis_gradcam_mode", "06_gradcam/answer_relu", "06_gradcam/answer_cam_gradcam",
              "06_gradcam/answer_pooling", "06_gradcam", "06_gradcam max",
              "total", "max", "needs manual grading", "notes"]
    assert table == [
        header,
        # ann's unchanged answers to 02 stay empty (not 0.0); 06's first answer was graded by hand
        ["ann", "3.0", "1.0", "1.0", "", "", "5.0", "8.0",
         "0.0", "0.0", "2.0", "0.0", "0.0", "0.0", "1.0", "", "", "3.0", "12.0",
         "8.0", "20.0", "4", ""],
        ["bob", "0.0", "1.0", "0.0", "", "2.0", "3.0", "8.0",
         "", "", "", "", "", "", "", "", "", "", "12.0",
         "3.0", "20.0", "1", ""],
        ["carol", "", "", "", "", "", "", "8.0", "", "", "", "", "", "", "", "", "", "", "12.0",
         "", "20.0", "0", "06_gradcam: grading failed: nbgrader autograde failed: MemoryError"],
        ["dave", "", "", "", "", "", "", "8.0", "", "", "", "", "", "", "", "", "", "", "12.0",
         "", "20.0", "0", "not graded: " + SKIPPED[1]],
    ]


def test_written_answers_nbgrader_scored_zero_count_as_waiting_for_a_grade(reports):
    rows, _, _ = reports
    assert {row["student"]: row["needs manual grading"] for row in rows} == {"ann": 4, "bob": 1, "carol": 0,
                                                                              "dave": 0}


def test_scores_png_has_a_histogram_per_assignment_and_the_total_with_whole_number_ticks(reports):
    _, _, figures = reports
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["02_parameters: 2 graded", "06_gradcam: 1 graded", "total: 2 graded"]
    assert [ax.get_xlabel() for ax in axes] == ["points (of 8)", "points (of 12)", "points (of 20)"]
    for ax in axes:
        for ticks in (ax.get_xticks(), ax.get_yticks()):
            assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
    counts = [sum(patch.get_height() for patch in ax.patches) for ax in axes]
    assert counts == [2, 1, 2]


@pytest.mark.parametrize(("line", "student"), [
    ("doejane_4711_998877_gradcm.ipynb: unknown notebook name", "doejane"),
    ("doejane_LATE_4711_998877_gradcam.IPYNB: unknown notebook name", "doejane"),
    ("Jane Doe_123456_assignsubmission_file_/grad.ipynb: unknown notebook name", "Jane_Doe_123456"),
    ("ps1_jdoe_attempt_2026-01-30-20-30-10_grad.ipynb: unknown notebook name", "jdoe"),
    ("ps1_jdoe_attempt_2026-01-30-20-30-10.txt: Blackboard attempt receipt, not a notebook", None),
    ("bob_Gradcam.ipynb: unknown notebook name `Gradcam.ipynb`", "bob"),
    ("bob_notes.txt: not a notebook", None),  # at the top, only a notebook's name or a Canvas name names a student
    ("bob/06_gradcam/notes.txt: not a notebook", "bob"),
    ("readme.txt: not a notebook", None),
    ("..._gradcam.ipynb: unsafe student id `..`: empty or made only of dots", None),
])
def test_the_student_of_a_skipped_file_is_read_from_its_lms_name(line, student):
    assert G.student_of_skipped(line) == student


def test_nbgrader_export_writes_inside_the_grading_folder_not_the_repository(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    stray = root / "grades.csv"
    existed = stray.exists()
    env = {**os.environ, "VISUALIZING_CNNS_GRADING": str(tmp_path / "grading"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    (tmp_path / "grading").mkdir()
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "export"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "grading" / "nbgrader_grades.csv").read_text().startswith("assignment,")
    assert stray.exists() == existed


def test_grading_one_assignment_of_a_download_reports_that_assignment_only(tmp_path):
    root = Path(__file__).resolve().parents[1]
    submissions = tmp_path / "class"
    for assignment in ("02_parameters", "03_filters"):
        (released,) = (root / "notebooks" / assignment).glob("*.ipynb")
        (submissions / "alice" / assignment).mkdir(parents=True)
        shutil.copy2(released, submissions / "alice" / assignment / released.name)
    with grading_in(tmp_path / "grading"):
        with pytest.raises(SystemExit, match="no assignment '02_params'"):
            G.grade(submissions, workers=1, assignment="02_params")
        state = G.grade(submissions, workers=1, timeout=60, assignment="02_parameters")
        assert {key: entry["status"] for key, entry in state.entries.items()} == {"alice/02_parameters": "graded"}
        (row,) = G.write_reports(state)
        with open(tmp_path / "grading" / "grades.csv", newline="") as handle:
            header = next(csv.reader(handle))
    assert [column for column in header if "/" not in column] == [
        "student", "02_parameters", "02_parameters max", "total", "max", "needs manual grading", "notes"]
    assert row["02_parameters"] == 0.0 and row["max"] == 8.0  # the untouched release: no test passes
