"""Grades back to the LMS: beside ``grades.csv``, ``build/grading/lms/`` holds a gradebook import for each LMS that
submissions came from, keyed by that LMS's own ids as its download spelled them (:class:`~.intake.LmsId`, kept in
``state.json`` per submission). A grade goes only to the LMS its submission came from; a submission of an nbgrader
folder or with a generic name is in none of these files. Each grade is the assignment's total in ``grades.csv``
(graded cells; written answers once graded by hand), rounded to 2 decimals, with a decimal point.

**Canvas** (``canvas.csv``; Grades > Import): the columns of Canvas's own export, ``Student, ID, SIS User ID,
SIS Login ID, Section``, then one column per assignment, and a ``Points Possible`` row under the header. Canvas
finds each student by ``ID``, the user id of the download's names (``<sortablename>_<userid>_<attachmentid>_...``),
and an assignment by ``<name> (<id>)`` or else its exact name; a column it cannot match becomes a new assignment,
worth its ``Points Possible``. The download names no assignment id, so the header is the course's assignment name
(``06_gradcam``): name the Canvas assignment so, or rename the header before the import. Canvas reads an empty
cell where it has a grade as a change (its review page lists every change). UTF-8, comma-separated, quoted where
needed.

- https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807
- https://github.com/instructure/canvas-lms/blob/master/app/models/gradebook_importer.rb (the header it accepts:
  ``Student``, ``ID``, optionally ``SIS User ID`` and ``SIS Login ID``, then ``Section``; the ``Points Possible``
  row; students by id, then SIS ids, then name)

**Moodle** (``moodle-<assignment>.csv``, one per assignment; the assignment's *Upload grading worksheet*, which
needs the *Offline grading worksheet* feedback type). The id in Moodle's download folders
(``<Full Name>_<id>_assignsubmission_file_``) is the assignment's participant id, not a user id, username, email or
ID number, so the gradebook's own CSV import cannot match it; the grading worksheet can: ``Identifier``
(``Participant <id>``), ``Full name``, ``Grade``, ``Maximum Grade`` and ``Last modified (grade)``, the columns of
the worksheet Moodle downloads, in English (the importer finds its columns by their names in the language of
the Moodle it runs in). ``Last modified (grade)`` is the time of the export: Moodle keeps a grade changed in Moodle
after it, unless the upload is told to ignore that date. Moodle skips a grade above the assignment's maximum grade.
UTF-8, comma-separated.

- https://docs.moodle.org/en/Assignment_settings#Feedback_types (Offline grading worksheet)
- https://github.com/moodle/moodle/blob/main/mod/assign/feedback/offline/importgradeslib.php (the ``Identifier``,
  ``Grade`` and ``Last modified (grade)`` columns it requires; ``Participant <id>``)

**Blackboard** (``blackboard.csv``; Grade Center > Work Offline > Upload): the student is the ``Username`` column,
the username of the download's names (``<assignment>_<username>_attempt_<ts>_...``), then one column per
assignment. A column is matched by the id at the end of its header (``<name> |<id>``, as Blackboard's own download
writes it); one without an id, as here, becomes a new text column worth 0 points: make it a score column with the
assignment's points after the upload, or put the existing column's header in its place first. Comma-separated with
every value in double quotes, as Blackboard requires of a comma-delimited file; UTF-8.

- http://library.blackboard.com/ref/36ba3329-e441-488a-93ce-7a55543cc999/Content/Grade%20Center/Uploading%20External%20Grade%20Center%20Items.htm
- https://tips.uark.edu/uploading-your-grade-center/

A name cell that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``, ``@``) gets a leading
``'``; no LMS matches a student by that cell when it has the id.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SYSTEMS = ("canvas", "moodle", "blackboard")
CANVAS_INFO = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_POINTS_POSSIBLE = "Points Possible"
MOODLE_COLUMNS = ["Identifier", "Full name", "Grade", "Maximum Grade", "Last modified (grade)"]
MOODLE_PARTICIPANT = "Participant "  # Moodle's string `hiddenuser`, before the participant id
BLACKBOARD_USER = "Username"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class LmsGrade:
    """One graded submission, with the ids of the LMS it came from and its points (as written: ``"7.5"``)."""

    system: str
    user_id: str
    name: str
    assignment: str
    points: str
    maximum: str


def export(entries: Mapping[str, Mapping[str, Any]], rows: Iterable[Mapping[str, Any]], out: Path,
           now: datetime | None = None) -> list[Path]:
    """Write the gradebook import of every LMS in ``entries`` into ``out`` (emptied first); returns their paths.

    ``entries``: ``state.json``'s, ``"<student>/<assignment>" -> {"status": ..., "lms": {"system", "user_id",
    "name"}}``; ``rows``: ``grades.csv``'s, as :func:`grader_tests.engine.grade.grade_table` returns them (the
    assignments in course order); ``now``: the time written in Moodle's ``Last modified (grade)`` (default: now).
    """
    rows = list(rows)
    grades = lms_grades(entries, rows)
    order = [column for column in (rows[0] if rows else {}) if any(g.assignment == column for g in grades)]
    shutil.rmtree(out, ignore_errors=True)
    paths = []
    if canvas := [g for g in grades if g.system == "canvas"]:
        paths.append(_write(out / "canvas.csv", canvas_table(canvas, order)))
    moodle = [g for g in grades if g.system == "moodle"]
    for assignment in [a for a in order if any(g.assignment == a for g in moodle)]:
        table = moodle_table([g for g in moodle if g.assignment == assignment], now or datetime.now(timezone.utc))
        paths.append(_write(out / f"moodle-{assignment}.csv", table))
    if blackboard := [g for g in grades if g.system == "blackboard"]:
        paths.append(_write(out / "blackboard.csv", blackboard_table(blackboard, order), csv.QUOTE_ALL))
    return paths


def lms_grades(entries: Mapping[str, Mapping[str, Any]], rows: Iterable[Mapping[str, Any]]) -> list[LmsGrade]:
    """The grade of every graded submission that came from an LMS, from its row of ``grades.csv``; raises
    ValueError for an LMS this module does not know."""
    by_student = {row["student"]: row for row in rows}
    grades = []
    for key, entry in sorted(entries.items()):
        lms, (student, assignment) = entry.get("lms"), key.split("/", 1)
        if not lms or entry.get("status") != "graded" or assignment not in by_student.get(student, {}):
            continue  # nothing graded to send back (a failed grading; an assignment no longer in the course)
        if lms["system"] not in SYSTEMS:
            raise ValueError(f"{key}: unknown LMS {lms['system']!r} in state.json (known: {', '.join(SYSTEMS)})")
        row = by_student[student]
        grades.append(LmsGrade(lms["system"], str(lms["user_id"]), lms.get("name") or "", assignment,
                               points(row[assignment]), points(row[f"{assignment} max"])))
    return grades


def canvas_table(grades: list[LmsGrade], order: list[str]) -> list[list[str]]:
    """Header, ``Points Possible`` row, then one row per Canvas user id (by sortable name, then id)."""
    assignments = [a for a in order if any(g.assignment == a for g in grades)]
    maxima = {g.assignment: g.maximum for g in grades}
    table = [CANVAS_INFO + assignments, [CANVAS_POINTS_POSSIBLE, "", "", "", ""] + [maxima[a] for a in assignments]]
    for (name, user_id), cells in _by_user(grades).items():
        table.append([_text(name), user_id, "", "", ""] + [cells.get(a, "") for a in assignments])
    return table


def moodle_table(grades: list[LmsGrade], now: datetime) -> list[list[str]]:
    """The grading worksheet of one assignment: one row per participant id (by full name, then id)."""
    modified = now.astimezone(timezone.utc).isoformat(timespec="seconds")
    ordered = sorted(grades, key=lambda g: (g.name, g.user_id))
    return [MOODLE_COLUMNS] + [[f"{MOODLE_PARTICIPANT}{g.user_id}", _text(g.name), g.points, g.maximum, modified]
                               for g in ordered]


def blackboard_table(grades: list[LmsGrade], order: list[str]) -> list[list[str]]:
    """Header, then one row per username (sorted)."""
    assignments = [a for a in order if any(g.assignment == a for g in grades)]
    rows = [[user_id] + [cells.get(a, "") for a in assignments] for (_, user_id), cells in _by_user(grades).items()]
    return [[BLACKBOARD_USER] + assignments] + sorted(rows)


def points(value: Any) -> str:
    """A grade as the LMSs read it: ``7.0`` -> ``"7"``, ``2 / 3`` -> ``"0.67"``, ``""`` (no grade) -> ``""``."""
    if value == "" or value is None:
        return ""
    text = f"{round(float(value), 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _by_user(grades: list[LmsGrade]) -> dict[tuple[str, str], dict[str, str]]:
    """``(name, user id) -> {assignment: points}``, one entry per user id (its first name, sorted), sorted."""
    names: dict[str, str] = {}
    cells: dict[str, dict[str, str]] = {}
    for grade in sorted(grades, key=lambda g: (g.user_id, g.name, g.assignment)):
        names.setdefault(grade.user_id, grade.name)
        cells.setdefault(grade.user_id, {})[grade.assignment] = grade.points
    return {(names[u], u): cells[u] for u in sorted(cells, key=lambda u: (names[u], u))}


def _text(cell: str) -> str:
    """A name cell that no spreadsheet runs as a formula."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


def _write(path: Path, table: list[list[str]], quoting: int = csv.QUOTE_MINIMAL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, quoting=quoting).writerows(table)
    return path
