"""Grade a class: ``make grade SUBMISSIONS=<folder or zip>`` runs ``python -m grader_tests.engine.grade SUBMISSIONS``.

Submissions are a folder in nbgrader's layout ``<student>/<assignment>/<notebook>.ipynb`` or an LMS download
(Canvas, Moodle, Blackboard or ``<student>_<anything>_<notebook>.ipynb``; :mod:`grader_tests.engine.intake`).
Every submission of one student to one assignment is a task:

1. **intake**: copied to ``build/grading/submitted``; a missing or unreadable notebook is replaced by the
   released one with a note saying why (it scores 0, and the feedback tells the student); every file of the
   download that is not used is reported with the reason;
2. **autograde** in a worker process (``--workers``, default: one more than the cores), with a private copy of an empty
   gradebook: nbgrader ``autograde`` with this course's preprocessors (``nbgrader_config.py``), then
   ``generate_feedback``;
3. **merge**: the parent process copies the task's grades into ``build/gradebook.db`` in one transaction and
   only then marks the task done in ``build/grading/state.json``. An interrupted run loses only the tasks in
   flight; a re-run skips the submissions already graded (same bytes) and regrades the rest, never twice.

Then ``build/grading/grades.csv`` (one row per student: points per graded cell, per notebook, in total),
``feedback/<student>/<assignment>/*.html``, a printed summary and ``scores.png``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import nbformat

from .course import ROOT, assignments, generate, graded_cells, nbgrader_api, notebook_path
from .intake import collect
from .nbgrader_plugins import FLAGGED, add_note, notes

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


def intake(submissions: Path, root: Path = ROOT) -> tuple[list[Task], list[str]]:
    """Every submission (:mod:`grader_tests.engine.intake`) copied into ``build/grading/submitted`` with its notebook
    checked: one task each, and the files of the download that were not used, each with the reason."""
    notebooks = {assignment: notebook_path(assignment, root).stem for assignment in assignments(root)}
    try:
        found = collect(submissions, notebooks, GRADING / "downloaded")
    except ValueError as error:
        raise SystemExit(str(error)) from None
    tasks = []
    for submission in found.submissions:
        student, assignment, folder = submission.student, submission.assignment, submission.folder
        dest = GRADING / "submitted" / student / assignment
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(folder, dest, symlinks=True)
        task = Task(student, assignment, _digest(folder), list(submission.notes))
        note = _check_notebook(dest, notebooks[assignment])
        if note:
            task.notes.append(note)
            nb = nbformat.read(notebook_path(assignment, root), as_version=4)
            add_note(nb, f"{note}: graded as the released notebook, 0 points")
            nbformat.write(nb, dest / f"{notebooks[assignment]}.ipynb")
        for submitted_note in submission.notes:
            _add_note_to(dest / f"{notebooks[assignment]}.ipynb", submitted_note)
        tasks.append(task)
    return tasks, found.skipped


def _add_note_to(path: Path, note: str) -> None:
    nb = nbformat.read(path, as_version=4)
    add_note(nb, note)
    nbformat.write(nb, path)


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def _check_notebook(folder: Path, name: str) -> str | None:
    """Why the submitted notebook cannot be graded as it is, or None."""
    path = folder / f"{name}.ipynb"
    if not path.exists():
        found = ", ".join(sorted(p.name for p in folder.glob("*.ipynb"))) or "no notebook"
        for other in folder.glob("*.ipynb"):
            other.rename(other.with_suffix(".ipynb.misnamed"))  # nbgrader would skip it anyway
        return f"{name}.ipynb is missing from the submission (found: {found})"
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # noqa: BLE001 - any reason the file is not a notebook
        path.rename(path.with_suffix(".ipynb.invalid"))
        return f"{name}.ipynb is not a valid notebook ({type(error).__name__}: {str(error).splitlines()[0][:120]})"
    return None  # a valid notebook, however broken inside: RepairStructure rebuilds it and notes each repair


# --- grading --------------------------------------------------------------------------------------------------


def _worker_init() -> None:
    import signal

    import torch

    from .forkserver import start_early

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops the workers
    _exit_with_parent()
    start_early()
    warnings.filterwarnings("ignore", module="nbgrader")  # nbgrader's own SQLAlchemy warnings, not the students'
    torch.set_num_threads(1)


def _exit_with_parent() -> None:
    """End this worker as soon as the grading process is gone, even by ``kill -9``: its fork server then sees its
    input close and kills its kernels, so nothing of a grading run outlives it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def grade_task(task: Task, template: Path, execute: dict[str, Any]) -> dict[str, Any]:
    """Autograde one submission into a private gradebook and write its feedback (runs in a worker);
    ``execute``: options of the grading kernels (:func:`grader_tests.engine.course.nbgrader_api`)."""
    db = GRADING / "work" / f"{task.student}--{task.assignment}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, db)
    grader = nbgrader_api(f"sqlite:///{db}", **execute)
    started = time.perf_counter()
    result = grader.autograde(task.assignment, task.student, force=True, create=True)
    autograded = time.perf_counter()
    if not result["success"]:
        return _failed(task, "autograde", result)
    feedback = grader.generate_feedback(task.assignment, task.student, force=True)
    if not feedback["success"]:
        return _failed(task, "generate_feedback", feedback)
    seconds = {"autograde": autograded - started, "feedback": time.perf_counter() - autograded}
    from .forkserver import ForkServer

    return {"task": asdict(task), "db": str(db), "seconds": seconds, "sandbox": ForkServer.get().sandbox}


