"""In a real browser (Chromium driven by Playwright, :mod:`browser_support`): a student's first minutes in
JupyterLab, and the walkthrough's formulas typeset offline.

Skipped, with the way to enable it, where Playwright or Chromium is missing; a failing step leaves a screenshot
and the page's HTML in ``build/test-screenshots/``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser_support import ROOT, JupyterLab, chromium, screenshot_on_failure, why_no_browser

pytestmark = pytest.mark.skipif(why_no_browser() is not None, reason=f"browser test: {why_no_browser()}")

ASSIGNMENT, NOTEBOOK = "01_autograd", "autograd.ipynb"  # the first notebook, whose first task comes early
FIRST_FUNCTION = "gradient_at"
SOLUTION = '''def gradient_at(f, x):
    point = x.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(f(point), point)
    return gradient'''
CHECK_PASSED = "gradient_at: shape, a linear function and no side effects on x ok"  # its check cell's print

ERROR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
KERNEL_IDLE = re.compile(r"\| Idle$")
TIMEOUT_MS = 60_000


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module", autouse=True)
def walkthrough(tmp_path_factory):
    """The walkthrough page of ``ASSIGNMENT`` (``scripts/walkthrough.py --only``), rendered in the background
    while the JupyterLab test runs; call it for the page's folder."""
    out = tmp_path_factory.mktemp("walkthrough")
    with open(out / "walkthrough.log", "wb") as log:
        render = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "walkthrough.py"), "--only", ASSIGNMENT,
                                   "--out", str(out)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def rendered() -> Path:
        if render.wait(timeout=300) != 0:
            pytest.fail(f"scripts/walkthrough.py failed:\n{(out / 'walkthrough.log').read_text()[-3000:]}")
        return out

    yield rendered
    if render.poll() is None:
        render.kill()
        render.wait()


def test_run_all_names_the_first_function_then_a_typed_solution_passes_its_check(tmp_path, browser):
    from playwright.sync_api import expect

    student = tmp_path / "notebooks"  # a copy: the repository is never touched
    shutil.copytree(ROOT / "notebooks" / ASSIGNMENT, student)
    with JupyterLab(student, tmp_path / "jupyter") as lab:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        with screenshot_on_failure(page, "jupyterlab-run-all", focus=f".jp-Notebook {ERROR_OUTPUT}"):
            page.goto(lab.url(NOTEBOOK))
            kernel_status = page.locator('.jp-StatusBar-TextItem[title^="Change kernel for"]')
            expect(kernel_status).to_have_text(KERNEL_IDLE)

            # Run > Run All Cells: it stops at the first unfinished task, with an error naming the function.
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            cells = page.locator(".jp-Notebook .jp-Cell")
            expect(page.locator(f".jp-Notebook {ERROR_OUTPUT}").first).to_be_visible()
            expect(kernel_status).to_have_text(KERNEL_IDLE)
            failing = cells.evaluate_all("(cells, sel) => cells.flatMap((c, i) => c.querySelector(sel) ? [i] : [])",
                                         ERROR_OUTPUT)
            assert len(failing) == 1, f"Run All must stop at the first error, errors in cells {failing}"
            check = cells.nth(failing[0])
            error = check.locator(ERROR_OUTPUT).inner_text()
            named = re.search(r"NotImplementedError: write (\w+)", error)
            assert named, f"the error does not name the function to write:\n{error}"
            assert named[1] == FIRST_FUNCTION, error
            assert cells.nth(failing[0] + 1).locator(".jp-OutputArea-output").count() == 0, "a cell after ran"

            # Type the solution into the function's cell (select all, then the text: CodeMirror would
            # re-indent keystrokes), run it and its check with Shift+Enter, as a student does.
            todo = cells.nth(failing[0] - 1)
            editor = todo.locator(".cm-content")
            expect(editor).to_contain_text(f"def {FIRST_FUNCTION}(")
            editor.click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(SOLUTION)
            expect(editor).to_contain_text("return gradient")
            page.keyboard.press("Shift+Enter")  # runs the function's cell, selects the check cell
            page.keyboard.press("Shift+Enter")  # runs the check cell
            expect(check.locator(".jp-OutputArea-output")).to_contain_text(CHECK_PASSED)
            expect(kernel_status).to_have_text(KERNEL_IDLE)
            expect(todo.locator(ERROR_OUTPUT)).to_have_count(0)
            expect(check.locator(ERROR_OUTPUT)).to_have_count(0)
            page.close()


def test_walkthrough_formulas_are_typeset_offline(walkthrough, browser):
    from playwright.sync_api import expect

    out = walkthrough()
    context = browser.new_context()
    requests: list[str] = []
    context.route(re.compile(r"^(https?|wss?)://"), lambda route: (requests.append(route.request.url), route.abort()))
    page = context.new_page()
    with screenshot_on_failure(page, "walkthrough-formulas"):
        page.goto((out / f"{ASSIGNMENT}.html").as_uri())
        assert not requests, f"the page asks the network for {requests}"
        expect(page.locator("mjx-container").first).to_be_attached(timeout=TIMEOUT_MS)
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=TIMEOUT_MS)
        page.evaluate("() => MathJax.startup.promise")  # every formula typeset
        assert page.locator("mjx-container").count() >= 10
        assert page.locator("mjx-container [data-mml-node=merror]").count() == 0, "a formula with a TeX error"
        prose = "\n".join(page.locator(".jp-MarkdownCell .jp-RenderedMarkdown").all_inner_texts())
        assert prose.strip(), "no Markdown cells on the page"
        raw = re.findall(r"\$[^$\n]+\$|\\\(.+?\\\)", prose)
        assert not raw, f"formulas left as raw TeX: {raw[:5]}"
        assert not requests, f"the page asks the network for {requests}"
    context.close()
