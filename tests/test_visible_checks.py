"""Visible checks leave the notebook as they found it, and draw only from seeded generators.

Each solved notebook runs in a fresh kernel as a student runs it: every graded test cell holds its visible
part only (the hidden block is the grader's). Around each of them the kernel takes a snapshot of every model,
tensor and generator the notebook's globals reach, and of the global random generators
(``tests/visible_check_audit.py``); after the check, nothing may differ. A check that puts the notebook's
model in train mode, moves its BatchNorm statistics, leaves a hook, writes into a dataset or draws from the
global generator changes what every later cell computes, and fails here with the name of the object.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from torch import nn

import visible_check_audit as audit

ROOT = Path(__file__).resolve().parents[1]
SOLVED = sorted((ROOT / "solutions").glob("*/*.ipynb"))
AUDIT_SOURCE = (Path(__file__).parent / "visible_check_audit.py").read_text()
MARK = "VISIBLE-CHECK-AUDIT "


def _visible(source: str) -> str:
    """A test cell as the student sees it: the hidden block removed."""
    if "### BEGIN HIDDEN TESTS" not in source:
        return source
    head, rest = source.split("### BEGIN HIDDEN TESTS", 1)
    return head + rest.split("### END HIDDEN TESTS", 1)[1]


def _audited(notebook: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook with the audit defined first and each visible check wrapped in a snapshot and a comparison."""
    cells = [nbformat.v4.new_code_cell("_audit = {}\nexec(" + repr(AUDIT_SOURCE) + ", _audit)")]
    checks = []
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            grade_id = meta["grade_id"]
            checks.append(grade_id)
            cells.append(nbformat.v4.new_code_cell("_before = _audit['snapshot'](globals())"))
            cells.append(nbformat.v4.new_code_cell(_visible(cell.source)))
            cells.append(nbformat.v4.new_code_cell(
                f"print({MARK!r} + __import__('json').dumps([{grade_id!r}, _audit['differences'](_before)]))\n"
                "del _before"))
        else:
            cells.append(cell)
    audited = nbformat.v4.new_notebook(cells=cells, metadata=notebook.metadata)
    return audited, checks


@pytest.mark.parametrize("path", SOLVED, ids=[p.parent.name for p in SOLVED])
def test_visible_checks_change_nothing_later_cells_use(path: Path) -> None:
    audited, checks = _audited(nbformat.read(path, as_version=4))
    NotebookClient(audited, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [f"{out.ename}: {out.evalue}" for cell in audited.cells for out in cell.get("outputs", [])
              if out.output_type == "error"]
    assert not errors, f"the solved notebook failed: {errors}"
    reports = {}
    for cell in audited.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and MARK in out.text:
                grade_id, found = json.loads(out.text.split(MARK, 1)[1])
                reports[grade_id] = found
    assert list(reports) == checks, "every visible check was audited"
    changed = {grade_id: found for grade_id, found in reports.items() if found}
    assert not changed, f"visible checks that change what later cells use: {changed}"


# --- the audit itself catches what it is for -----------------------------------------------------------------


def _audit(cell: str, namespace: dict) -> list[str]:
    before = audit.snapshot(namespace)
    exec(cell, namespace)  # noqa: S102 - test code
    return audit.differences(before)


@pytest.fixture
def notebook_globals(small_model: nn.Module) -> dict:
    import copy

    return {"torch": torch, "copy": copy, "standard": copy.deepcopy(small_model).eval(),
            "data": {"images": torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))}}


@pytest.mark.parametrize(("cell", "phrase"), [
    ("standard.train()", "standard changed (training"),
    # the old batching checks of 11 and 13: a wrapper in train mode puts the wrapped shared model in train mode too
    ("class Counting(torch.nn.Module):\n"
     "    def __init__(self, net):\n"
     "        super().__init__()\n"
     "        self.net = net\n"
     "counting = Counting(standard).train()", "standard changed (training: itself"),
    ("standard.train(); standard(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))\n"
     "standard.eval()", "standard changed (state_dict"),  # the running statistics moved
    ("standard.fc.register_forward_hook(lambda *args: None)", "standard changed (hooks"),
    ("data['images'][0].clamp_(0, 0.5)", "data['images'] changed"),
    ("x = torch.rand(3)", "torch's global random generator"),
])
def test_the_audit_names_what_a_check_changed(notebook_globals: dict, cell: str, phrase: str) -> None:
    found = _audit(cell, notebook_globals)
    assert any(phrase in line for line in found), found


def test_the_audit_accepts_checks_on_copies(notebook_globals: dict) -> None:
    cell = (
        "scratch = copy.deepcopy(standard).train()\n"
        "scratch.register_forward_pre_hook(lambda module, args: None)\n"
        "scratch(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))\n"
        "kept = data['images'].clone(); kept[0] = 0\n"
    )
    assert _audit(cell, notebook_globals) == []
