"""Faults for the grading workers' tests (imported by the Dask workers, so a module of its own)."""

from __future__ import annotations

import os
from typing import Any

from grader_tests.engine.cluster import grade_submission
from grader_tests.engine.grade import Task


def crash_or_grade(task: Task, *args: Any) -> dict[str, Any]:
    """Grade ``task``, unless its student is called ``crasher``: then the worker dies at once, as one killed by
    the system's out-of-memory killer would."""
    if task.student.startswith("crasher"):
        os._exit(137)
    return grade_submission(task, *args)


def echo_or_crash(task: Task, *args: Any) -> dict[str, Any]:
    """No grading: the student's name back, or the worker's death for a ``crasher``."""
    if task.student.startswith("crasher"):
        os._exit(137)
    return {"student": task.student, "pid": os.getpid()}
