"""The walkthrough (``scripts/walkthrough.py``) and the feedback pages: offline (MathJax from a local copy, nothing
loaded from the network), no nbgrader markers or hidden tests in the pages, an index with each notebook's goals,
run time and a figure, and no kernel warnings while it builds."""

from __future__ import annotations

import base64
import html
import io
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "02_parameters"  # the fastest solved notebook: formulas, solutions, hidden tests and figures
FORBIDDEN = ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "grader_tests", "check_get_module_params_num")


pages = load_script("pages")


class _Resources(HTMLParser):
    """Every URL a page loads: ``<script src>``, ``<link href>``, ``<img src>`` ..., and the inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "data"):
            if values.get(name):
                self.loaded.append(values[name])
        if tag == "link" and values.get("href"):
            self.loaded.append(values["href"])
        self._in_script = tag == "script" and not values.get("src")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_scripts.append(data)


def _resources(page: str) -> _Resources:
    parser = _Resources()
    parser.feed(page)
    return parser


def _text(page: str) -> str:
    """The page's text, as a reader sees it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _assert_offline(page: str, folder: Path, mathjax: str = pages.MATHJAX) -> None:
    """Nothing the page loads is on the network; its scripts are the local MathJax ``mathjax`` (relative to
    ``folder``), which exists."""
    found = _resources(page)
    remote = [url for url in found.loaded if re.match(r"(https?:)?//", url.strip(), re.IGNORECASE)]
    assert remote == []
    scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", page)
    assert scripts == [mathjax]
    assert (folder / mathjax).stat().st_size > 1_000_000
    assert not [script for script in found.inline_scripts if re.search(r"https?://|import\(", script)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("walkthrough")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "walkthrough.py"), "--only", NOTEBOOK, "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_only_renders_the_named_notebook_prints_its_time_and_both_memory_peaks_and_no_kernel_warning(built):
    out, result = built
    assert sorted(path.name for path in out.glob("*.html")) == [f"{NOTEBOOK}.html", "index.html"]
    row = re.search(rf"^{NOTEBOOK}/parameters\.ipynb\s+\d+\.\d\s+(\d+)\s+(\d+)$", result.stdout, re.MULTILINE)
    peak, private = int(row.group(1)), int(row.group(2))
    assert 100 < private < peak  # torch's heap alone is over 100 MiB; the resident set also counts library pages
    assert "WARNING" not in result.stderr and "encryption" not in result.stdout + result.stderr


def test_a_page_shows_the_solutions_without_markers_and_no_hidden_test(built):
    out, _ = built
    page = (out / f"{NOTEBOOK}.html").read_text()
    assert not [word for word in FORBIDDEN if word in page]
    solved = nbformat.read(ROOT / "solutions" / NOTEBOOK / "parameters.ipynb", as_version=4)
    solution = next(cell.source for cell in solved.cells if "### BEGIN SOLUTION" in cell.source)
    body = solution.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0].strip().splitlines()
    text = _text(page)
    assert body and all(line.strip() in text for line in body)  # the solution code is shown
    assert "nbgrader" not in page


def test_an_executed_page_speaks_to_its_reader_outputs_included(built):
    """The rules of ``tests/test_reader_text.py`` on a page built from an executed notebook (the solved notebooks
    are stored without outputs): no grading words in its prose and outputs, nothing its reader lacks."""
    from test_reader_text import COURSE_INTERNAL_WORDS, GRADING_WORDS, _hits, _page_prose

    out, _ = built
    page = (out / f"{NOTEBOOK}.html").read_text()
    assert "jp-OutputArea-output" in page  # outputs are there to be read
    assert _hits(_page_prose(page), GRADING_WORDS) + _hits(_text(page), COURSE_INTERNAL_WORDS) == []


def test_pages_load_nothing_from_the_network_and_use_the_local_mathjax(built):
    out, _ = built
    for name in (f"{NOTEBOOK}.html", "index.html"):
        _assert_offline((out / name).read_text(), out)
    assert "Apache License" in (out / "mathjax" / "LICENSE").read_text()


