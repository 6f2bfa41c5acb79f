"""Grade a class: ``make grade SUBMISSIONS=<folder or zip>`` runs ``python -m grader_tests.engine.grade SUBMISSIONS``.

Submissions are a folder in nbgrader's layout ``<student>/<assignment>/<notebook>.ipynb`` or an LMS download
(Canvas, Moodle, Blackboard or ``<student>_<anything>_<notebook>.ipynb``; :mod:`grader_tests.engine.intake`).
Every submission of one student to one assignment is a task:

1. **intake**: written once into ``build/grading/intake`` (zip bombs refused, student ids normalised, the
   submission time from the LMS only) and moved to ``build/grading/submitted``; a missing or unreadable notebook
   is replaced by the released one with a note saying why (it scores 0, and the feedback tells the student); every
   file of the download that is not used is reported with the reason;
2. **autograde** on a Dask worker (:mod:`grader_tests.engine.cluster`: a local cluster of ``--workers`` processes,
   default one more than the cores, or the workers of ``--scheduler``), the submission's files carried by the task,
   in a private folder with a private copy of an empty gradebook: nbgrader ``autograde`` with this course's
   preprocessors (``nbgrader_config.py``), then ``generate_feedback``; the task returns the graded notebook, the
   feedback and its gradebook;
3. **merge**: the grading process copies the task's grades into ``build/gradebook.db`` in one transaction and
   only then marks the task done in ``build/grading/state.json``. An interrupted run loses only the tasks in
   flight; a re-run skips the submissions already graded (same bytes) and regrades the rest, never twice.

Then ``build/grading/grades.csv`` (one row per student: points per graded cell, per notebook, in total),
``feedback/<student>/<assignment>/*.html``, a printed summary and ``scores.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from . import lms_export, syscalls
from .course import ROOT, assignments, generate, graded_cells, nbgrader_api, notebook_path
from .intake import TIMESTAMP, Caps, collect
from .nbgrader_plugins import FLAGGED, NOTES_KEY, add_note, notes

WORKERS = (os.cpu_count() or 1) + 1
"""Graders side by side: one more than the cores, as each spends part of its time waiting for its kernel."""

GRADING = Path(os.environ.get("VISUALIZING_CNNS_GRADING", ROOT / "build" / "grading")).resolve()
MAIN_DB = GRADING / "gradebook.db"  # nbgrader_config.py's db_url: formgrader and `nbgrader export` read it



@dataclass
class Task:
    student: str
    assignment: str
    digest: str
    notes: list[str] = field(default_factory=list)
    lms: dict[str, str] | None = None  # the LMS's ids of the student (intake.LmsId as a dict), kept in state.json

    @property
    def key(self) -> str:
        return f"{self.student}/{self.assignment}"


# --- the course -----------------------------------------------------------------------------------------------


def empty_gradebook(path: Path) -> None:
    """A gradebook that knows the assignments and nothing else (each task grades into a copy)."""
    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as release:
        generate(Path(release), f"sqlite:///{path}", quiet=True)


# --- intake ---------------------------------------------------------------------------------------------------


def intake(submissions: Path, root: Path = ROOT, caps: Caps | None = None) -> tuple[list[Task], list[str]]:
    """Every submission (:mod:`grader_tests.engine.intake`) placed in ``build/grading/submitted`` with its notebook
    checked: one task each, and the files of the download that were not used, each with the reason.

    Each file is written once: :func:`~grader_tests.engine.intake.collect` streams it from the download into
    ``build/grading/intake`` (``caps``: its limits on sizes and compression; a zip bomb stops the run with the
    reason, nothing written) and each submission's folder is then *moved* into ``submitted``. The submission time
    nbgrader reads (``timestamp.txt``) is written here from the LMS's (none where the download has none); the
    student's own was left out by the intake. A cell that poses as the grader's notes loses the marker."""
    notebooks = {assignment: notebook_path(assignment, root).stem for assignment in assignments(root)}
    staging = GRADING / "intake"
    try:
        found = collect(submissions, notebooks, staging, caps)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    tasks = []
    for submission in found.submissions:
        student, assignment, name = submission.student, submission.assignment, notebooks[submission.assignment]
        dest = GRADING / "submitted" / student / assignment
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(submission.folder, dest)  # a rename on one file system: nothing is copied
        if submission.timestamp is not None:
            (dest / TIMESTAMP).write_text(f"{submission.timestamp:%Y-%m-%d %H:%M:%S}\n")
        lms = asdict(submission.lms) if submission.lms else None
        task = Task(student, assignment, _digest(dest), list(submission.notes), lms)
        nb, note = _check_notebook(dest, name)
        texts = list(submission.notes)
        if note:
            task.notes.append(note)
            nb = nbformat.read(notebook_path(assignment, root), as_version=4)
            texts.insert(0, f"{note}: graded as the released notebook, 0 points")
        elif posing := [cell for cell in nb.cells if NOTES_KEY in cell.get("metadata", {})]:
            for cell in posing:
                del cell.metadata[NOTES_KEY]
            texts.append(f"{len(posing)} cell(s) of the submission posed as the grader's (grading notes or "
                         "markers): shown as the student's own cells")
            task.notes.append(texts[-1])
        if texts:
            for text in texts:
                add_note(nb, text)
            nbformat.write(nb, dest / f"{name}.ipynb")  # one rewrite, whatever the number of notes
        tasks.append(task)
    shutil.rmtree(staging, ignore_errors=True)
    return tasks, found.skipped


def _digest(folder: Path) -> str:
    """The SHA-256 of a submission's folder: every file's path and bytes, read in chunks."""
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(2**20):
                sha.update(chunk)
        sha.update(b"\0")
    return sha.hexdigest()


def _check_notebook(folder: Path, name: str) -> tuple[nbformat.NotebookNode | None, str | None]:
    """The submitted notebook, read, and why it cannot be graded as it is (then the notebook is None), or None."""
    path = folder / f"{name}.ipynb"
    if not path.exists():
        found = ", ".join(sorted(p.name for p in folder.glob("*.ipynb"))) or "no notebook"
        for other in folder.glob("*.ipynb"):
            other.rename(other.with_suffix(".ipynb.misnamed"))  # nbgrader would skip it anyway
        return None, f"{name}.ipynb is missing from the submission (found: {found})"
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # noqa: BLE001 - any reason the file is not a notebook
        path.rename(path.with_suffix(".ipynb.invalid"))
        return None, (f"{name}.ipynb is not a valid notebook "
                      f"({type(error).__name__}: {str(error).splitlines()[0][:120]})")
    return nb, None  # a valid notebook, however broken inside: RepairStructure rebuilds it and notes each repair


# --- grading --------------------------------------------------------------------------------------------------


def grade_task(task: Task, template: Path, execute: dict[str, Any], folder: Path | None = None) -> dict[str, Any]:
    """Autograde one submission into a private gradebook (in memory) and write its feedback (runs on a grading worker,
    :func:`grader_tests.engine.cluster.grade_submission`); ``execute``: options of the grading kernels
    (:func:`grader_tests.engine.course.nbgrader_api`); ``folder``: the grading folder, nbgrader's ``submitted``,
    ``autograded`` and ``feedback`` (default: :data:`GRADING`; a private temporary one on a worker).

    Returns ``{"task", "scores", "seconds", "sandbox"}`` (``scores``: :func:`task_scores`, what :func:`merge`
    takes), or ``{"task", "error", "log"}``."""
    folder = folder or GRADING
    url = f"sqlite:///{folder / 'work' / task.student}--{task.assignment}.db"  # held in memory, never written
    grader = nbgrader_api(url, **execute)
    for step in ("submitted", "autograded", "feedback"):
        setattr(grader.coursedir, f"{step}_directory", str(folder / step))
    started = time.perf_counter()
    with _one_engine(template, url):
        result = grader.autograde(task.assignment, task.student, force=True, create=True)
        autograded = time.perf_counter()
        if not result["success"]:
            return _failed(task, "autograde", result, folder)
        feedback = grader.generate_feedback(task.assignment, task.student, force=True)
        if not feedback["success"]:
            return _failed(task, "generate_feedback", feedback, folder)
        seconds = {"autograde": autograded - started, "feedback": time.perf_counter() - autograded}
        scores = _scores(url, task.assignment, task.student)
    from .forkserver import ForkServer

    return {"task": asdict(task), "scores": scores, "seconds": seconds, "sandbox": ForkServer.get().sandbox}


def warm_feedback(root: Path = ROOT) -> None:
    """Render each released notebook once with the feedback exporter, configured as grading configures it, and
    throw the pages away: the exporter's caches (:class:`grader_tests.engine.nbgrader_plugins.FeedbackExporter`)
    then hold the highlighted code and the Markdown of the cells that every student's page shares, before the first
    task. Scores are placeholders: a page's cells are rendered from their sources alone."""
    from ipykernel.ipkernel import IPythonKernel
    from nbgrader.converters import GenerateFeedback

    api = nbgrader_api(root=root)
    converter = GenerateFeedback(coursedir=api.coursedir, parent=api)
    exporter = converter.exporter_class(parent=converter, config=converter.config)
    language = IPythonKernel.language_info
    for assignment in assignments(root):
        nb = nbformat.read(notebook_path(assignment, root), as_version=4)
        nb.metadata["language_info"] = language  # what the grading kernel writes into the autograded notebook
        for cell in nb.cells:
            if "nbgrader" in cell.metadata:
                cell.metadata.nbgrader.update(score=0, points=cell.metadata.nbgrader.get("points", 0), comment="")
        resources = {"nbgrader": {"assignment": assignment, "notebook": assignment, "student": "",
                                  "score": 0, "max_score": 0, "late_penalty": 0}}
        exporter._page(nb, resources)  # the page alone: no MathJax copy written, no policy


