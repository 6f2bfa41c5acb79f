"""Grades back to the LMS: from a fabricated download, through the intake and state.json, to each LMS's gradebook
import, with the columns its importer reads, the ids its download spelled, the points of grades.csv, and each grade
only in the file of the LMS its submission came from."""

from __future__ import annotations

import csv
import zipfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pytest

from grader_tests.engine import lms_export as L
from grader_tests.engine.intake import LmsId, collect

NOTEBOOKS = {"05_saliency": "saliency", "06_gradcam": "gradcam"}
COURSE = ["05_saliency", "06_gradcam"]
MAXIMA = {"05_saliency": 10, "06_gradcam": 15}
NOW = datetime(2026, 1, 30, 20, 30, tzinfo=timezone.utc)
BB = "attempt_2026-01-30-20-30-10"


def make_zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 30, 12, 0, 0)), b"{}")
    return path


def intake(tmp_path: Path, names: list[str]) -> dict[str, dict]:
    """state.json's entries for a download whose every submission was graded, as the grader records them."""
    found = collect(make_zip(tmp_path / "download.zip", names), NOTEBOOKS, tmp_path / "out")
    return {f"{s.student}/{s.assignment}": {"status": "graded", **({"lms": asdict(s.lms)} if s.lms else {})}
            for s in found.submissions}


def rows(totals: dict[str, dict[str, float]]) -> list[dict]:
    """grades.csv's rows (as grade_table returns them) for ``{student: {assignment: total}}``; a cell per
    assignment, empty where a student did not submit it."""
    table = []
    for student, graded in sorted(totals.items()):
        row = {"student": student, "total": sum(graded.values()), "max": sum(MAXIMA.values()),
               "needs manual grading": 0, "notes": ""}
        for assignment in COURSE:
            row.update({f"{assignment}/cell": graded.get(assignment, ""), assignment: graded.get(assignment, ""),
                        f"{assignment} max": MAXIMA[assignment]})
        table.append(row)
    return table


def read(path: Path) -> str:
    data = path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")  # UTF-8 without a byte-order mark
    return data.decode("utf-8")


# --- the intake keeps the LMS's ids ---------------------------------------------------------------------------


def test_each_submission_keeps_the_ids_its_lms_download_spelled(tmp_path):
    found = collect(make_zip(tmp_path / "mixed.zip", [
        "doejane_4711_998877_gradcam.ipynb",
        "doejane_4711_998879_gradcam-1.ipynb",
        "smithjohn_LATE_4712_998878_gradcam.ipynb",
        "Jane Doe_123456_assignsubmission_file_/gradcam.ipynb",
        "Max Mustermann_7_assignsubmission_file_saliency (1).ipynb",
        f"Problem Set 1_jdoe_{BB}_gradcam.ipynb",
        "alice_gradcam.ipynb",
        "submitted/bob/06_gradcam/gradcam.ipynb",
    ]), NOTEBOOKS, tmp_path / "out")
    assert {(s.student, s.assignment): s.lms for s in found.submissions} == {
        ("doejane", "06_gradcam"): LmsId("canvas", "4711", "doejane"),
        ("smithjohn", "06_gradcam"): LmsId("canvas", "4712", "smithjohn"),
        ("Jane_Doe_123456", "06_gradcam"): LmsId("moodle", "123456", "Jane Doe"),
        ("Max_Mustermann_7", "05_saliency"): LmsId("moodle", "7", "Max Mustermann"),
        ("jdoe", "06_gradcam"): LmsId("blackboard", "jdoe", ""),
        ("alice", "06_gradcam"): None,
        ("bob", "06_gradcam"): None,
    }


def test_state_json_keeps_the_ids_from_intake_to_the_export(tmp_path):
    from conftest import grading_in

    from grader_tests.engine import grade as G

    release = (Path(__file__).resolve().parents[1] / "notebooks" / "06_gradcam" / "gradcam.ipynb").read_bytes()
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("doejane_4711_998877_gradcam.ipynb", release)
        zipped.writestr("alice_gradcam.ipynb", release)
    with grading_in(tmp_path / "grading") as grading:
        tasks, _ = G.intake(archive)
        state = G.State(grading / "state.json")
        for task in tasks:
            state.record(task, "graded", notes=[])
        entries = G.State(grading / "state.json").entries
    assert {key: entry.get("lms") for key, entry in entries.items()} == {
        "doejane/06_gradcam": {"system": "canvas", "user_id": "4711", "name": "doejane"},
        "alice/06_gradcam": None,
    }
    (path,) = L.export(entries, rows({"doejane": {"06_gradcam": 14.0}, "alice": {"06_gradcam": 3.0}}),
                       tmp_path / "lms")
    assert read(path).splitlines()[2] == "doejane,4711,,,,14"


