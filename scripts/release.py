"""Build the zip students get (``make release``).

    python scripts/release.py [--out PATH]

The zip holds one folder, ``visualizing-cnns/``: the student notebooks of a fresh ``nbgrader generate_assignment``
of solutions/ (never the working tree), the ``helpers`` package with its weights, README.md (from
docs/student_README.md), and a pyproject.toml and environment.yml that install ``helpers`` with the student
dependencies only (not the instructor's or maintainer's extras). Never solutions/, grader_tests/, tests or the
nbgrader set-up. It refuses when notebooks/ differs from the fresh generation: a working copy with answers or
outputs, or one not regenerated after an edit of solutions/. Its entries are dated when it is built (JupyterLab
shows each file as modified then), or at ``SOURCE_DATE_EPOCH`` where that is set; otherwise it is deterministic:
sorted entries, fixed permissions, so two builds of the same tree at the same date give identical bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest, a course dependency, brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # grader_tests.engine.course generates the notebooks; it is not in the zip
TOP = "visualizing-cnns"
DEFAULT_OUT = Path("build") / "release" / "visualizing-cnns-student.zip"
STUDENT_NAME = "visualizing-cnns-student"
STUDENT_README = Path("docs") / "student_README.md"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "grader_tests")
TEXT_SUFFIXES = {".py", ".ipynb", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".json"}
REGENERATE = (
    "run `make notebooks` (it overwrites notebooks/ with fresh student versions; keep your own work elsewhere)"
    " before `make release`"
)


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


def fresh_notebooks(root: Path) -> dict[str, bytes]:
    """``{notebooks/<assignment>/<name>.ipynb: bytes}`` of a fresh generation of ``root/solutions`` in a scratch
    folder (with a scratch gradebook), exactly what ``make notebooks`` writes."""
    from grader_tests.engine.course import generate

    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        out = Path(scratch) / "notebooks"
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as log:
                generate(out, f"sqlite:///{Path(scratch) / 'gradebook.db'}", quiet=True, root=root)
        except SystemExit as failure:
            why = f"{failure}\n{log.getvalue()[-2000:]}"
            raise ReleaseError(f"generating the student notebooks failed: {why}") from None
        return {f"notebooks/{path.relative_to(out).as_posix()}": path.read_bytes() for path in out.glob("*/*.ipynb")}


def _difference(fresh: bytes, committed: bytes) -> str:
    """The first way a committed student notebook differs from its fresh generation, in words."""
    try:
        mine = json.loads(committed)["cells"]
    except (ValueError, KeyError, TypeError):
        return "it is not a readable notebook"
    cells = json.loads(fresh)["cells"]
    if len(cells) != len(mine):
        return f"{len(mine)} cells, a fresh generation has {len(cells)}"
    for index, (cell, other) in enumerate(zip(cells, mine)):
        name = _nbgrader(cell).get("grade_id") or cell["cell_type"]
        if other.get("outputs"):
            return f"cell {index} ({name}) has outputs: a notebook that was run"
        if _source(cell) != _source(other):
            return f"cell {index} ({name}) has other text: an answer, or an edit not regenerated"
        if cell != other:
            return f"cell {index} ({name}) has other metadata"
    return "its notebook metadata differs"


def check_notebooks(root: Path) -> dict[str, bytes]:
    """The student notebooks to release, ``{path in the course: bytes}``, from a fresh generation of solutions/.

    Raises :class:`ReleaseError` if ``root/notebooks`` holds a solution marker or differs from that generation
    in any byte: the release never ships a working copy.
    """
    folder = root / "notebooks"
    committed = {f"notebooks/{path.relative_to(folder).as_posix()}": path for path in student_notebooks(root)}
    if not committed:
        raise ReleaseError(f"no student notebooks in {root / 'notebooks'}: {REGENERATE}")
    problems = []
    for name, path in committed.items():
        text = path.read_text(encoding="utf-8")
        problems += [f"{name} contains {marker!r}" for marker in MARKERS if marker in text]
    if not problems:  # generating takes seconds: only for a tree that passes the cheap check
        fresh = fresh_notebooks(root)
        problems += [f"{name} is missing ({name.replace('notebooks/', 'solutions/', 1)} exists)"
                     for name in sorted(fresh.keys() - committed.keys())]
        problems += [f"{name} has no solutions/ source" for name in sorted(committed.keys() - fresh.keys())]
        problems += [f"{name} is out of date or edited: {_difference(fresh[name], committed[name].read_bytes())}"
                     for name in sorted(fresh.keys() & committed.keys()) if fresh[name] != committed[name].read_bytes()]
    if problems:
        raise ReleaseError("student notebooks not fit for release:\n  " + "\n  ".join(problems) + f"\n{REGENERATE}")
    return fresh


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
    """A pyproject.toml that installs only ``helpers`` and its weights, with the student dependencies of the main
    pyproject (not its instructor or maintainer extras) and its build system."""
    main = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project, build = main["project"], main["build-system"]
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
    lines += [
        f"dependencies = {_toml_list(project['dependencies'])}",
        "",
        "[tool.setuptools]",
        'packages = ["helpers", "helpers.tables", "helpers.weights"]',
        "",
        "[tool.setuptools.package-data]",
        '"helpers.tables" = ["*.csv"]',
        '"helpers.weights" = ["*.pt"]',
    ]
    return "\n".join(lines) + "\n"


def student_environment(root: Path) -> str:
    """A conda environment.yml with the student dependencies, for ``conda env create -f environment.yml``."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pip = "".join(f"      - {name}\n" for name in project["dependencies"])
    return (
        "# Conda users: `conda env create -f environment.yml && conda activate visualizing-cnns && pip install -e .`\n"
        "# (the same packages as pyproject.toml; see README.md for a CPU-only PyTorch, which is enough)\n"
        "name: visualizing-cnns\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n"
        + pip
    )


def release_files(root: Path) -> dict[str, bytes]:
    """Every file of the release: its path in the zip -> its bytes. Raises :class:`ReleaseError` on a leak."""
    files = {f"{TOP}/{name}": data for name, data in check_notebooks(root).items()}
    files |= {f"{TOP}/{path.relative_to(root).as_posix()}": path.read_bytes() for path in helper_files(root)}
    files[f"{TOP}/environment.yml"] = student_environment(root).encode("utf-8")
    files[f"{TOP}/README.md"] = (root / STUDENT_README).read_bytes()
    files[f"{TOP}/pyproject.toml"] = student_pyproject(root).encode("utf-8")
    for name, data in files.items():
        if Path(name).suffix in TEXT_SUFFIXES:
            text = data.decode("utf-8")
            leaks = [marker for marker in MARKERS if marker in text]
            if leaks:
                raise ReleaseError(f"{name} would leak {', '.join(map(repr, leaks))} to students")
    return files


def build_date(epoch: float | None = None) -> tuple[int, int, int, int, int, int]:
    """The date of the zip's entries, local time: ``epoch`` (seconds), else ``SOURCE_DATE_EPOCH`` where set (for
    reproducible builds), else now. Zip dates start in 1980 and count seconds in twos."""
    if epoch is None:
        epoch = float(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    date = time.localtime(max(epoch, time.mktime((1980, 1, 1, 0, 0, 0, 0, 0, -1))))
    return (*date[:5], date.tm_sec - date.tm_sec % 2)


def write_zip(files: dict[str, bytes], out: Path, date: tuple[int, ...] | None = None) -> None:
    """Write ``files`` to ``out``: sorted names, every entry dated ``date`` (default :func:`build_date`), fixed
    permissions, deflated."""
    date = date or build_date()
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=date)
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