_ENGINE: dict[str, Any] = {}  # this process's one engine for task gradebooks, and the connection it gives now
_ENGINE_LOCK = threading.Lock()  # one task's gradebook at a time (a grading worker grades one task at a time)


class _Kept(sqlite3.Connection):
    """A task's gradebook in memory: nbgrader closes it each time it closes a gradebook; it stays open until
    :func:`_one_engine` ends."""

    def close(self) -> None:
        pass

    def discard(self) -> None:
        super().close()


@contextlib.contextmanager
def _one_engine(source: Path, url: str) -> Iterator[None]:
    """Meanwhile every gradebook nbgrader opens at ``url`` is a copy of the gradebook ``source`` held in memory,
    reached through one SQLAlchemy engine, the same for every task of this process. nbgrader opens a gradebook
    about ten times a notebook, each time with a new engine (which compiles each SQL statement again, the larger
    part of a query's cost) and a new connection; in memory, nothing is written to disk either. The copy is gone
    when this ends: nothing of one task's gradebook reaches another's. One at a time in a process.

    ``source`` is a gradebook nbgrader made (for a task, the course's empty one): it has every table, so opening
    the copy skips nbgrader's check for missing tables (each open listed them and asked for each one's columns); a
    table that were missing all the same would fail the task's first query, loudly."""
    import nbgrader.api
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    with _ENGINE_LOCK:
        if "engine" not in _ENGINE:
            _ENGINE["engine"] = create_engine("sqlite://", creator=lambda: _ENGINE["connection"],
                                              poolclass=StaticPool, future=True)
        engine = _ENGINE["engine"]
        _ENGINE["connection"] = connection = sqlite3.connect(":memory:", factory=_Kept, check_same_thread=False)
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as disk:
            disk.backup(connection)
        engine.dispose()  # a new pool: its one connection is this task's
        original = nbgrader.api.create_engine
        metadata, inspect = nbgrader.api.Base.metadata, nbgrader.api.inspect
        nbgrader.api.create_engine = lambda db_url, *args, **kwargs: (
            engine if db_url == url else original(db_url, *args, **kwargs))
        nbgrader.api.inspect = lambda subject: _HAS_TABLES if subject is engine else inspect(subject)
        metadata.create_all = lambda bind, **kwargs: (
            None if bind is engine else type(metadata).create_all(metadata, bind, **kwargs))
        try:
            yield
        finally:
            nbgrader.api.create_engine, nbgrader.api.inspect = original, inspect
            del metadata.create_all
            engine.dispose()
            connection.discard()