def _failed(task: Task, step: str, result: dict[str, Any]) -> dict[str, Any]:
    """A failed nbgrader step: its last lines as the reason, its whole log kept in ``build/grading/logs``."""
    text = "\n".join(str(result.get(key) or "") for key in ("error", "log")).strip()
    log = GRADING / "logs" / f"{task.student}--{task.assignment}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [f"nbgrader {step} failed"]
    errors = [line for line in lines
              if re.match(r"[\w.]+(Error|Exception|Exit)\b", line) and "NbGraderException" not in line]
    reason = f"nbgrader {step} failed: {(errors or lines)[-1]}"
    return {"task": asdict(task), "error": reason, "log": str(log)}


def merge(main: Any, db: Path, assignment: str, student: str) -> None:
    """Copy one graded submission's automatic scores from a task's gradebook into the main one, replacing an older
    grading. Nothing else is taken from it (a manual score, extra credit): those are the instructor's alone."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{db}") as source:
        submission = source.find_submission(assignment, student)
        timestamp = submission.timestamp
        grades = {(nb.name, grade.name): grade.auto_score for nb in submission.notebooks for grade in nb.grades}
        comments = {
            (nb.name, comment.name): comment.auto_comment for nb in submission.notebooks for comment in nb.comments
        }
    main.update_or_create_student(student)
    try:
        main.remove_submission(assignment, student)
    except MissingEntry:
        pass
    fresh = main.add_submission(assignment, student, timestamp=timestamp)
    for nb in fresh.notebooks:
        for grade in nb.grades:
            grade.auto_score = grades[(nb.name, grade.name)]
            grade.needs_manual_grade = grade.auto_score is None  # written answers: graded by hand
        for comment in nb.comments:
            comment.auto_comment = comments.get((nb.name, comment.name))
    main.db.commit()


class State:
    """``build/grading/state.json``: which submission (by digest) is graded, with its notes; written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
        self.graded_now = 0
        self.finished: list[float] = []  # seconds from the start of this run at which each submission was done
        self.skipped: list[str] = []  # files of the download not used, with the reason

    def done(self, task: Task) -> bool:
        entry = self.entries.get(task.key, {})
        return entry.get("digest") == task.digest and entry.get("status") == "graded"

    def record(self, task: Task, status: str, **extra: Any) -> None:
        self.entries[task.key] = {"digest": task.digest, "status": status, "notes": task.notes, **extra}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        tmp.replace(self.path)