def test_the_index_lists_each_notebook_with_its_goals_run_time_and_a_figure(built):
    from PIL import Image

    out, result = built
    index = (out / "index.html").read_text()
    card = re.search(r'<article class="notebook">.*?</article>', index, re.DOTALL).group(0)
    assert f'href="{NOTEBOOK}.html"' in card and "The model and its parameters" in _text(card)
    assert "You will" in _text(card) and "get_module_params_num(module)" in _text(card)  # the goals
    seconds = re.search(r"runs in (\d+\.\d) s", card).group(1)
    assert re.search(rf"^{NOTEBOOK}/parameters\.ipynb\s+{re.escape(seconds)}\s", result.stdout, re.MULTILINE)
    thumbnail = re.search(r'<img src="data:image/png;base64,([^"]+)"', card).group(1)
    with Image.open(io.BytesIO(base64.b64decode(thumbnail))) as image:
        assert image.format == "PNG" and image.width <= 320 and image.height <= 220


def test_only_names_the_choices_for_an_unknown_notebook(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "walkthrough.py"), "--only", "07_nothing", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0 and "01_autograd" in result.stderr and not list(tmp_path.iterdir())


def test_cleaning_drops_markers_and_hidden_blocks_but_not_from_the_executed_notebook():
    solution = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
    test = ("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nfrom grader_tests.kernel.x import check_f\n\ncheck_f(f)\n"
            "### END HIDDEN TESTS\nprint('f ok')")
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(solution), nbformat.v4.new_code_cell(test)])
    executed.cells[0].metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": "f"}
    shown = pages.cleaned(executed)
    assert [cell.source for cell in shown.cells] == ["def f(x):\n    return 2 * x", "assert f(1) == 2\nprint('f ok')"]
    assert "nbgrader" not in shown.cells[0].metadata
    assert "### BEGIN SOLUTION" in executed.cells[0].source and "nbgrader" in executed.cells[0].metadata


def test_cleaning_drops_what_only_students_need_the_student_only_cells_and_the_points():
    new = nbformat.v4
    executed = new.new_notebook(cells=[
        new.new_markdown_cell("# 5 · Saliency\n\nWhy."),
        new.new_markdown_cell("Graded: four code tests (2 + 2 + 1 + 1 points).\n\nIf `import helpers` fails ..."),
        new.new_markdown_cell("### Task 1 · `gradient_at` (2 points)\n\nWrite it at a point (a 2 points grid)."),
        new.new_markdown_cell("**Question 1 (1 point).** Why?\n\n**Question (1 + 2 points).** And?"),
        new.new_code_cell("print('(2 points)')  # code is left as it is"),
    ])
    executed.cells[1].metadata["tags"] = [pages.STUDENT_ONLY_TAG]
    shown = pages.cleaned(executed)
    assert [cell.source for cell in shown.cells] == [
        "# 5 · Saliency\n\nWhy.",
        "### Task 1 · `gradient_at`\n\nWrite it at a point (a 2 points grid).",
        "**Question 1.** Why?\n\n**Question.** And?",
        "print('(2 points)')  # code is left as it is",
    ]
    assert len(executed.cells) == 5 and "(2 points)" in executed.cells[2].source  # the executed notebook is kept


def test_the_navigation_names_the_neighbours_by_their_short_titles():
    titles = [("01_a.html", "1 · Autograd: where gradients come from"), ("02_b.html", "2 · The model"),
              ("03_c.html", "3 · Filters: the first layer")]
    nav = pages.nav_bar(titles, 1)
    assert "&larr; 1 · Autograd</a>" in nav and "3 · Filters &rarr;</a>" in nav
    assert 'title="1 · Autograd: where gradients come from"' in nav
    assert "white-space: nowrap" in pages.PAGE_TEMPLATE

def test_goals_come_from_the_you_will_list_of_the_first_cell():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# 9 · A topic\n\nWhy it matters.\n\n**You will**\n\n1. do $x^2$;\n2. see why.\n\n**Graded:** all of it."
    )])
    assert pages.goals(notebook) == "**You will**\n\n1. do $x^2$;\n2. see why."
    notebook.cells[0].source = "# 9 · A topic\n\nWhy it matters.\n\nMore."
    assert pages.goals(notebook) == "Why it matters."


