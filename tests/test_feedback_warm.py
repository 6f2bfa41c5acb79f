"""A grading worker renders the released notebooks once as it starts (``grade.warm_feedback``): the cells every
student's feedback page shares are then highlighted and rendered before the first task, with the keys under which
grading looks them up."""

from __future__ import annotations

import nbformat
from ipykernel.ipkernel import IPythonKernel

from grader_tests.engine import grade
from grader_tests.engine.course import assignments, notebook_path
from grader_tests.engine.nbgrader_plugins import FeedbackExporter, _RememberedHighlight
from grader_tests.engine.sanitize import SafeMarkdown


def test_warm_feedback_renders_every_released_cell() -> None:
    _RememberedHighlight.remembered.clear()
    SafeMarkdown.remembered.clear()
    grade.warm_feedback()
    lexer = IPythonKernel.language_info["pygments_lexer"]  # what the grading kernel's notebooks name
    missing = []
    for assignment in assignments():
        for cell in nbformat.read(notebook_path(assignment), as_version=4).cells:
            if cell.cell_type == "code" and (cell.source, lexer, None) not in _RememberedHighlight.remembered:
                missing.append((assignment, cell.source[:60]))
            if (cell.cell_type == "markdown" and not cell.get("attachments")
                    and (id(FeedbackExporter), cell.source) not in SafeMarkdown.remembered):
                missing.append((assignment, cell.source[:60]))
    assert missing == []
    assert len(_RememberedHighlight.remembered) > 200
    assert len(SafeMarkdown.remembered) > 200
