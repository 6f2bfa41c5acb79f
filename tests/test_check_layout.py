"""The trust boundary of the hidden checks, as a layout: every probe in ``grader_tests/kernel/`` has a judge of
the same name in ``grader_tests/judges/`` and the other way round, the notebooks' hidden blocks call probes only,
and nothing in the kernel reaches for the judges or the engine."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader_tests import judges
from grader_tests.kernel.record import Probe

ROOT = Path(__file__).resolve().parents[1]
KERNEL = ROOT / "grader_tests" / "kernel"
JUDGES = ROOT / "grader_tests" / "judges"
SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))

KERNEL_MODULES = sorted(path.stem for path in KERNEL.glob("*.py") if path.stem != "__init__")
JUDGE_MODULES = sorted(path.stem for path in JUDGES.glob("*.py") if path.stem != "__init__")
TOPICS = ("autograd", "parameters", "filters", "activations", "saliency", "gradcam", "patches", "dissection",
          "embeddings", "class_visualization", "occlusion", "attributions",
          "sanity_checks", "shortcut")
"""The notebooks' topics: one probe module and one judge module each."""


def _probes() -> dict[str, Probe]:
    """Every probe of the kernel modules, by its name ``<topic>.check_x``."""
    found: dict[str, Probe] = {}
    for module in KERNEL_MODULES:
        for attribute, value in vars(importlib.import_module(f"grader_tests.kernel.{module}")).items():
            if isinstance(value, Probe):
                assert value.name == f"{module}.{attribute}", f"grader_tests.kernel.{module}.{attribute} is {value!r}"
                found[value.name] = value
    return found


def _judges() -> dict[str, object]:
    """Every registered judge, after importing all judge modules."""
    for module in JUDGE_MODULES:
        importlib.import_module(f"grader_tests.judges.{module}")
    return dict(judges._JUDGES)


def test_every_topic_has_a_probe_module_and_a_judge_module():
    assert set(TOPICS) <= set(KERNEL_MODULES)
    assert set(TOPICS) <= set(JUDGE_MODULES)
    topics = {name.partition(".")[0] for name in _probes()}
    assert topics == set(TOPICS)


def test_every_probe_has_a_judge_and_every_judge_a_probe():
    probes, registered = _probes(), _judges()
    assert probes, "no probe found"
    assert sorted(probes) == sorted(registered)
    for name in probes:
        assert judges.find(name) is registered[name]


def test_judges_are_the_judge_modules_functions():
    for name, function in _judges().items():
        topic, _, check = name.partition(".")
        assert getattr(importlib.import_module(f"grader_tests.judges.{topic}"), check) is function


def test_find_refuses_what_is_not_a_hidden_check():
    for name in ("saliency.saliency_map", "saliency.check_nothing", "os.check_x", "grader_tests.saliency.check_saliency_map"):
        with pytest.raises(LookupError):
            judges.find(name)


# --- the notebooks --------------------------------------------------------------------------------------


def _hidden_blocks(path: Path) -> list[str]:
    blocks = []
    for cell in nbformat.read(path, as_version=4).cells:
        source = cell.source
        while "### BEGIN HIDDEN TESTS" in source:
            start = source.index("### BEGIN HIDDEN TESTS")
            end = source.index("### END HIDDEN TESTS", start)
            blocks.append(source[start:end])
            source = source[end + len("### END HIDDEN TESTS"):]
    return blocks


@pytest.mark.parametrize("path", SOLUTIONS, ids=[path.parent.name for path in SOLUTIONS])
def test_hidden_blocks_import_only_probes_of_their_topic(path):
    probes = _probes()
    blocks = _hidden_blocks(path)
    assert blocks, f"{path.name} has no hidden test block"
    for block in blocks:
        imported = []
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Import):
                pytest.fail(f"a hidden block of {path.name} imports {[a.name for a in node.names]}")
            if isinstance(node, ast.ImportFrom):
                topic = (node.module or "").removeprefix("grader_tests.kernel.")
                assert node.level == 0 and node.module == f"grader_tests.kernel.{topic}" and topic in TOPICS, (
                    f"a hidden block of {path.name} imports from {node.module!r}"
                )
                for alias in node.names:
                    assert f"{topic}.{alias.name}" in probes, f"{path.name}: {node.module}.{alias.name} is not a probe"
                    imported.append(alias.name)
        assert imported, f"a hidden block of {path.name} calls no probe"


# --- the kernel does not reach across the boundary ------------------------------------------------------

FORBIDDEN = ("grader_tests.judges", "grader_tests.engine")


def _reaches_across(name: str | None) -> bool:
    return name is not None and any(name == forbidden or name.startswith(forbidden + ".") for forbidden in FORBIDDEN)


def _imports(tree: ast.AST, package: str) -> list[tuple[ast.AST, str]]:
    """Every import in ``tree`` with the absolute module it names (relative ones resolved against ``package``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                module = f"{base}.{node.module}" if node.module else base
                found += [(node, module)] if node.module else [(node, f"{base}.{a.name}") for a in node.names]
            else:
                found.append((node, node.module or ""))
    return found


def _lazy_import_in_probe_call(tree: ast.Module) -> set[ast.AST]:
    """The one allowed exception: the import of ``judge_now`` inside ``Probe.__call__`` of record.py."""
    allowed: set[ast.AST] = set()
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and cls.name == "Probe":
            for method in cls.body:
                if isinstance(method, ast.FunctionDef) and method.name == "__call__":
                    for node in ast.walk(method):
                        if isinstance(node, ast.ImportFrom) and node.module == "grader_tests.judges":
                            assert [a.name for a in node.names] == ["judge_now"]
                            allowed.add(node)
    return allowed


@pytest.mark.parametrize("module", ["__init__", *KERNEL_MODULES])
def test_kernel_modules_do_not_import_judges_or_engine(module):
    path = KERNEL / f"{module}.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    allowed = _lazy_import_in_probe_call(tree) if module == "record" else set()
    if module == "record":
        assert len(allowed) == 1, "record.py should import judge_now lazily inside Probe.__call__"
    for node, name in _imports(tree, "grader_tests.kernel"):
        assert not _reaches_across(name) or node in allowed, (
            f"grader_tests/kernel/{module}.py line {node.lineno} imports {name}"
        )


def test_importing_the_kernel_loads_no_judge_and_no_engine():
    modules = json.dumps([f"grader_tests.kernel.{module}" for module in KERNEL_MODULES])
    script = (
        "import importlib, json, sys\n"
        f"for name in json.loads({modules!r}):\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('grader_tests'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert f"grader_tests.kernel.{KERNEL_MODULES[0]}" in loaded
    assert not [name for name in loaded if _reaches_across(name)], loaded