def test_feedback_pages_share_one_mathjax_copy_per_feedback_tree(tmp_path):
    import nbgrader
    from nbconvert.writers import FilesWriter

    from grader_tests.engine.nbgrader_plugins import FeedbackExporter

    formgrader = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
    exporter = FeedbackExporter(  # configured as nbgrader's GenerateFeedback configures its exporter
        template_name="feedback", extra_template_basedirs=[str(formgrader / "templates")],
        extra_template_paths=[str(formgrader / "static" / "node_modules" / "bootstrap" / "dist" / "css")],
    )
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("The gradient $\\partial s_c / \\partial I$ of $$s_c = \\sum_k w_k A_k.$$"),
        nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")]),
    ])
    resources = {"nbgrader": {"notebook": "demo", "score": 1.0, "max_score": 2.0, "late_penalty": 0}}
    page, resources = exporter.from_notebook_node(notebook, resources)
    feedback = tmp_path / "feedback"
    for student in ("alice", "bob"):  # feedback/<student>/<assignment>/<notebook>.html, as nbgrader writes them
        FilesWriter(build_directory=str(feedback / student / "06_gradcam")).write(page, resources, notebook_name="demo")
    for student in ("alice", "bob"):
        _assert_offline((feedback / student / "06_gradcam" / "demo.html").read_text(), feedback / student / "06_gradcam",
                        mathjax="../../mathjax/tex-svg-full.js")
    installed = pages.mathjax_folder() / "es5" / "tex-svg-full.js"
    assert (feedback / "mathjax" / "tex-svg-full.js").read_bytes() == installed.read_bytes()
    copies = [path.relative_to(feedback).as_posix() for path in feedback.rglob("*.js")]
    assert copies == ["mathjax/tex-svg-full.js"]  # one copy for the tree, none beside the pages
    assert "$\\partial s_c / \\partial I$" in page  # left to MathJax, which reads $...$ (its configuration)
    assert 'inlineMath: [["$", "$"]' in page


def test_feedback_pages_written_by_nbgrader_share_the_copy_and_wrap_error_outputs(tmp_path):
    """Inside nbgrader's converter (the exporter's parent knows the page's folder) the shared copy is written once,
    straight into ``feedback/mathjax/``; error outputs wrap in full."""
    from grader_tests.engine.nbgrader_plugins import FEEDBACK_CSS, FeedbackExporter

    from traitlets.config import Configurable

    class Converter(Configurable):  # what the exporter asks of nbgrader's GenerateFeedback, its parent
        def _format_dest(self, assignment: str, student: str) -> str:
            return str(tmp_path / "feedback" / student / assignment)

    exporter = FeedbackExporter(template_name="lab", parent=Converter())
    reason = "vis_gradcam returned a map of the right shape but wrong values " * 4
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("check()", outputs=[
        nbformat.v4.new_output("error", ename="AssertionError", evalue=reason, traceback=[reason])])])
    page, resources = exporter.from_notebook_node(notebook, {"nbgrader": {"student": "alice", "assignment": "a1"}})
    assert pages.MATHJAX not in resources.get("outputs", {}) and "../../mathjax/tex-svg-full.js" not in resources.get(
        "outputs", {})
    shared = tmp_path / "feedback" / "mathjax" / "tex-svg-full.js"
    assert shared.read_bytes() == FeedbackExporter.mathjax()
    written = shared.stat().st_mtime_ns
    exporter.from_notebook_node(notebook, {"nbgrader": {"student": "bob", "assignment": "a1"}})
    assert shared.stat().st_mtime_ns == written  # not rewritten for the next page
    assert [p.name for p in shared.parent.iterdir()] == ["tex-svg-full.js"]  # no temporary file left
    head = page.split("</head>")[0]
    assert FEEDBACK_CSS in head and "white-space: pre-wrap" in FEEDBACK_CSS


def test_progress_inside_a_notebook_is_a_line_every_ten_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    walkthrough = load_script("walkthrough")
    report = walkthrough.progress_printer("14_shortcut/shortcut.ipynb (14/14)", every=10.0)
    for cell, seconds in [(1, 0.0), (2, 4.0), (3, 10.5), (4, 12.0), (5, 19.9), (6, 20.6), (7, 31.0)]:
        report(cell, 7, seconds)
    assert capsys.readouterr().out.splitlines() == [
        "  ... 14_shortcut/shortcut.ipynb (14/14): cell 3 of 7, 10 s",
        "  ... 14_shortcut/shortcut.ipynb (14/14): cell 6 of 7, 21 s",
        "  ... 14_shortcut/shortcut.ipynb (14/14): cell 7 of 7, 31 s",
    ]
