"""Which cells a graded run skips (grader_tests/engine/dependencies.py): what the tests depend on always runs."""

from __future__ import annotations

import pytest

from grader_tests.engine.course import assignments
from grader_tests.engine.dependencies import EVERYTHING, cell_names, needed_cells
from grader_tests.engine.fabricated_class import perfect
from grader_tests.engine.nbgrader_plugins import is_autograded_test

SETUP = "import torch\nimport helpers\nmodel = helpers.load_pretrained()\ndemo = helpers.load_demo()"


def run(*cells: str, always: tuple[int, ...] = ()) -> list[int]:
    """The indices that run of ``cells``, the last one a test (always runs) with ``always`` too."""
    return sorted(needed_cells(list(cells), {len(cells) - 1, *always}))


# --- what one cell reads, binds and changes ----------------------------------------------------------------------


def test_free_reads_are_what_a_cell_reads_before_it_binds():
    names = cell_names("x = f(x)\ny = 1\nprint(y, z)\nfor i in range(3):\n    print(i)")
    assert names.reads == {"f", "x", "print", "z", "range"}
    assert names.binds == {"x", "y", "i"}


def test_a_function_reads_its_globals_not_its_parameters_or_locals():
    names = cell_names("def f(a, *, b=default):\n    c = a + b\n    return c + model(a)")
    assert names.reads == {"default", "model"}
    assert names.binds == {"f"} and set(names.functions) == {"f"}


def test_a_binding_in_a_branch_does_not_hide_the_name_from_later_reads():
    assert "x" in cell_names("if flag:\n    x = 1\nprint(x)").reads


@pytest.mark.parametrize("source", [
    "%matplotlib inline", "!ls", "exec('x = 1')", "globals()['x'] = 1", "from helpers import *",
    "vars()['model']", "import sys\nsys.modules['torch'].x = 1", "get_ipython().run_cell('x = 1')",
])
def test_a_cell_that_cannot_be_resolved_reads_and_binds_everything(source):
    names = cell_names(source)
    assert names.reads == names.binds == {EVERYTHING}


# --- which cells run ----------------------------------------------------------------------------------------------


def test_a_figure_of_the_demo_set_is_skipped_and_what_the_test_reads_runs():
    cells = (SETUP, "import matplotlib.pyplot as plt\nplt.imshow(demo.images[0][0])", "assert model(demo.images).ndim == 2")
    assert run(*cells) == [0, 2]


def test_a_name_the_test_reads_keeps_the_cell_that_binds_it_and_what_that_reads():
    cells = ("a = 1", "b = a + 1", "c = 5", "assert b == 2")
    assert run(*cells) == [0, 1, 3]


@pytest.mark.parametrize("change", [
    "model.train()", "model.fc.weight.data.zero_()", "model.fc = None", "demo.images[0] = 0",
    "model(demo.images)",  # a forward pass runs the model's hooks and may update BatchNorm statistics
    "loss = model(demo.images).sum()\nloss.backward()",  # gradients accumulate in the model's parameters
    "torch.nn.init.zeros_(model.fc.weight)",
])
def test_a_cell_that_may_change_what_the_test_reads_runs(change):
    assert run(SETUP, change, "assert not model.training and demo.images.sum() != 0") == [0, 1, 2]


@pytest.mark.parametrize(("source", "reads"), [
    ("g = x.grad", True), ("optimizer.step()", True), ("value = getattr(x, name)", True),
    ("(g,) = torch.autograd.grad(y, x)", False), ("from torch import autograd\ng = autograd.grad(y, x)", False),
])
def test_reading_accumulated_gradients_is_told_from_computing_new_ones(source, reads):
    assert cell_names(source).reads_grad is reads


def test_a_copy_is_not_the_original():
    assert run(SETUP, "scratch = copy.deepcopy(model).train()\nscratch.fc = None", "assert not model.training") == [0, 2]


def test_a_notebook_function_that_changes_its_parameter_changes_what_it_is_given():
    cells = (SETUP, "def spoil(net):\n    net.train()", "def look(net):\n    return net.fc", "look(model)",
             "spoil(model)", "assert not model.training")
    assert run(*cells) == [0, 1, 4, 5]


