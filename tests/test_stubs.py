"""Student stubs name the function to write (``grader_tests.engine.course.NamedStubs``): JupyterLab's Run All stops
at the first unfinished task, and its error must say which one it is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from grader_tests.engine.course import enclosing_function

ROOT = Path(__file__).resolve().parents[1]
RELEASED = sorted((ROOT / "notebooks").glob("*/*.ipynb"))
STUB = re.compile(r'raise NotImplementedError\("write (\w+): replace this line with your code"\)')


@pytest.mark.parametrize("path", RELEASED, ids=[p.parent.name for p in RELEASED])
def test_every_stub_names_its_function(path):
    stubs = 0
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code" or not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            continue
        assert "NotImplementedError()" not in cell.source, f"a stub without a name in {path.name}"
        for match in STUB.finditer(cell.source):
            (function,) = [node.name for node in ast.parse(cell.source).body if isinstance(node, ast.FunctionDef)]
            assert match[1] == function
            stubs += 1
    assert stubs >= 2


def test_enclosing_function_is_the_innermost_def_around_the_line():
    source = (
        "import torch\n"
        "def outer(x):\n"
        "    def helper():\n"
        "        return 1\n"
        "    raise NotImplementedError\n"      # line 5: outer's body, after a nested def
        "async def later():\n"
        "    def inner():\n"
        "        pass\n"                       # line 8: inner
        "x = 1\n"                              # line 9: top level
    )
    assert enclosing_function(source, 5) == "outer"
    assert enclosing_function(source, 8) == "inner"
    assert enclosing_function(source, 9) is None


def test_enclosing_function_reads_ipython_source_by_indentation():
    source = "%matplotlib inline\ndef f(x):\n    raise NotImplementedError\n"
    assert enclosing_function(source, 3) == "f"
    assert enclosing_function(source, 1) is None
