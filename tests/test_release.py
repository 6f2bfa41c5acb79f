"""The student zip of ``make release`` (scripts/release.py): what it holds, what it never holds, reproducibility."""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
TOP = "visualizing-cnns/"
FORBIDDEN = ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "grader_tests")


release = load_script("release")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*/*.ipynb"))


BUILT_AT: list[float] = []  # when the module's zip was built: (before, after)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    BUILT_AT.append(time.time())
    try:
        return release.build_release(tmp_path_factory.mktemp("release") / "student.zip")
    finally:
        BUILT_AT.append(time.time())


@pytest.fixture(scope="module")
def members(built: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(built) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_one_top_folder_sorted_entries(built: Path, members: dict[str, bytes]) -> None:
    assert members and all(name.startswith(TOP) for name in members)
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        dates = {info.date_time for info in archive.infolist()}
    assert len(dates) == 1  # one date for every entry: when the zip was built, not 1980
    (date,) = dates
    built_at = time.mktime((*date, 0, 0, -1))
    before, after = BUILT_AT
    assert before - 2 <= built_at <= after, (date, time.localtime(before)[:6])


def test_source_date_epoch_dates_the_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(time.mktime((2027, 3, 1, 9, 30, 17, 0, 0, -1)))))
    assert release.build_date() == (2027, 3, 1, 9, 30, 16)  # zip dates count seconds in twos
    out = tmp_path / "dated.zip"
    release.write_zip({"visualizing-cnns/a.txt": b"a", "visualizing-cnns/b.txt": b"b"}, out)
    with zipfile.ZipFile(out) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2027, 3, 1, 9, 30, 16)}


def test_the_notebooks_exactly_as_committed(members: dict[str, bytes]) -> None:
    solved = sorted((ROOT / "solutions").glob("*/*.ipynb"))
    assert [p.relative_to(ROOT / "notebooks") for p in NOTEBOOKS] == [p.relative_to(ROOT / "solutions") for p in solved]
    zipped = sorted(name for name in members if name.endswith(".ipynb"))
    assert zipped == [TOP + path.relative_to(ROOT).as_posix() for path in NOTEBOOKS]
    for path in NOTEBOOKS:
        assert members[TOP + path.relative_to(ROOT).as_posix()] == path.read_bytes(), path


def test_helpers_weights_and_set_up_files(members: dict[str, bytes]) -> None:
    for name in (
        "helpers/__init__.py",
        "helpers/environment.py",
        "helpers/weights/vgg11_shapes.pt",
        "helpers/tables/attributions.csv",
        "README.md",
        "environment.yml",
        "pyproject.toml",
    ):
        assert TOP + name in members, name
    assert members[TOP + "helpers/weights/vgg11_shapes.pt"] == (ROOT / "helpers/weights/vgg11_shapes.pt").read_bytes()
    assert members[TOP + "README.md"] == (ROOT / "docs/student_README.md").read_bytes()


def test_students_install_what_the_notebooks_need_and_nothing_for_instructors(members: dict[str, bytes]) -> None:
    main = release.tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    student = release.tomllib.loads(members[TOP + "pyproject.toml"].decode("utf-8"))["project"]
    names = {dependency.split(">")[0].split("=")[0].split("<")[0] for dependency in student["dependencies"]}
    assert names == {"torch", "torchvision", "numpy", "matplotlib", "captum", "scikit-learn", "jupyterlab", "ipykernel"}
    assert "optional-dependencies" not in student
    environment = members[TOP + "environment.yml"].decode("utf-8")
    pip = [line.strip()[2:] for line in environment.split("- pip:")[1].splitlines() if line.strip()]
    assert pip == main["dependencies"]
    instructor_only = [name for extra in main["optional-dependencies"].values() for name in extra]
    assert instructor_only and not any(name in environment or name in str(student) for name in instructor_only)


def test_nothing_for_instructors_only(members: dict[str, bytes]) -> None:
    tops = {name.removeprefix(TOP).split("/")[0] for name in members}
    assert tops == {"notebooks", "helpers", "README.md", "environment.yml", "pyproject.toml"}
    for name in members:
        parts = name.split("/")
        assert "__pycache__" not in parts and not name.endswith((".pyc", ".pyo")), name
        assert not any(part.startswith(".") for part in parts), name


def test_no_solution_hidden_test_or_grader_reference_in_any_text(members: dict[str, bytes]) -> None:
    texts = {name: data.decode("utf-8") for name, data in members.items() if not name.endswith(".pt")}
    weights = sorted(name for name in members if name.endswith(".pt"))
    packaged = (ROOT / "helpers" / "weights").glob("*.pt")
    assert weights == sorted(f"{TOP}helpers/weights/{path.name}" for path in packaged)
    for name, text in texts.items():
        for marker in FORBIDDEN:
            assert marker not in text, f"{marker!r} in {name}"


def test_student_pyproject_installs_only_helpers(members: dict[str, bytes]) -> None:
    student = release.tomllib.loads(members[TOP + "pyproject.toml"].decode("utf-8"))
    main = release.tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert student["tool"]["setuptools"]["packages"] == ["helpers", "helpers.tables", "helpers.weights"]
    assert student["tool"]["setuptools"]["package-data"] == {"helpers.tables": ["*.csv"], "helpers.weights": ["*.pt"]}
    assert student["project"]["dependencies"] == main["project"]["dependencies"]
    assert student["project"]["requires-python"] == main["project"]["requires-python"]
    assert student["build-system"] == main["build-system"]
    assert student["project"]["name"] != main["project"]["name"]
    assert student["project"]["readme"] == "README.md"
    assert "tool" not in student or "pytest" not in student["tool"]


