"""What a reader sees speaks to that reader.

* The walkthrough's pages (the solved notebooks as :mod:`pages` renders them, from their stored outputs) carry no
  grading vocabulary in their prose: no "Graded: ...", no points, no hidden checks, no grader. The student
  notebooks keep what students need (tasks, points), in cells tagged ``student-only`` that the pages leave out.
* No notebook, solved or student, speaks of documents its reader does not have: the course's sources ("the
  seed", "the seeds' lecture notes", "the seed hooks ..."), lecture notes, issue numbers, dates, "the README"
  other than the README.md of the course folder (the student zip holds one, the repository too). "Random seed",
  ``torch.manual_seed`` and "scenes of seed 707" are fine.
* Every code line of the notebooks fits 100 characters: a student's JupyterLab at 1280 px with the file browser
  open cuts longer lines off, assert messages included.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
SOLVED = sorted((ROOT / "solutions").glob("*/*.ipynb"))
STUDENT = sorted((ROOT / "notebooks").glob("*/*.ipynb"))
MAX_CODE_LINE = 100

pages = load_script("pages")

GRADING_WORDS = {
    "graded / grader / grading": re.compile(r"\bgrad(?:ed|er|ing)\b", re.IGNORECASE),
    "hidden check or test": re.compile(r"\bhidden (?:checks?|tests?)\b", re.IGNORECASE),
    "points of a task": re.compile(r"\(\s*\d+(?:\s*\+\s*\d+)*\s*points?\s*\)|\b\d+ points?\s*[.:)]", re.IGNORECASE),
    "nbgrader": re.compile(r"\bnbgrader\b", re.IGNORECASE),
}
"""Words of grading, which the walkthrough's prose (its Markdown and outputs) must not use."""

COURSE_INTERNAL_WORDS = {
    "the seed(s) as a document": re.compile(
        r"\bseeds?'s?(?!\w)|\bseed notes\b|\((?:as in )?the seeds?\)|\bseed names\b|\bseed_to_\w|_to_seed_names\b"
        r"|\bthe seeds?\s+(?:notes?|recipe|hooks?|asserts?|computes?|does|do|instead|code|says?|calls?)\b",
        re.IGNORECASE),
    "lecture notes": re.compile(r"\blecture notes?\b", re.IGNORECASE),
    "an issue number": re.compile(r"\bissues?\s*#?\s*\d+|\b[\w.-]+/[\w.-]+#\d+\b", re.IGNORECASE),
    "a date": re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b"),
    "a README the reader lacks": re.compile(r"\bREADME\b(?!\.md of the course folder)"),
}
"""Words of the course's making, which no reader has the documents for: in no notebook, nowhere."""


def _hits(text: str, words: dict[str, re.Pattern]) -> list[str]:
    found = []
    for name, pattern in words.items():
        for match in pattern.finditer(text):
            start, end = max(0, match.start() - 50), match.end() + 30
            found.append(f"{name}: ...{' '.join(text[start:end].split())}...")
    return found


def _outputs_text(cell: nbformat.NotebookNode) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append(output["text"])
        for kind in ("text/plain", "text/markdown", "text/html"):
            if kind in output.get("data", {}):
                texts.append(output["data"][kind])
        texts.extend(output.get("traceback", []))
    return "\n".join(t if isinstance(t, str) else "".join(t) for t in texts)


def _page_prose(page: str) -> str:
    """The text of a rendered page's Markdown cells and outputs: what the reader reads, not the code."""
    soup = BeautifulSoup(page, "html.parser")
    for code in soup.select(".jp-InputArea-editor, .jp-CodeMirrorEditor, script, style"):
        code.decompose()
    return soup.get_text(" ")


def test_the_rules_catch_what_they_are_for_and_pass_legitimate_uses():
    """A check that cannot fail is no check: every rule on a phrase it is for, and the legitimate uses it lets by."""
    caught = {
        "Graded: four code tests (2 + 2 + 1 + 1 points)": "graded",
        "### Task 1 · `gradient_at` (2 points)": "points",
        "**Question (2 points).**": "points",
        "Conventions the hidden check enforces:": "hidden",
        "the grader runs it inside `torch.no_grad()`": "grad",
    }
    for text, rule in caught.items():
        assert any(rule in hit.split(":")[0] for hit in _hits(text, GRADING_WORDS)), text
    internal = {
        "The seed asserts $(1, 3, 224, 224)$": "seed", "the seeds' recipe": "seed", "the seed's VGG-11": "seed",
        "The seed hooks `bn5_2`": "seed", "As the seed notes put it": "seed", "(the seed)": "seed", "a 2x2 max-pool (as in the seed)": "seed",
        "the seed names of the layers": "seed", "torchvision_to_seed_names(state)": "seed",
        "The seeds' lecture notes say": "lecture", "see issue 26": "issue", "jupyter/nbgrader#917": "issue",
        "measured on 2026-12-07": "date", "the README lists what each option reached": "README",
    }
    for text, rule in internal.items():
        assert any(rule in hit.split(":")[0] for hit in _hits(text, COURSE_INTERNAL_WORDS)), text
    fine = ("torch.manual_seed(0)", "48 scenes of seed 707, the random seed", "the same seed, the same map",
            "other generator seeds", "another seed or another initialisation", "a point drawn at random",
            "a Riemann sum over $m$ points", "a few points on the biased data", "the upgraded model",
            "The README.md of the course folder says more.", "a gradient points back", "seeds 101-108")
    for text in fine:
        assert _hits(text, GRADING_WORDS) + _hits(text, COURSE_INTERNAL_WORDS) == [], text