def test_the_reports_of_make_grade_include_the_imports_beside_grades_csv(tmp_path, monkeypatch, capsys):
    from conftest import grading_in

    from grader_tests.engine import grade as G

    table = rows({"doejane": {"06_gradcam": 14.0}, "alice": {"06_gradcam": 3.0}})
    monkeypatch.setattr(G, "grade_table", lambda *args, **kwargs: (list(table[0]), table))  # no gradebook needed
    with grading_in(tmp_path / "grading") as grading:
        grading.mkdir()
        state = G.State(grading / "state.json")
        lms = {"system": "canvas", "user_id": "4711", "name": "doejane"}
        state.record(G.Task("doejane", "06_gradcam", "digest", [], lms), "graded")
        state.record(G.Task("alice", "06_gradcam", "digest", []), "graded")
        G.write_reports(state)
    assert sorted(p.relative_to(grading).as_posix() for p in grading.rglob("*.csv")) == ["grades.csv", "lms/canvas.csv"]
    assert read(grading / "lms" / "canvas.csv").splitlines()[2:] == ["doejane,4711,,,,14"]
    assert f"gradebook imports for the LMS (docs/instructors.md#back-to-the-lms): {grading / 'lms' / 'canvas.csv'}" \
        in capsys.readouterr().out


# --- one file per LMS, as its importer reads it ---------------------------------------------------------------


def test_canvas_file_has_the_import_header_points_possible_and_the_user_ids(tmp_path):
    entries = intake(tmp_path, [
        "doejane_4711_998877_gradcam.ipynb",
        "doejane_4711_998870_saliency.ipynb",
        "smithjohn_LATE_4712_998878_gradcam-1.ipynb",
    ])
    totals = {"doejane": {"05_saliency": 7.5, "06_gradcam": 12.0}, "smithjohn": {"06_gradcam": 2 / 3}}
    (path,) = L.export(entries, rows(totals), tmp_path / "lms")
    assert path == tmp_path / "lms" / "canvas.csv"
    assert read(path) == ("Student,ID,SIS User ID,SIS Login ID,Section,05_saliency,06_gradcam\r\n"
                          "Points Possible,,,,,10,15\r\n"
                          "doejane,4711,,,,7.5,12\r\n"
                          "smithjohn,4712,,,,,0.67\r\n")
    header, points_possible, *students = list(csv.reader(path.open(encoding="utf-8")))
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]  # Canvas's student columns
    assert "Points Possible" in points_possible[0]  # the row Canvas reads the points of a new assignment from
    assert [row[1] for row in students] == ["4711", "4712"]  # the user id of `<sortablename>_<userid>_...`


def test_moodle_files_are_one_grading_worksheet_per_assignment_keyed_by_participant(tmp_path):
    entries = intake(tmp_path, [
        "Jane Doe_123456_assignsubmission_file_/gradcam.ipynb",
        "Doe, Zoë_77_assignsubmission_file_/gradcam.ipynb",
        "Max Mustermann_7_assignsubmission_file_saliency.ipynb",
    ])
    totals = {"Jane_Doe_123456": {"06_gradcam": 12.0}, "Doe,_Zoë_77": {"06_gradcam": 9.25},
              "Max_Mustermann_7": {"05_saliency": 10.0}}
    paths = L.export(entries, rows(totals), tmp_path / "lms", now=NOW)
    assert paths == [tmp_path / "lms" / "moodle-05_saliency.csv", tmp_path / "lms" / "moodle-06_gradcam.csv"]
    header = "Identifier,Full name,Grade,Maximum Grade,Last modified (grade)\r\n"
    assert read(paths[0]) == header + "Participant 7,Max Mustermann,10,10,2026-01-30T20:30:00+00:00\r\n"
    assert read(paths[1]) == header + ('Participant 77,"Doe, Zoë",9.25,15,2026-01-30T20:30:00+00:00\r\n'
                                       "Participant 123456,Jane Doe,12,15,2026-01-30T20:30:00+00:00\r\n")
    worksheet = list(csv.DictReader(paths[1].open(encoding="utf-8")))
    # the columns Moodle's importer requires, and the id it takes from "Participant <id>"
    assert [(r["Identifier"].removeprefix("Participant "), r["Grade"]) for r in worksheet] == [
        ("77", "9.25"), ("123456", "12")]
    assert all(datetime.fromisoformat(r["Last modified (grade)"]) == NOW for r in worksheet)


