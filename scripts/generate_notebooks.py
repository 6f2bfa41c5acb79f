"""Generate the student versions: every assignment of solutions/ -> notebooks/ (``make notebooks``).

    python scripts/generate_notebooks.py [--release-dir DIR] [--db URL]

Runs ``nbgrader generate_assignment`` for each assignment through nbgrader's API, in one process
(:func:`grader_tests.engine.course.generate`): solutions become stubs that raise
``NotImplementedError("write <function>: ...")``, hidden tests disappear, outputs are cleared, graded cells are
locked and checksummed. The options let the tests generate into a scratch folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grader_tests.engine.course import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release-dir", type=Path, help="write here instead of notebooks/")
    parser.add_argument("--db", help="gradebook URL (default: build/grading/gradebook.db)")
    args = parser.parse_args()
    generate(args.release_dir, args.db)


if __name__ == "__main__":
    main()
