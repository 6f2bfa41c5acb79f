"""The course installs as a package, not only in editable mode: a wheel built from the sources, installed into a
fresh environment, gives a working ``helpers`` (its weights and tables included) from any folder, and runs a
notebook there. Nothing is downloaded: the wheel is built without build isolation, and the fresh environment reads
this environment's packages (torch, ...) through a ``.pth`` file, so only the wheel is installed into it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "helpers", "grader_tests")  # what setuptools builds from
NOTEBOOK = ROOT / "solutions" / "02_parameters" / "parameters.ipynb"


def _run(*command: str | Path, cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the sources (the build writes its scratch files next to them, not in this tree)."""
    work = tmp_path_factory.mktemp("wheel")
    (work / "src").mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / "src" / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, work / "src" / name)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", work / "dist", work / "src", cwd=work)
    (built,) = (work / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtual environment holding the wheel only, with this environment's packages
    (torch, ...) reachable through a .pth file (its own .pth files, the editable install among them, are not read)."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv.parent)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=venv).strip())
    (site / "course_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel,
         cwd=venv.parent)
    return python


def test_the_wheel_holds_the_weights_the_tables_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"helpers/weights/{p.name}" for p in (ROOT / "helpers" / "weights").glob("*.pt")} <= names
    assert {f"helpers/tables/{p.name}" for p in (ROOT / "helpers" / "tables").glob("*.csv")} <= names
    if (ROOT / "LICENSE").exists():
        assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), sorted(names)[-10:]


def test_the_installed_helpers_work_outside_the_repository(python: Path, tmp_path: Path) -> None:
    printed = _run(python, "-c", "\n".join([
        "import helpers, helpers.environment",
        "print(helpers.__file__)",
        "for variant in ('robust', 'standard', 'shortcut'):",
        "    helpers.load_pretrained(variant=variant)",
        "images, labels, masks = helpers.load_demo()",
        "print(tuple(helpers.load_pretrained()(images).shape))",
        "print(len(helpers.load_attribution_table()) > 0)",
        "print(helpers.environment.check())",
    ]), cwd=tmp_path)
    where, shape, table, check = printed.splitlines()[-4:]
    assert Path(where).is_relative_to(python.parents[1]) and not Path(where).is_relative_to(ROOT)
    assert shape == f"(6, {len(helpers_classes())})" and table == "True"
    assert check.startswith("ok:") and "checkpoint verified" in check


def helpers_classes() -> tuple[str, ...]:
    from helpers import CLASSES

    return tuple(CLASSES)


def test_a_notebook_runs_outside_the_repository_on_the_installed_package(python: Path, tmp_path: Path) -> None:
    shutil.copy2(NOTEBOOK, tmp_path / NOTEBOOK.name)
    printed = _run(python, "-c", "\n".join([
        "import nbformat",
        "from nbclient import NotebookClient",
        f"nb = nbformat.read({NOTEBOOK.name!r}, as_version=4)",
        "nb.cells.append(nbformat.v4.new_code_cell('import helpers, sys; print(helpers.__file__, sys.executable)'))",
        "NotebookClient(nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': '.'}}).execute()",
        "errors = [o for c in nb.cells for o in c.get('outputs', []) if o.get('output_type') == 'error']",
        "print(len(errors), nb.cells[-1].outputs[0]['text'].strip())",
    ]), cwd=tmp_path)
    errors, where, kernel = printed.splitlines()[-1].split()
    assert errors == "0"
    assert Path(where).is_relative_to(python.parents[1]) and Path(kernel) == python  # the wheel, in the new venv