def test_blackboard_file_is_usernames_and_grades_every_value_quoted(tmp_path):
    entries = intake(tmp_path, [
        f"ps1_jdoe_{BB}_gradcam.ipynb",
        f"ps1_jdoe_{BB}_saliency.ipynb",
        f"Problem Set_1_asmith_{BB}_gradcam (1).ipynb",
    ])
    totals = {"jdoe": {"05_saliency": 3.0, "06_gradcam": 12.5}, "asmith": {"06_gradcam": 11.0}}
    (path,) = L.export(entries, rows(totals), tmp_path / "lms")
    assert path == tmp_path / "lms" / "blackboard.csv"
    assert read(path) == ('"Username","05_saliency","06_gradcam"\r\n'
                          '"asmith","","11"\r\n'
                          '"jdoe","3","12.5"\r\n')


# --- each grade goes back where its submission came from ------------------------------------------------------


def test_a_grade_is_only_in_the_file_of_the_lms_its_submission_came_from(tmp_path):
    entries = intake(tmp_path, [
        "doejane_4711_998877_gradcam.ipynb",  # Canvas
        "jdoe_4713_998871_saliency.ipynb",  # Canvas: jdoe's 05_saliency
        f"ps1_jdoe_{BB}_gradcam.ipynb",  # Blackboard: jdoe's 06_gradcam
        "Jane Doe_123456_assignsubmission_file_/saliency.ipynb",  # Moodle
        "alice_gradcam.ipynb",  # a generic name: no LMS
        "submitted/bob/06_gradcam/gradcam.ipynb",  # nbgrader's layout: no LMS
    ])
    totals = {"doejane": {"06_gradcam": 15.0}, "jdoe": {"05_saliency": 4.0, "06_gradcam": 13.0},
              "Jane_Doe_123456": {"05_saliency": 6.0}, "alice": {"06_gradcam": 1.0}, "bob": {"06_gradcam": 2.0}}
    paths = L.export(entries, rows(totals), tmp_path / "lms", now=NOW)
    files = {path.name: list(csv.reader(path.open(encoding="utf-8"))) for path in paths}
    assert set(files) == {"canvas.csv", "moodle-05_saliency.csv", "blackboard.csv"}
    assert files["canvas.csv"][2:] == [["doejane", "4711", "", "", "", "", "15"],
                                       ["jdoe", "4713", "", "", "", "4", ""]]
    assert files["blackboard.csv"] == [["Username", "06_gradcam"], ["jdoe", "13"]]
    assert files["moodle-05_saliency.csv"][1][:3] == ["Participant 123456", "Jane Doe", "6"]
    cells = {cell for table in files.values() for row in table for cell in row}
    assert not {"alice", "bob", "1", "2"} & cells  # neither the generic nor the nbgrader submission, nor its points
    assert "doejane" not in {cell for name in ("blackboard.csv", "moodle-05_saliency.csv") for row in files[name]
                             for cell in row}


def test_no_lms_submission_no_file_and_stale_files_are_removed(tmp_path):
    (tmp_path / "lms").mkdir()
    (tmp_path / "lms" / "canvas.csv").write_text("from an earlier download")
    entries = intake(tmp_path, ["alice_gradcam.ipynb", "submitted/bob/06_gradcam/gradcam.ipynb"])
    assert L.export(entries, rows({"alice": {"06_gradcam": 1.0}, "bob": {"06_gradcam": 2.0}}), tmp_path / "lms") == []
    assert not (tmp_path / "lms").exists()


def test_a_failed_grading_sends_nothing_back(tmp_path):
    entries = intake(tmp_path, ["doejane_4711_1_gradcam.ipynb", "smithjohn_4712_2_gradcam.ipynb"])
    entries["smithjohn/06_gradcam"]["status"] = "failed"
    (path,) = L.export(entries, rows({"doejane": {"06_gradcam": 5.0}, "smithjohn": {}}), tmp_path / "lms")
    assert read(path).splitlines()[2:] == ["doejane,4711,,,,5"]


# --- values -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [(7.0, "7"), (12.5, "12.5"), (2 / 3, "0.67"), (0.0, "0"), (100, "100"),
                                             (1e-9, "0"), ("", "")])
def test_points_are_written_with_at_most_two_decimals_and_a_point(value, text):
    assert L.points(value) == text


def test_a_name_never_runs_as_a_spreadsheet_formula():
    grade = L.LmsGrade("moodle", "9", '=HYPERLINK("http://x")', "06_gradcam", "1", "15")
    assert L.moodle_table([grade], NOW)[1][:2] == ["Participant 9", "'=HYPERLINK(\"http://x\")"]


def test_an_unknown_lms_in_the_state_is_refused():
    entries = {"x/06_gradcam": {"status": "graded", "lms": {"system": "sakai", "user_id": "1", "name": ""}}}
    with pytest.raises(ValueError, match="unknown LMS 'sakai'"):
        L.lms_grades(entries, rows({"x": {"06_gradcam": 1.0}}))