class _HasTables:
    """What nbgrader asks the inspector of a gradebook it opens: whether it has tables (a copy of one it made)."""

    @staticmethod
    def get_table_names() -> list[str]:
        return ["gradebook"]


_HAS_TABLES = _HasTables()


def _failed(task: Task, step: str, result: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A failed nbgrader step: its last lines as the reason, its whole log kept in ``folder/logs``."""
    text = "\n".join(str(result.get(key) or "") for key in ("error", "log")).strip()
    log = folder / "logs" / f"{task.student}--{task.assignment}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [f"nbgrader {step} failed"]
    errors = [line for line in lines
              if re.match(r"[\w.]+(Error|Exception|Exit)\b", line) and "NbGraderException" not in line]
    reason = f"nbgrader {step} failed: {(errors or lines)[-1]}"
    return {"task": asdict(task), "error": reason, "log": str(log)}


def task_scores(db: Path, assignment: str, student: str) -> dict[str, Any]:
    """The automatic scores and comments of one graded submission in the gradebook ``db``, what :func:`merge`
    takes: ``{"timestamp", "grades": {(notebook, grade cell): auto score}, "comments": {(notebook, cell): auto
    comment}}``. Nothing else is taken from it (a manual score, extra credit): those are the instructor's alone."""
    url = f"sqlite:///{db}"
    with _one_engine(db, url):
        return _scores(url, assignment, student)


def _scores(url: str, assignment: str, student: str) -> dict[str, Any]:
    from nbgrader.api import Gradebook

    with Gradebook(url) as source:
        submission = source.find_submission(assignment, student)
        return {
            "timestamp": submission.timestamp,
            "grades": {(nb.name, grade.name): grade.auto_score for nb in submission.notebooks for grade in nb.grades},
            "comments": {(nb.name, comment.name): comment.auto_comment
                         for nb in submission.notebooks for comment in nb.comments},
        }


def merge(main: Any, scores: dict[str, Any], assignment: str, student: str) -> None:
    """Write one graded submission's automatic scores (:func:`task_scores`) into the main gradebook, replacing an
    older grading."""
    from nbgrader.api import MissingEntry

    main.update_or_create_student(student)
    try:
        main.remove_submission(assignment, student)
    except MissingEntry:
        pass
    fresh = main.add_submission(assignment, student, timestamp=scores["timestamp"])
    for nb in fresh.notebooks:
        for grade in nb.grades:
            grade.auto_score = scores["grades"][(nb.name, grade.name)]
            grade.needs_manual_grade = grade.auto_score is None  # written answers: graded by hand
        for comment in nb.comments:
            comment.auto_comment = scores["comments"].get((nb.name, comment.name))
    main.db.commit()


class State:
    """``build/grading/state.json``: which submission (by digest) is graded, with its notes.

    Each result recorded is one line appended to ``state.journal`` (rewriting the whole file took 3.3 s a result for
    a class of 10,000 students); the journal is folded into ``state.json``, written atomically, when the state is
    read and when a run ends (:meth:`save`). A line cut short by a crash is ignored: that submission is graded
    again."""

    def __init__(self, path: Path) -> None:
        self.path, self.journal = path, path.with_suffix(".journal")
        self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
        if self.journal.exists():
            for line in self.journal.read_text().splitlines():
                try:
                    key, entry = json.loads(line)
                except ValueError:
                    continue  # the last line, cut short by a crash
                self.entries[key] = entry
            self.save()
        self.graded_now = 0
        self.failed_now: list[str] = []  # the submissions this run could not grade (``make grade`` then exits 1)
        self.finished: list[float] = []  # seconds from the start of this run at which each submission was done
        self.skipped: list[str] = []  # files of the download not used, with the reason

    def done(self, task: Task) -> bool:
        entry = self.entries.get(task.key, {})
        return entry.get("digest") == task.digest and entry.get("status") == "graded"

    def record(self, task: Task, status: str, **extra: Any) -> None:
        lms = {"lms": task.lms} if task.lms else {}
        self.entries[task.key] = {"digest": task.digest, "status": status, "notes": task.notes, **lms, **extra}
        with open(self.journal, "a") as handle:
            handle.write(json.dumps([task.key, self.entries[task.key]]) + "\n")

    def save(self) -> None:
        """Write every entry to ``state.json`` at once (atomically), then empty the journal."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        tmp.replace(self.path)
        self.journal.unlink(missing_ok=True)


def grade(submissions: Path, workers: int = WORKERS, timeout: float | None = None,
          force: bool = False, full: bool = False, memory_mb: int | None = None,
          assignment: str | None = None, scheduler: str | None = None) -> State:
    """Grade every submission not graded yet; returns the state (see the module docstring). ``timeout``: seconds
    per cell; ``full``: render the figures and run every cell, for complete feedback;
    ``memory_mb``: the memory of each sandboxed kernel (default: :class:`grader_tests.engine.sandbox.Limits`);
    ``assignment``: grade the submissions of this assignment only (e.g. ``06_gradcam``); ``scheduler``: the
    address of a Dask scheduler whose workers grade (default: a local cluster of ``workers`` processes)."""
    from nbgrader.api import Gradebook
    from tqdm import tqdm

    from .cluster import GradingCluster, submission_files, template_gradebook, write_results

    started = time.perf_counter()
    warnings.filterwarnings("ignore", module="nbgrader")  # nbgrader's SQLAlchemy warnings while merging
    GRADING.mkdir(parents=True, exist_ok=True)
    state = State(GRADING / "state.json")
    if scheduler is None:  # a cluster's workers check their own sandbox, and refuse to grade without one
        _warn_if_unsandboxed()
    tasks, state.skipped = intake(submissions)
    if assignment is not None:
        if assignment not in assignments():
            raise SystemExit(f"no assignment {assignment!r}: choose among {', '.join(assignments())}")
        tasks = [task for task in tasks if task.assignment == assignment]
    todo = [task for task in tasks if force or not state.done(task)]
    print(f"{len(tasks)} submissions from {len({t.student for t in tasks})} students; {len(todo)} to grade, "
          f"{len(tasks) - len(todo)} already graded", flush=True)
    state.graded_now = 0
    if todo and not MAIN_DB.exists():
        shutil.copyfile(template_gradebook(), MAIN_DB)
    for pool_size in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread each: workers
        os.environ.setdefault(pool_size, "1")  # and kernels side by side (judges use scipy's OpenBLAS too)
    graders = GradingCluster(max(1, workers), scheduler)
    if graders.dashboard:
        print(f"Dask dashboard: {graders.dashboard}", flush=True)
    try:
        with Gradebook(f"sqlite:///{MAIN_DB}") as main:
            # Only this loop writes the gradebook meanwhile (reports open their own): what its session loaded (the
            # assignments' notebooks and cells) stays true after each commit, and reloading it was half a merge.
            main.db().expire_on_commit = False
            execute = {"timeout": None if timeout is None else int(timeout), "figures": full or None,
                       "every_cell": full or None, "memory_mb": memory_mb}
            results = graders.results(todo, lambda task: submission_files(GRADING / "submitted" / task.key), execute)
            for task, result in tqdm(results, total=len(todo), desc="grading", unit="submission"):
                if "error" in result:
                    log = None
                    if result.get("log"):
                        log = GRADING / "logs" / f"{task.student}--{task.assignment}.log"
                        log.parent.mkdir(parents=True, exist_ok=True)
                        log.write_text(result["log"])
                    state.record(task, "failed", error=result["error"], log=log and str(log))
                    state.failed_now.append(task.key)
                    tqdm.write(f"grading {task.key} failed: {result['error'].splitlines()[-1]}")
                    continue
                write_results(GRADING, task, result)
                merge(main, result["scores"], task.assignment, task.student)
                notes_ = result["notes"] if "notes" in result else _autograded_notes(task)
                state.record(task, "graded", notes=notes_, seconds=result["seconds"],
                             sandbox=result["sandbox"], worker=result.get("worker"))
                state.graded_now += 1
                state.finished.append(time.perf_counter() - started)
    except KeyboardInterrupt:
        graders.cancel()
        sys.exit("interrupted: the grades merged so far are kept; run the same command again to go on")
    finally:
        graders.close()
        state.save()
    return state


def _warn_if_unsandboxed() -> None:
    from .sandbox import Cgroup, mode, unavailable

    why = "turned off (VISUALIZING_CNNS_NO_SANDBOX)" if os.environ.get("VISUALIZING_CNNS_NO_SANDBOX") else unavailable()
    if why:
        print(f"WARNING: grading kernels are NOT sandboxed: {why}.\nStudent code will run with this user's rights: "
              "it can read the judges and other submissions and change grades (docs/honest-grading.md).",
              file=sys.stderr, flush=True)
        return
    if mode() == "rootless" and not Cgroup.available():
        print("NOTE: grading kernels are sandboxed in user namespaces (grading runs as an ordinary user), and no "
              "cgroup is delegated to this user: a kernel's memory is limited per process (setrlimit), not in "
              "total, and it has no CPU quota (docs/honest-grading.md).", file=sys.stderr, flush=True)
    if seccomp := syscalls.available():
        print(f"WARNING: grading kernels are sandboxed without their system-call filter ({seccomp}): install "
              "Debian's libseccomp2 and pip's pyseccomp (make env does both).", file=sys.stderr, flush=True)


def _autograded_notes(task: Task) -> list[str]:
    """The grading notes of the graded notebook (the intake's among them)."""
    path = GRADING / "autograded" / task.student / task.assignment
    return [note for notebook in sorted(path.glob("*.ipynb")) for note in notes(nbformat.read(notebook, as_version=4))]


# --- reports --------------------------------------------------------------------------------------------------


def grade_table(students: Iterable[str], db: Path | None = None, root: Path = ROOT, *,
                collected: Iterable[str] | None = None,
                not_graded: dict[str, str] | None = None) -> tuple[list[str], list[dict]]:
    """CSV columns and one row per student, for the assignments ``collected`` (default: the whole course), in
    course order: every graded cell, each assignment's total and maximum, the total over those assignments, its
    maximum, how many written answers wait for a grade by hand, and ``notes``: ``not_graded[student]``, why
    nothing of theirs was graded (a failed grading, a file that was not used).

    A written answer (a cell graded by hand) stays empty until it has a manual score, even where nbgrader scored an
    unchanged answer 0; an assignment a student did not submit, or whose grading failed, is empty in every column.
    """
    from nbgrader.api import Gradebook, MissingEntry

    db = db or MAIN_DB
    wanted = set(collected) if collected is not None else None
    course = [assignment for assignment in assignments(root) if wanted is None or assignment in wanted]
    cells = {assignment: graded_cells(assignment, root) for assignment in course}
    tests = {assignment: set(graded_cells(assignment, root, autograded_only=True)) for assignment in course}
    maxima = {assignment: sum(graded.values()) for assignment, graded in cells.items()}
    columns = ["student"]
    for assignment, graded in cells.items():
        columns += [f"{assignment}/{name}" for name in graded] + [assignment, f"{assignment} max"]
    columns += ["total", "max", "needs manual grading", "notes"]
    rows = []
    with Gradebook(f"sqlite:///{db}") as gb:
        for student in sorted(set(students)):
            row: dict[str, Any] = {"student": student, "total": "", "max": sum(maxima.values()),
                                   "needs manual grading": 0, "notes": (not_graded or {}).get(student, "")}
            for assignment, graded in cells.items():
                row.update({f"{assignment}/{name}": "" for name in graded})
                row[assignment], row[f"{assignment} max"] = "", maxima[assignment]
                try:
                    submission = gb.find_submission(assignment, student)
                except MissingEntry:
                    continue
                scores = {g.name: g for nb in submission.notebooks for g in nb.grades}
                subtotal = 0.0
                for name in graded:
                    grade_ = scores.get(name)
                    if grade_ is None:
                        continue
                    score = grade_.score if name in tests[assignment] else grade_.manual_score
                    if score is None:  # a written answer not graded by hand yet (or a test nbgrader left unscored)
                        row["needs manual grading"] += name not in tests[assignment]
                        continue
                    row[f"{assignment}/{name}"] = score
                    subtotal += score
                row[assignment] = subtotal
                row["total"] = (row["total"] or 0.0) + subtotal
            rows.append(row)
    return columns, rows


def collected_assignments(state: State) -> list[str]:
    """The assignments with at least one submission graded or tried, in course order."""
    seen = {key.split("/", 1)[1] for key in state.entries}
    return [assignment for assignment in assignments() if assignment in seen]


def student_of_skipped(line: str) -> str | None:
    """The student a skipped file of the download belongs to (``"<path>: <reason>"``, as
    :attr:`grader_tests.engine.intake.Intake.skipped` has it), read from the LMS's file name, or None where the name
    says none (a receipt; a file at the top that is not ``<student>_<...>.ipynb`` nor a Canvas name) or the id is
    unsafe."""
    from . import intake as lms

    path = line.split(": ", 1)[0]
    parts = [part for part in path.split("/") if part]
    if not parts or "unsafe" in line.split(": ", 1)[-1]:
        return None
    name, student = parts[-1], None
    if lms.BLACKBOARD_MARK.search(name):
        match = lms.BLACKBOARD.match(name)
        student = match["user"] if match and match["file"] else None
    elif any(lms.MOODLE_MARK in part for part in parts):
        match = next((lms.MOODLE.match(part) for part in parts if lms.MOODLE_MARK in part), None)
        student = re.sub(r"\s+", "_", f"{match['name']}_{match['id']}") if match and match["plugin"] == "file" else None
    elif match := lms.CANVAS.match(name):
        student = match["name"]
    elif len(parts) in (3, 4):  # nbgrader's layout: <student>/<assignment>/<file>
        student = parts[-3]
    elif "_" in name and name.lower().endswith(".ipynb"):  # `<student>_<notebook>`: only a notebook says so
        student = name.split("_", 1)[0]
    if student is None:
        return None
    student = lms._student_id(student)
    return None if lms._id_problem(student) else student


def not_graded_reasons(state: State) -> dict[str, str]:
    """What went wrong, per student: every failed grading and, for a student of the download none of whose files
    made a submission (a notebook with a wrong name, say), every file of theirs that was not used, with the reason."""
    tried = {key.split("/")[0] for key in state.entries}
    reasons: dict[str, list[str]] = {}
    for key, entry in sorted(state.entries.items()):
        if entry["status"] != "graded":
            student, assignment = key.split("/", 1)
            error = (entry.get("error") or entry["status"]).splitlines()[-1]
            reasons.setdefault(student, []).append(f"{assignment}: grading failed: {error}")
    for line in state.skipped:
        student = student_of_skipped(line)
        if student and student not in tried:
            reasons.setdefault(student, []).append(f"not graded: {line}")
    return {student: "; ".join(lines) for student, lines in reasons.items()}


def write_reports(state: State) -> list[dict]:
    """grades.csv (every student of the download), the gradebook imports of the LMSs the submissions came from
    (``lms/``, :mod:`grader_tests.engine.lms_export`), scores.png (a histogram per collected assignment and of the
    total over them) and the printed summary; returns the CSV rows."""
    out = GRADING
    not_graded = not_graded_reasons(state)
    students = {key.split("/")[0] for key in state.entries} | set(not_graded)
    collected = collected_assignments(state)
    columns, rows = grade_table(students, MAIN_DB, collected=collected, not_graded=not_graded)
    with open(out / "grades.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    imports = lms_export.export(state.entries, rows, out / "lms")
    _plot(rows, collected, out / "scores.png")
    _summary(state, rows, collected, out)
    if imports:
        print(f"  gradebook imports for the LMS (docs/instructors.md#back-to-the-lms): "
              f"{', '.join(str(path) for path in imports)}")
    return rows


def _maximum(rows: list[dict], column: str) -> float:
    return float(rows[0][column]) if rows else 0.0


def _plot(rows: list[dict], collected: list[str], path: Path) -> None:
    """One histogram per collected assignment and one of the total over them (when more than one), each on its own
    scale from 0 to its maximum, with whole numbers on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [(assignment, assignment, f"{assignment} max") for assignment in collected]
    if len(collected) != 1:
        panels.append(("total" if collected else "total (nothing collected)", "total", "max"))
    columns = min(3, len(panels))
    lines = -(-len(panels) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.0 * lines), layout="constrained",
                             squeeze=False)
    for ax, (title, column, maximum_column) in zip(axes.flat, panels):
        scores = [float(row[column]) for row in rows if row[column] != ""]
        maximum = _maximum(rows, maximum_column) or 1.0
        width = max(1, int(-(-maximum // 20)))  # at most about 20 bars, each a whole number of points wide
        edges = [-0.5 + width * i for i in range(int(maximum // width) + 2)]
        ax.hist(scores, bins=edges, color="tab:blue", edgecolor="white")
        ax.set(xlim=(-0.5, maximum + 0.5), xlabel=f"points (of {maximum:g})", ylabel="students",
               title=f"{title}: {len(scores)} graded")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Scores so far (autograded, and written answers once graded by hand)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _summary(state: State, rows: list[dict], collected: list[str], out: Path) -> None:
    print(f"\n{len(rows)} students -> {out / 'grades.csv'}, {out / 'scores.png'}, {out / 'feedback'}")
    for column, maximum_column in [(a, f"{a} max") for a in collected] + [("total", "max")] * (len(collected) > 1):
        scores = [float(row[column]) for row in rows if row[column] != ""]
        if scores:
            print(f"  {column}: {len(scores)} graded, mean {statistics.mean(scores):.1f}, median "
                  f"{statistics.median(scores):g}, min {min(scores):g}, max {max(scores):g} of "
                  f"{_maximum(rows, maximum_column):g}")
    waiting = sum(row["needs manual grading"] for row in rows)
    if waiting:
        print(f"  {waiting} written answers wait for a grade by hand (they count once graded; rerun make grade)")
    failed = {k: e for k, e in state.entries.items() if e["status"] == "failed"}
    noted = {k: e["notes"] for k, e in state.entries.items() if e.get("notes")}
    unsandboxed = sorted(k for k, e in state.entries.items() if e.get("sandbox", {}).get("on") is False)
    if unsandboxed:
        why = state.entries[unsandboxed[0]]["sandbox"].get("why")
        print(f"WARNING: {len(unsandboxed)} submissions were graded WITHOUT a sandbox ({why}): "
              "their grades can be forged")
    sandboxes = sorted({f"{e['sandbox']['mode']}, limits by {e['sandbox']['limits']}" for e in state.entries.values()
                        if e.get("sandbox", {}).get("on") and e["sandbox"].get("mode")})
    if sandboxes:
        print(f"  sandbox: {'; '.join(sandboxes)} (docs/honest-grading.md)")
    for line in state.skipped:
        print(f"  skipped {line}")
    for key, notes_ in sorted(noted.items()):
        print(f"  {key}: " + "; ".join(notes_))
    for key, notes_ in sorted(noted.items()):
        for note in notes_:
            if note.startswith(FLAGGED):
                print(f"  FLAGGED {key}: {note}")
    for key, entry in sorted(failed.items()):
        log = f" (nbgrader's log: {entry['log']})" if entry.get("log") else ""
        print(f"  {key}: GRADING FAILED, not in the grades: {entry['error'].splitlines()[-1]}{log}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, help="folder <student>/<assignment>/<notebook>.ipynb, or a zip")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"parallel graders (default: cores + 1 = {WORKERS}); fewer need less memory")
    parser.add_argument("--timeout", type=float, help="seconds per cell before it is interrupted (default: 60)")
    parser.add_argument("--force", action="store_true", help="regrade submissions already graded")
    parser.add_argument("--memory", type=int, metavar="MB",
                        help="memory of each grading kernel, its scratch files included (default: 3072)")
    parser.add_argument("--full", action="store_true",
                        help="feedback with every figure and cell (by default grading skips what cannot change a "
                             "grade: figures, the cells after the last test and those no test depends on; five "
                             "times faster)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="grade on the Dask cluster of this scheduler, e.g. tcp://host:8786, whose workers preload "
                             "grader_tests.engine.cluster (default: a local cluster of --workers processes)")
    parser.add_argument("--assignment", metavar="NAME",
                        help="grade only this assignment's submissions, e.g. 06_gradcam (default: every one)")
    args = parser.parse_args(argv)
    state = grade(args.submissions, args.workers, args.timeout, args.force, args.full, args.memory,
                  assignment=args.assignment, scheduler=args.scheduler)
    write_reports(state)
    if state.failed_now:  # the others are graded and reported; the exit status says not all of them
        sys.exit(f"{len(state.failed_now)} submission(s) could not be graded (GRADING FAILED above)")


if __name__ == "__main__":
    main()
