"""Generate the student versions: every assignment of solutions/ -> notebooks/ (``make notebooks``).

    python scripts/generate_notebooks.py [--release-dir DIR] [--db URL]

Runs ``nbgrader generate_assignment`` for each assignment through nbgrader's API, in one process: solutions
become ``raise NotImplementedError()`` stubs, hidden tests disappear, outputs are cleared, graded cells are
locked and checksummed. The options let the tests generate into a scratch folder.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config, PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]


def assignments() -> list[str]:
    """Assignment ids in course order: the folders of solutions/."""
    return sorted(path.name for path in (ROOT / "solutions").iterdir() if path.is_dir() and any(path.glob("*.ipynb")))


def generate(release_dir: Path | None = None, db_url: str | None = None, quiet: bool = False) -> None:
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    overrides = Config()
    if release_dir is not None:
        overrides.CourseDirectory.release_directory = str(Path(release_dir).resolve())
    if db_url is not None:
        overrides.CourseDirectory.db_url = db_url
    config.merge(overrides)
    (ROOT / "build").mkdir(exist_ok=True)
    # nbgrader runs `alembic` as a subprocess to create a new gradebook: find the one next to this Python
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    for assignment in assignments():
        result = api.generate_assignment(assignment, force=True)
        if not result["success"]:
            sys.exit(f"generating {assignment} failed:\n{result.get('error') or result.get('log')}")
        if not quiet:
            print(f"generated {assignment}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release-dir", type=Path, help="write here instead of notebooks/")
    parser.add_argument("--db", help="gradebook URL (default: build/gradebook.db)")
    args = parser.parse_args()
    generate(args.release_dir, args.db)


if __name__ == "__main__":
    main()
