"""One submission that kills its grading worker costs only its own grade: the local Dask cluster's nanny restarts
the worker, the submission is tried once more and then fails (``KilledWorker``), the others are graded exactly
once, and ``make grade`` exits with an error that says how many could not be graded."""

from __future__ import annotations

import functools
from collections import Counter

import nbformat
import pytest
from conftest import grading_in
from worker_faults import crash_or_grade, echo_or_crash

from grader_tests.engine import cluster
from grader_tests.engine import grade as G
from grader_tests.engine.cluster import GradingCluster
from grader_tests.engine.fabricated_class import graded_tests, perfect
from grader_tests.engine.grade import Task


def test_a_dying_worker_fails_its_own_task_and_every_other_task_is_done_once():
    tasks = [Task(f"student{i}", "02_parameters", "d") for i in range(9)]
    tasks.insert(3, Task("crasher", "02_parameters", "d"))
    graders = GradingCluster(3, task=echo_or_crash, warm=False)
    try:
        results = list(graders.results(tasks, lambda task: {}, {}))
    finally:
        graders.close()
    assert Counter(task.student for task, _ in results) == Counter(task.student for task in tasks)
    failed = {task.student: result["error"] for task, result in results if "error" in result}
    assert list(failed) == ["crasher"] and "died while grading it" in failed["crasher"]
    assert all(result["student"] == task.student for task, result in results if "error" not in result)


def test_make_grade_grades_the_others_and_exits_with_an_error(tmp_path, monkeypatch):
    for student in ("honest", "crasher"):
        (tmp_path / "class" / student / "02_parameters").mkdir(parents=True)
        nbformat.write(perfect("02_parameters"), tmp_path / "class" / student / "02_parameters" / "parameters.ipynb")
    monkeypatch.setattr(cluster, "GradingCluster", functools.partial(GradingCluster, task=crash_or_grade))
    with grading_in(tmp_path / "grading"):
        with pytest.raises(SystemExit, match=r"^1 submission\(s\) could not be graded"):
            G.main([str(tmp_path / "class"), "--workers", "2"])
        state = G.State(tmp_path / "grading" / "state.json")
    assert {key: entry["status"] for key, entry in state.entries.items()} == {
        "honest/02_parameters": "graded", "crasher/02_parameters": "failed"}
    rows = (tmp_path / "grading" / "grades.csv").read_text().splitlines()
    honest = next(row for row in rows if row.startswith("honest,"))
    assert honest.split(",")[1 : 1 + len(graded_tests("02_parameters"))] == [
        f"{points:g}" if points != int(points) else f"{points}" for points in graded_tests("02_parameters").values()]