def grade(submissions: Path, workers: int = WORKERS, timeout: float | None = None,
          force: bool = False, full: bool = False, memory_mb: int | None = None) -> State:
    """Grade every submission not graded yet; returns the state (see the module docstring). ``timeout``: seconds
    per cell; ``full``: render the figures and run the cells after the last test too, for complete feedback;
    ``memory_mb``: the memory of each sandboxed kernel (default: :class:`grader_tests.engine.sandbox.Limits`)."""
    from nbgrader.api import Gradebook
    from tqdm import tqdm

    started = time.perf_counter()
    warnings.filterwarnings("ignore", module="nbgrader")  # nbgrader's SQLAlchemy warnings while merging
    GRADING.mkdir(parents=True, exist_ok=True)
    state = State(GRADING / "state.json")
    _warn_if_unsandboxed()
    tasks, state.skipped = intake(submissions)
    todo = [task for task in tasks if force or not state.done(task)]
    print(f"{len(tasks)} submissions from {len({t.student for t in tasks})} students; {len(todo)} to grade, "
          f"{len(tasks) - len(todo)} already graded", flush=True)
    state.graded_now = 0
    template = GRADING / "template.db"
    if todo:
        empty_gradebook(template)
        if not MAIN_DB.exists():
            shutil.copyfile(template, MAIN_DB)
    for pool_size in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread each: workers
        os.environ.setdefault(pool_size, "1")  # and kernels side by side (judges use scipy's OpenBLAS too)
    pool = ProcessPoolExecutor(max(1, workers), mp_context=get_context("spawn"), initializer=_worker_init)
    try:
        with Gradebook(f"sqlite:///{MAIN_DB}") as main:
            execute = {"timeout": None if timeout is None else int(timeout), "figures": full or None,
                       "every_cell": full or None, "memory_mb": memory_mb}
            futures = {pool.submit(grade_task, task, template, execute): task for task in todo}
            for future in tqdm(as_completed(futures), total=len(futures), desc="grading", unit="submission"):
                task = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # noqa: BLE001 - a crashed worker fails one task, not the class
                    result = {"error": f"{type(error).__name__}: {error}"}
                if "error" in result:
                    state.record(task, "failed", error=result["error"], log=result.get("log"))
                    tqdm.write(f"grading {task.key} failed: {result['error'].splitlines()[-1]}")
                    continue
                merge(main, Path(result["db"]), task.assignment, task.student)
                state.record(task, "graded", notes=_autograded_notes(task), seconds=result["seconds"],
                             sandbox=result["sandbox"])
                Path(result["db"]).unlink(missing_ok=True)
                state.graded_now += 1
                state.finished.append(time.perf_counter() - started)
    except KeyboardInterrupt:
        # the submissions in flight are dropped at once (Python >= 3.14 names this pool.terminate_workers())
        for worker in list(getattr(pool, "_processes", {}).values()):
            worker.terminate()  # its fork server sees it go and takes its kernels down with it
        pool.shutdown(wait=False, cancel_futures=True)
        sys.exit("interrupted: the grades merged so far are kept; run the same command again to go on")
    pool.shutdown()
    return state


def _warn_if_unsandboxed() -> None:
    from .sandbox import unavailable

    why = "turned off (VISUALIZING_CNNS_NO_SANDBOX)" if os.environ.get("VISUALIZING_CNNS_NO_SANDBOX") else unavailable()
    if why:
        print(f"WARNING: grading kernels are NOT sandboxed: {why}.\nStudent code will run with this user's rights: "
              "it can read the judges and other submissions and change grades (README, 'Honest').", file=sys.stderr,
              flush=True)


def _autograded_notes(task: Task) -> list[str]:
    """The grading notes of the graded notebook (the intake's among them)."""
    path = GRADING / "autograded" / task.student / task.assignment
    return [note for notebook in sorted(path.glob("*.ipynb")) for note in notes(nbformat.read(notebook, as_version=4))]