def test_a_parameter_a_function_calls_is_what_the_cell_gives_it():
    apply = "def apply(model, x):\n    return model(x)"  # its parameter shares the notebook's name
    tiny = "tiny = torch.nn.Linear(2, 2)"
    assert run(SETUP, apply, tiny, "apply(tiny, torch.zeros(1, 2))", "assert not model.training") == [0, 4]
    assert run(SETUP, apply, "apply(model, demo.images)", "assert not model.training") == [0, 1, 2, 3]
    assert run(SETUP, apply, tiny, "apply(tiny, demo.images)", "assert demo.images.sum() != 0") == [0, 1, 2, 3, 4]


def test_a_function_given_as_an_argument_changes_what_it_is_given_there():
    spoil, look = "def spoil(net):\n    net.train()", "def look(net):\n    return net.fc"
    apply = "def apply(f, net):\n    return f(net)"
    assert run(SETUP, spoil, apply, "apply(spoil, model)", "assert not model.training") == [0, 1, 2, 3, 4]
    assert run(SETUP, look, apply, "apply(look, model)", "assert not model.training") == [0, 4]


def test_a_function_that_changes_a_global_changes_it_wherever_it_is_called():
    cells = (SETUP, "def spoil():\n    model.train()", "spoil()", "assert not model.training")
    assert run(*cells) == [0, 1, 2, 3]


def test_patching_a_module_is_a_change_of_the_module():
    cells = ("import numpy", "numpy.allclose = lambda *args, **kwargs: True", "assert numpy.allclose(1, 2)")
    assert run(*cells) == [0, 1, 2]


def test_calling_a_module_function_does_not_change_the_module():
    cells = ("import torch", "torch.manual_seed(3)\nx = torch.rand(2)", "assert torch.zeros(2).sum() == 0")
    assert run(*cells) == [0, 2]


def test_solution_cells_always_run_and_pull_in_what_they_read():
    cells = (SETUP, "unused = 1", "scale = 2", "def answer(x):\n    return scale * x", "assert answer(1) == 2")
    assert run(*cells, always=(3,)) == [2, 3, 4]


def test_a_cell_that_cannot_be_resolved_runs_and_keeps_everything_before_it():
    cells = ("a = 1", "b = 2", "%time c = 3", "assert True")
    assert run(*cells) == [0, 1, 2, 3]


def test_a_cell_after_the_last_test_is_not_needed_here():
    assert run("x = 1", "assert True") == [1]


# --- the course's notebooks ---------------------------------------------------------------------------------------


SKIPPED = {
    "01_autograd": [9, 11, 13, 24], "02_parameters": [5, 6, 8], "03_filters": [6, 12, 14, 18, 20], "04_activations": [],
    "05_saliency": [], "06_gradcam": [], "07_patches": [10, 12, 13, 15, 16, 19, 21, 22, 24], "08_dissection": [4, 5],
    "09_embeddings": [4, 6, 8, 15, 17], "10_class_visualization": [11], "11_occlusion": [], "12_attributions": [10],
    "13_sanity_checks": [11, 12, 14], "14_shortcut": [6, 8, 10, 12, 17, 22, 24],
}
"""The cells before the last test that grading skips in each solved notebook: figures and demonstrations no test
depends on (notebooks 4-6 and 11 pass the model through student code or gradients that a test reads)."""


@pytest.mark.parametrize("assignment", assignments())
def test_the_solved_course_skips_its_demonstrations_and_never_a_test_or_an_answer(assignment):
    nb = perfect(assignment)
    tests = [i for i, cell in enumerate(nb.cells) if is_autograded_test(cell)]
    always = {i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
              and (cell.metadata.get("nbgrader", {}).get("solution") or i in tests)}
    sources = [cell.source if cell.cell_type == "code" and i <= tests[-1] else None for i, cell in enumerate(nb.cells)]
    needed = needed_cells(sources, always)
    assert sorted(i for i, source in enumerate(sources) if source is not None and i not in needed) == SKIPPED[assignment]
    assert not always & set(SKIPPED[assignment])