def test_environment_yml_tells_students_to_install_the_package(members: dict[str, bytes]) -> None:
    assert "pip install -e ." in members[TOP + "environment.yml"].decode("utf-8")


def test_two_builds_at_the_same_date_give_identical_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796000000")
    first = release.build_release(tmp_path / "first.zip")
    assert release.build_release(tmp_path / "again.zip").read_bytes() == first.read_bytes()


def test_main_prints_path_count_and_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nested" / "cli.zip"
    assert release.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        assert f"{len(archive.namelist())} files" in printed
    assert str(out) in printed and f"{out.stat().st_size:,} bytes" in printed


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A scratch copy of what the release reads, to tamper with."""
    root = tmp_path / "tree"
    for folder in ("notebooks", "solutions", "helpers"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "environment.yml", "nbgrader_config.py", "docs/student_README.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    return root


def test_the_scratch_tree_builds_the_same_zip(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796000000")
    same = release.build_release(tmp_path / "from-root.zip").read_bytes()
    assert release.build_release(tree / "out.zip", root=tree).read_bytes() == same


@pytest.mark.parametrize("marker", ["### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "grader_tests"])
def test_refuses_a_notebook_with_a_solution_marker(
    tree: Path, marker: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tree / "notebooks" / "06_gradcam" / "gradcam.ipynb"
    notebook = json.loads(path.read_text())
    cell = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    cell["source"] = [f"{marker}\n"] + cell["source"]
    path.write_text(json.dumps(notebook, indent=1))
    out = tree / "out.zip"
    with pytest.raises(release.ReleaseError, match="make notebooks"):
        release.build_release(out, root=tree)
    assert not out.exists()
    monkeypatch.setattr(release, "ROOT", tree)
    assert release.main(["--out", str(out)]) == 1
    assert "gradcam.ipynb" in capsys.readouterr().err and not out.exists()


def test_refuses_stale_or_missing_notebooks(tree: Path) -> None:
    solved = tree / "solutions" / "03_filters" / "filters.ipynb"
    notebook = json.loads(solved.read_text())
    cell = next(cell for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    cell["source"] = ["# A new title\n"] + cell["source"]
    solved.write_text(json.dumps(notebook, indent=1))
    with pytest.raises(release.ReleaseError, match=r"filters\.ipynb is out of date"):
        release.build_release(tree / "out.zip", root=tree)
    shutil.copy2(ROOT / "solutions" / "03_filters" / "filters.ipynb", solved)
    (tree / "notebooks" / "02_parameters" / "parameters.ipynb").unlink()
    with pytest.raises(release.ReleaseError, match=r"parameters\.ipynb is missing"):
        release.build_release(tree / "out.zip", root=tree)


def test_refuses_a_helper_that_would_leak(tree: Path) -> None:
    (tree / "helpers" / "extra.py").write_text("from grader_tests.kernel.inputs import hidden_images\n")
    with pytest.raises(release.ReleaseError, match="grader_tests"):
        release.build_release(tree / "out.zip", root=tree)


def _run_cells(path: Path, fill: str | None = None) -> None:
    """Make ``path`` look like a student's working copy: outputs on every code cell, or ``fill`` written into
    the first task's stub (an answer, without any nbgrader marker)."""
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        if fill is None:
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ok\n"]}]
            cell["execution_count"] = 1
        elif "NotImplementedError" in "".join(cell["source"]):
            cell["source"] = [line for line in cell["source"] if "NotImplementedError" not in line] + [fill]
            break
    path.write_text(json.dumps(notebook, indent=1))


@pytest.mark.parametrize("fill", [None, "    return 42\n"], ids=["outputs", "answer"])
def test_refuses_a_working_copy(tree: Path, fill: str | None) -> None:
    """A notebooks/ folder in which someone worked (outputs, an answer) is not what students get."""
    _run_cells(tree / "notebooks" / "01_autograd" / "autograd.ipynb", fill)
    expected = "has outputs" if fill is None else "has other text: an answer"
    with pytest.raises(release.ReleaseError, match=rf"autograd\.ipynb is out of date or edited: cell \d+ .*{expected}"):
        release.build_release(tree / "out.zip", root=tree)
    assert not (tree / "out.zip").exists()


def test_the_student_readme_introduces_every_notebook_and_what_to_do_without_helpers(
        members: dict[str, bytes]) -> None:
    import re

    readme = members[TOP + "README.md"].decode("utf-8")
    intro = readme.split("## Set-up")[0]
    covered = set()
    for first, last in re.findall(r"\((\d\d)(?:-(\d\d))?\)", intro):
        covered |= set(range(int(first), int(last or first) + 1))
    assert covered == set(range(1, len(NOTEBOOKS) + 1))
    for path in NOTEBOOKS:  # and the table names each notebook's file
        assert f"`{path.relative_to(ROOT / 'notebooks').as_posix()}`" in readme
    assert "No module named 'helpers'" in readme and "%pip install -e" in readme
    for word in ("the seed", "lecture notes", "issue "):
        assert word not in readme.lower()
