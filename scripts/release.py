"""Build the zip students get (``make release``).

    python scripts/release.py [--out PATH]

The zip holds one folder, ``visualizing-cnns/``: the student notebooks exactly as committed in notebooks/, the
``helpers`` package with its weights, environment.yml, README.md (from docs/student_README.md) and a student
pyproject.toml that installs only ``helpers``, with the dependencies of the course's pyproject.toml. Never
solutions/, grader_tests/, tests or the nbgrader set-up. Before zipping, a cheap check that notebooks/ holds no
solution or hidden test and matches the cells of solutions/. The zip is deterministic: sorted entries, fixed
timestamps and permissions, so two builds of the same tree give identical bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest, a course dependency, brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TOP = "visualizing-cnns"
DEFAULT_OUT = Path("build") / "release" / "visualizing-cnns-student.zip"
STUDENT_NAME = "visualizing-cnns-student"
STUDENT_README = Path("docs") / "student_README.md"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "grader_tests")
TEXT_SUFFIXES = {".py", ".ipynb", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".json"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
REGENERATE = "run `make notebooks` (and commit notebooks/) before `make release`"


class ReleaseError(RuntimeError):
    """The tree is not fit for a release; the message says why and what to do."""


def student_notebooks(root: Path) -> list[Path]:
    """The student notebooks ``notebooks/<assignment>/<name>.ipynb``, sorted."""
    return sorted(path for path in (root / "notebooks").glob("*/*.ipynb") if not path.parent.name.startswith("."))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _stale(solution: Path, student: Path) -> str | None:
    """Why ``student`` was not generated from the current ``solution``, or None when its cells match."""
    solved, released = _cells(solution), _cells(student)
    if len(solved) != len(released):
        return f"{len(released)} cells, the solution has {len(solved)}"
    for index, (cell, mine) in enumerate(zip(solved, released)):
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id")
        if cell["cell_type"] != mine["cell_type"] or grade_id != _nbgrader(mine).get("grade_id"):
            return f"cell {index} ({grade_id or cell['cell_type']}) differs in kind or grade_id from the solution"
        source = _source(cell)
        if not meta.get("solution") and "### BEGIN" not in source and source != _source(mine):
            return f"cell {index} ({grade_id or cell['cell_type']}) has other text than in the solution"
    return None


def check_notebooks(root: Path) -> list[Path]:
    """Return the student notebooks; raise :class:`ReleaseError` if one leaks a solution or looks out of date."""
    notebooks = student_notebooks(root)
    if not notebooks:
        raise ReleaseError(f"no student notebooks in {root / 'notebooks'}: {REGENERATE}")
    problems = []
    for path in notebooks:
        text = path.read_text(encoding="utf-8")
        problems += [f"{path.relative_to(root)} contains {marker!r}" for marker in MARKERS if marker in text]
    solutions = root / "solutions"
    if solutions.is_dir():
        solved = {path.relative_to(solutions) for path in solutions.glob("*/*.ipynb")}
        released = {path.relative_to(root / "notebooks") for path in notebooks}
        problems += [f"notebooks/{name} is missing (solutions/{name} exists)" for name in sorted(solved - released)]
        problems += [f"notebooks/{name} has no solutions/{name}" for name in sorted(released - solved)]
        for name in sorted(solved & released):
            why = _stale(solutions / name, root / "notebooks" / name)
            if why:
                problems.append(f"notebooks/{name} is out of date: {why}")
    if problems:
        raise ReleaseError("student notebooks not fit for release:\n  " + "\n  ".join(problems) + f"\n{REGENERATE}")
    return notebooks


def helper_files(root: Path) -> list[Path]:
    """The files of the helpers package, weights included, without caches, compiled or hidden files."""
    package = root / "helpers"
    files = sorted(
        path
        for path in package.rglob("*")
        if path.is_file()
        and path.suffix not in {".pyc", ".pyo"}
        and not any(part == "__pycache__" or part.startswith(".") for part in path.relative_to(package).parts)
    )
    if package / "__init__.py" not in files or not any(path.match("weights/*.pt") for path in files):
        raise ReleaseError(f"{package} lacks __init__.py or weights/*.pt")
    return files


def _toml_list(values: list[str]) -> str:
    return "[\n" + "".join(f"    {json.dumps(value)},\n" for value in values) + "]"


def student_pyproject(root: Path) -> str:
    """A pyproject.toml that installs only ``helpers``, with the main pyproject's dependencies and build system."""
    main = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project, build = main["project"], main["build-system"]
    package_data = main["tool"]["setuptools"]["package-data"]["helpers"]
    lines = [
        '# The student package of "Visualizing CNNs": `pip install -e .` installs the helpers the notebooks import',
        "# and everything they need. Generated by the course's release script from its own pyproject.toml.",
        "[build-system]",
        f"requires = {json.dumps(build['requires'])}",
        f"build-backend = {json.dumps(build['build-backend'])}",
        "",
        "[project]",
        f"name = {json.dumps(STUDENT_NAME)}",
        f"version = {json.dumps(project['version'])}",
        'description = "Visualizing CNNs, student edition: the notebooks and the helpers package they import."',
        'readme = "README.md"',
    ]
    for key in ("requires-python", "license"):
        if isinstance(project.get(key), str):
            lines.append(f"{key} = {json.dumps(project[key])}")
    lines.append(f"dependencies = {_toml_list(project['dependencies'])}")
    extras = project.get("optional-dependencies", {})
    if extras:
        lines += ["", "[project.optional-dependencies]"]
        lines += [f"{json.dumps(extra)} = {_toml_list(values)}" for extra, values in sorted(extras.items())]
    lines += [
        "",
        "[tool.setuptools]",
        'packages = ["helpers"]',
        "",
        "[tool.setuptools.package-data]",
        f"helpers = {json.dumps(package_data)}",
    ]
    return "\n".join(lines) + "\n"