# --- reports --------------------------------------------------------------------------------------------------


def grade_table(students: Iterable[str], db: Path | None = None, root: Path = ROOT) -> tuple[list[str], list[dict]]:
    """CSV columns and one row per student: every graded cell, each notebook's total, the total."""
    from nbgrader.api import Gradebook, MissingEntry

    db = db or MAIN_DB
    cells = {assignment: graded_cells(assignment, root) for assignment in assignments(root)}
    columns = ["student"]
    for assignment, graded in cells.items():
        columns += [f"{assignment}/{name}" for name in graded] + [assignment]
    columns += ["total", "max", "needs manual grading"]
    rows = []
    with Gradebook(f"sqlite:///{db}") as gb:
        for student in sorted(students):
            row: dict[str, Any] = {"student": student, "total": 0.0, "max": 0.0, "needs manual grading": 0}
            for assignment, graded in cells.items():
                row["max"] += sum(graded.values())
                try:
                    submission = gb.find_submission(assignment, student)
                except MissingEntry:
                    row[assignment] = ""
                    continue
                scores = {g.name: g for nb in submission.notebooks for g in nb.grades}
                subtotal = 0.0
                for name in graded:
                    grade_ = scores.get(name)
                    if grade_ is None or (grade_.needs_manual_grade and grade_.manual_score is None):
                        row[f"{assignment}/{name}"] = ""
                        row["needs manual grading"] += grade_ is not None
                        continue
                    row[f"{assignment}/{name}"] = grade_.score
                    subtotal += grade_.score
                row[assignment] = subtotal
                row["total"] += subtotal
            rows.append(row)
    return columns, rows


def write_reports(state: State) -> list[dict]:
    """grades.csv, scores.png and the printed summary; returns the CSV rows."""
    out = GRADING
    students = sorted({key.split("/")[0] for key, entry in state.entries.items() if entry["status"] == "graded"})
    columns, rows = grade_table(students, MAIN_DB)
    with open(out / "grades.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    _plot([row["total"] for row in rows], rows[0]["max"] if rows else 0.0, out / "scores.png")
    _summary(state, rows, out)
    return rows


def _plot(totals: list[float], maximum: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.hist(totals, bins=min(20, max(5, len(totals) // 3)), range=(0, maximum or 1), color="tab:blue")
    ax.set(xlabel="points (autograded and manual so far)", ylabel="students",
           title=f"Score distribution ({len(totals)} students, max {maximum:g})")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _summary(state: State, rows: list[dict], out: Path) -> None:
    totals = [row["total"] for row in rows]
    print(f"\ngraded {len(rows)} students -> {out / 'grades.csv'}, {out / 'scores.png'}, {out / 'feedback'}")
    if totals:
        print(f"total: mean {statistics.mean(totals):.1f}, median {statistics.median(totals):.1f}, "
              f"min {min(totals):g}, max {max(totals):g} of {rows[0]['max']:g} "
              f"(written answers count once graded by hand: {sum(r['needs manual grading'] for r in rows)} open)")
    failed = {k: e for k, e in state.entries.items() if e["status"] == "failed"}
    noted = {k: e["notes"] for k, e in state.entries.items() if e.get("notes")}
    unsandboxed = sorted(k for k, e in state.entries.items() if e.get("sandbox", {}).get("on") is False)
    if unsandboxed:
        why = state.entries[unsandboxed[0]]["sandbox"].get("why")
        print(f"WARNING: {len(unsandboxed)} submissions were graded WITHOUT a sandbox ({why}): "
              "their grades can be forged")
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
                             "grade: figures and the cells after the last test; three times faster)")
    args = parser.parse_args(argv)
    state = grade(args.submissions, args.workers, args.timeout, args.force, args.full, args.memory)
    write_reports(state)


if __name__ == "__main__":
    main()