@pytest.mark.parametrize("path", SOLVED, ids=lambda path: path.parent.name)
def test_a_walkthrough_page_speaks_to_its_reader(path: Path):
    """The page rendered from the solved notebook's stored outputs: no grading words in its prose, no course-internal
    words anywhere on it, no hidden test, and the student-only cells left out."""
    notebook = nbformat.read(path, as_version=4)
    page = pages.render_page(notebook, pages.title(notebook, path.parent.name), "", pages.exporter())
    prose = _page_prose(page)
    whole = BeautifulSoup(page, "html.parser").get_text(" ")
    problems = _hits(prose, GRADING_WORDS) + _hits(whole, COURSE_INTERNAL_WORDS)
    assert problems == [], f"{path.parent.name}'s page:\n" + "\n".join(problems)
    assert "HIDDEN TESTS" not in page and "grader_tests" not in page
    tagged = [cell for cell in notebook.cells if pages.STUDENT_ONLY_TAG in cell.metadata.get("tags", [])]
    assert tagged, f"{path.parent.name}: no student-only cell (what is graded, what to do when helpers is missing)"
    assert "No module named 'helpers'" not in prose


@pytest.mark.parametrize("path", SOLVED + STUDENT, ids=lambda path: f"{path.parts[-3]}/{path.parent.name}")
def test_a_notebook_names_nothing_its_reader_does_not_have(path: Path):
    """Markdown, code and outputs of every notebook: no course-internal words; the first cells say what to do when
    ``import helpers`` fails."""
    notebook = nbformat.read(path, as_version=4)
    problems = []
    for index, cell in enumerate(notebook.cells):
        for hit in _hits(cell.source + "\n" + _outputs_text(cell), COURSE_INTERNAL_WORDS):
            problems.append(f"cell {index}: {hit}")
    assert problems == [], f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)
    first = "\n".join(cell.source for cell in notebook.cells[:3] if cell.cell_type == "markdown")
    assert "No module named 'helpers'" in first and "pip install" in first


@pytest.mark.parametrize("path", sorted((ROOT / "helpers").rglob("*.py")), ids=lambda path: path.name)
def test_the_course_package_names_nothing_its_reader_does_not_have(path: Path):
    """``helpers`` ships in the student zip: its docstrings (``help()``, ``?``) and messages reach students too."""
    assert _hits(path.read_text(), COURSE_INTERNAL_WORDS) == []


@pytest.mark.parametrize("path", SOLVED, ids=lambda path: path.parent.name)
def test_what_the_code_prints_speaks_no_grading_words(path: Path):
    """Solved notebooks are stored without outputs, so the pages above are checked without them: here the texts the
    code can print or raise (its string literals, the hidden blocks left out as the pages leave them out) are held
    to the prose's rules. ``tests/test_walkthrough.py`` checks an executed page, outputs included."""
    notebook = nbformat.read(path, as_version=4)
    problems = []
    for index, cell in enumerate(pages.cleaned(notebook).cells):
        if cell.cell_type != "code":
            continue
        strings = [node.value for node in ast.walk(ast.parse(cell.source))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)]
        problems += [f"cell {index}: {hit}" for text in strings for hit in _hits(text, GRADING_WORDS)]
    assert problems == [], f"{path.parent.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", SOLVED + STUDENT, ids=lambda path: f"{path.parts[-3]}/{path.parent.name}")
def test_code_lines_fit_100_characters(path: Path):
    notebook = nbformat.read(path, as_version=4)
    long = [f"cell {index}: {len(line)} characters: {line[:60]}..."
            for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > MAX_CODE_LINE]
    assert long == [], f"{path.relative_to(ROOT)}: {len(long)} code lines over {MAX_CODE_LINE}:\n" + "\n".join(long)