def release_files(root: Path) -> dict[str, bytes]:
    """Every file of the release: its path in the zip -> its bytes. Raises :class:`ReleaseError` on a leak."""
    files = {f"{TOP}/{path.relative_to(root).as_posix()}": path.read_bytes() for path in check_notebooks(root)}
    files |= {f"{TOP}/{path.relative_to(root).as_posix()}": path.read_bytes() for path in helper_files(root)}
    files[f"{TOP}/environment.yml"] = (root / "environment.yml").read_bytes()
    files[f"{TOP}/README.md"] = (root / STUDENT_README).read_bytes()
    files[f"{TOP}/pyproject.toml"] = student_pyproject(root).encode("utf-8")
    for name, data in files.items():
        if Path(name).suffix in TEXT_SUFFIXES:
            text = data.decode("utf-8")
            leaks = [marker for marker in MARKERS if marker in text]
            if leaks:
                raise ReleaseError(f"{name} would leak {', '.join(map(repr, leaks))} to students")
    return files


def write_zip(files: dict[str, bytes], out: Path) -> None:
    """Write ``files`` to ``out`` deterministically: sorted names, fixed times and permissions, deflated."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, so the permissions below are read
                info.external_attr = 0o100644 << 16
                archive.writestr(info, files[name], compresslevel=9)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the zip is meant to be shared
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build_release(out: Path = DEFAULT_OUT, root: Path = ROOT) -> Path:
    """Check the tree at ``root`` and write the student zip to ``out`` (relative paths: under ``root``)."""
    out = out if out.is_absolute() else root / out
    write_zip(release_files(root), out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: build the zip, print its path, number of files and size; exit 1 with the reason if unfit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"the zip to write (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        out = build_release(args.out.resolve() if args.out else DEFAULT_OUT, root=ROOT)
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(out) as archive:
        count = len(archive.namelist())
    size = out.stat().st_size
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"{shown}: {count} files, {size / 1024:.0f} KiB ({size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
