"""Nothing a submission carries runs in a browser: the instructor's (formgrader) or the student's (feedback).

A hostile submission of ``01_autograd`` puts every vector we know of where a student can: its markdown answers
(``<script>``, ``<img onerror>``, ``<svg>`` with a script and an ``onload``, a ``javascript:`` link, iframes, a
form, ``<details ontoggle>``), a raw HTML cell of its own, and its answer code's outputs (``text/html``,
``image/svg+xml``, ``application/javascript`` and ``text/markdown`` with scripts). Each vector, if it ran, would
record its name in ``window.__pwned``, log ``PWNED <name>`` and set the title; the script of the first answer
also tries formgrader's API to give the student full marks. The submission is graded by the real pipeline, then:

* its feedback page is opened in Chromium: no vector ran (clicking what is left of the link and the form
  included), no dialog, nothing asked of the network, while the student's formulas are typeset by MathJax, its
  PNG image and table are there, and the page carries its Content-Security-Policy;
* the same notebook rendered by nbgrader's stock feedback template runs the vectors: the control that shows the
  vectors are live and the test can fail;
* formgrader, in a real Jupyter server with nbgrader's extension and the course's ``nbgrader_config.py``, shows the
  submission: no vector ran and no grade in the gradebook changed, while the same API calls made by the page's
  own code do change it (the attack was live);
* a page with the feedback's policy and unsanitised vectors runs only its own script (the second wall).

Unit tests of :mod:`grader_tests.engine.sanitize` check each vector and the benign content one by one.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from pathlib import Path

import nbformat
import pytest
from browser_support import JupyterLab, chromium, screenshot_on_failure, why_no_browser
from conftest import grading_in

from grader_tests.engine.sanitize import (
    RemoveActiveContent, clean_html, content_security_policy, with_content_security_policy,
)

ROOT = Path(__file__).resolve().parents[1]
A, NOTEBOOK, STUDENT = "01_autograd", "autograd", "mallory"
TIMEOUT_MS = 60_000

# A 2x2 red PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR42mP8z8DAwMDAxMDAwMDAAAANHQEDaB7T3gAAAABJRU5ErkJggg=="


def mark(name: str) -> str:
    """JavaScript that records that vector ``name`` ran."""
    return (f"(window.__pwned=window.__pwned||[]).push('{name}');console.log('PWNED {name}');"
            f"document.title='PWNED {name}';void 0")  # void: a javascript: link to it keeps the page


# What the student's script does in formgrader: every grade of the submission to full marks, through the API.
FULL_MARKS = (
    "if (typeof base_url !== 'undefined') {"
    " fetch(base_url + '/api/grades?submission_id=' + submission_id).then(r => r.json()).then(grades =>"
    " Promise.all(grades.map(g => fetch(base_url + '/api/grade/' + g.id, {method: 'PUT',"
    " headers: {'X-XSRFToken': (document.cookie.match(/_xsrf=([^;]*)/) || [])[1], 'Content-Type': 'application/json'},"
    " body: JSON.stringify({manual_score: g.max_score, extra_credit: 5})}).then(r => r.status))))"
    ".then(statuses => { window.__granted = statuses; }, error => { window.__granted = String(error); }); }"
)

ANSWER = f"""The gradients accumulate: $\\nabla_W L = \\sum_i \\nabla_W \\ell_i$, so each step starts from zero.

| step | gradient |
|------|----------|
| 1    | fresh    |

![a red square](data:image/png;base64,{PNG})

<script>{mark('md-script')}; {FULL_MARKS}</script>
<img src="x" onerror="{mark('md-onerror')}">
<svg onload="{mark('md-svg-onload')}"><script>{mark('md-svg-script')}</script></svg>
<a href="javascript:{mark('md-js-link')}">click me</a>
<iframe srcdoc="<script>parent.eval(&quot;{mark('md-iframe')}&quot;)</script>"></iframe>
<iframe src="javascript:parent.eval(&quot;{mark('md-iframe-src')}&quot;)"></iframe>
<form action="javascript:{mark('md-form')}"><input name="q" value="1"><button>send</button></form>
<details open ontoggle="{mark('md-ontoggle')}"><summary>more</summary>detail</details>
"""

SECOND_ANSWER = "One is $\\partial L / \\partial W$, the other $$\\frac{\\partial s_c}{\\partial I}.$$"
RAW_HTML = f"<script>{mark('raw-script')}</script><img src=x onerror=\"{mark('raw-onerror')}\"><b>raw html</b>"

HTML_OUTPUT = (f"<script>{mark('html-output-script')}</script><img src=x onerror=\"{mark('html-output-onerror')}\">"
               "<table><tr><td>html output table</td></tr></table>")
SVG_OUTPUT = (f'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8" onload="{mark("svg-output-onload")}">'
              f'<script>{mark("svg-output-script")}</script><rect width="8" height="8"/></svg>')
MARKDOWN_OUTPUT = f"<script>{mark('markdown-output')}</script>\n\n**markdown output**"
OUTPUTS = f"""

from IPython.display import HTML, SVG, Javascript, Markdown, display
display(HTML({HTML_OUTPUT!r}))
display(SVG({SVG_OUTPUT!r}))
display(Javascript({mark('javascript-output')!r}))
display(Markdown({MARKDOWN_OUTPUT!r}))
"""

VECTORS_IN_THE_STOCK_PAGE = {  # fire in nbgrader's own feedback page (the control), without a click
    "md-script", "md-onerror", "md-svg-onload", "md-svg-script", "md-iframe", "md-iframe-src", "md-ontoggle",
    "html-output-script", "html-output-onerror", "markdown-output",
}  # (nbconvert cleans raw cells even there; an SVG output is shown as an image, which runs nothing)
CLICKED = {"md-js-link", "md-form"}  # fire there once clicked


def hostile_submission() -> nbformat.NotebookNode:
    """The perfect ``01_autograd`` with every vector where a student can put it."""
    from grader_tests.engine.fabricated_class import perfect

    nb = perfect(A)
    cells = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell for cell in nb.cells}
    cells["answer_zero_grad"].source = ANSWER
    cells["answer_two_gradients"].source = SECOND_ANSWER
    cells["gradient_at"].source += OUTPUTS  # an answer cell before the last test: it runs when graded
    raw = nbformat.v4.new_raw_cell(RAW_HTML, metadata={"raw_mimetype": "text/html"})
    nb.cells.insert(nb.cells.index(cells["answer_two_gradients"]) + 1, raw)
    return nb


# --- the sanitiser on its own --------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile, left_out", [
    ("<script>alert(1)</script>", "alert"),
    ("<img src=x onerror=alert(1)>", "onerror"),
    ("<svg><script>alert(1)</script></svg>", "alert"),
    ("<svg onload=alert(1)><circle r=1 /></svg>", "onload"),
    ("<math><mi xlink:href='javascript:alert(1)'>x</mi></math>", "javascript"),
    ("<a href='javascript:alert(1)'>x</a>", "javascript"),
    ("<a href=' JaVaScRiPt:alert(1)'>x</a>", "alert"),
    ("<a href='data:text/html,<script>alert(1)</script>'>x</a>", "data:"),
    ("<img src='data:text/html;base64,PHNjcmlwdD4='>", "data:"),
    ("<iframe src='https://example.org'></iframe>", "iframe"),
    ("<iframe srcdoc='<script>alert(1)</script>'></iframe>", "iframe"),
    ("<form action='https://example.org'><input name=a><button>go</button></form>", "form"),
    ("<form><button formaction='javascript:alert(1)'>go</button></form>", "button"),
    ("<object data='x.swf'></object><embed src='x.swf'>", "x.swf"),
    ("<details open ontoggle=alert(1)><summary>s</summary></details>", "ontoggle"),
    ("<base href='https://example.org/'>", "base"),
    ("<meta http-equiv='refresh' content='0;url=https://example.org'>", "refresh"),
    ("<link rel=stylesheet href='https://example.org/x.css'>", "link"),
    ("<style>body{background:url(https://example.org/x)}</style>", "example.org"),
    ("<div style='position:fixed;top:0;background:url(https://example.org/x)'>x</div>", "position"),
    ("<p title='</p><script>alert(1)</script>'>x</p>", "<script"),
    ("<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">", "onerror"),
    ("<!--<img src=x onerror=alert(1)>-->", "onerror"),
    ("<h2 id='base_url'>shadow a global</h2>", 'id="base_url"'),
    ("<a href='page.html'>a page submitted beside the notebook</a>", "page.html"),
    ("<a href='/files/build/grading/autograded/x/page.html'>x</a>", "/files/"),
    ("<a href='//example.org/x'>x</a>", "example.org"),
])
def test_the_sanitiser_removes_each_vector(hostile, left_out):
    cleaned = str(clean_html(hostile))
    assert left_out.lower() not in cleaned.lower(), cleaned
    assert not re.search(r"<script|<[^>]*\son\w+\s*=", cleaned, re.IGNORECASE), cleaned


UNCHANGED = [
    "<p>The loss $L = \\sum_i x_i^2$ and $$\\frac{a}{b}$$</p>",
    "<p>$a &lt; b$ &amp; c</p>",
    f'<img src="data:image/png;base64,{PNG}" alt="dot" width="20">',
    "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>",
    "<ul><li><strong>b</strong> <em>i</em> <code>c</code></li></ul>",
    '<div class="highlight"><pre><span class="n">x</span></pre></div>',
]


@pytest.mark.parametrize("benign, kept", [(html, html) for html in UNCHANGED] + [
    ('<table><tr><th style="text-align: right; position: fixed">a</th></tr></table>',  # Markdown's alignment
     '<table><tbody><tr><th style="text-align:right">a</th></tr></tbody></table>'),
    ('<a href="https://pytorch.org">docs</a>', '<a href="https://pytorch.org" rel="noopener noreferrer">docs</a>'),
    ('<h2 id="Results">Results<a class="anchor-link" href="#Results">¶</a></h2>',
     '<h2 id="user-content-Results">Results'
     '<a class="anchor-link" href="#user-content-Results" rel="noopener noreferrer">¶</a></h2>'),
])
def test_the_sanitiser_keeps_formulas_images_tables_and_markdown(benign, kept):
    assert str(clean_html(benign)) == kept


def test_the_preprocessor_drops_what_is_not_html_from_the_copy_shown():
    cell = nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("display_data", data={
            "application/javascript": "alert(1)", "application/vnd.jupyter.widget-view+json": {"model_id": "m"},
            "text/vnd.mermaid": "graph TD; A-->B", "text/html": "<b>kept</b><script>alert(1)</script>",
            "text/plain": "x"}, metadata={"text/html": {"isolated": True}}),
        nbformat.v4.new_output("display_data", data={"image/png": PNG},
                               metadata={"image/png": {"width": "1 onerror=alert(1)", "height": 12, "alt": "dot"},
                                         "filenames": {"image/png": "https://example.org/x.png"}}),
    ])
    raw = nbformat.v4.new_raw_cell("<script>alert(1)</script><b>raw</b>", metadata={"raw_mimetype": "text/html"})
    graded = nbformat.v4.new_markdown_cell("answer", metadata={"nbgrader": {"grade_id": '"><script>alert(1)</script>'}})
    nb = nbformat.v4.new_notebook(cells=[cell, raw, graded], metadata={"widgets": {"state": {}}})
    cell.execution_count = "<img src=x onerror=alert(1)>"  # nbformat would refuse it; a student's JSON need not
    nb, _ = RemoveActiveContent().preprocess(nb, {})
    html, png = nb.cells[0].outputs
    assert dict(html.data) == {"text/html": "<b>kept</b>", "text/plain": "x"} and html.metadata == {}
    assert png.metadata == {"image/png": {"height": 12, "alt": "dot"}}
    assert nb.cells[0].execution_count is None
    assert nb.cells[1].source == "<b>raw</b>"
    assert re.fullmatch(r"[\w.\-]+", nb.cells[2].metadata.nbgrader.grade_id)
    assert "widgets" not in nb.metadata


def test_the_policy_lets_only_the_nonced_scripts_run_and_forbids_plugins_frames_and_forms():
    policy = dict(part.split(" ", 1) for part in content_security_policy("N0nce").split("; "))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'nonce-N0nce'"
    assert policy["object-src"] == policy["frame-src"] == policy["form-action"] == policy["base-uri"] == "'none'"
    page = ('<html><head><script nonce="@csp-nonce@">x</script><script nonce="@csp-nonce@" src="m.js"></script>'
            "</head><body>@csp-nonce@</body></html>")
    out = with_content_security_policy(page, "N0nce", scripts=2)
    assert out.startswith('<html><head>\n<meta http-equiv="Content-Security-Policy"')
    assert out.count('nonce="N0nce"') == 2
    assert out.endswith("<body>@csp-nonce@</body></html>")  # the body's text untouched
    with pytest.raises(ValueError, match="Content-Security-Policy"):
        with_content_security_policy(page.replace("<head>", "<head><title>@csp-nonce@</title>"), "N0nce", scripts=2)


def test_the_policy_alone_stops_scripts_that_got_past_the_sanitiser(browser, tmp_path):
    """The second wall: a page with the policy and unsanitised vectors runs only its own nonced script."""
    hostile = (f"<script>{mark('inline')}</script><img src=x onerror=\"{mark('onerror')}\">"
               f"<a href=\"javascript:{mark('js-link')}\">click me</a>"
               f"<iframe srcdoc=\"<script>parent.eval(&quot;{mark('iframe')}&quot;)</script>\"></iframe>"
               f"<form action=\"javascript:{mark('form')}\"><button>send</button></form>"
               f"<object data=\"data:text/html,<script>{mark('object')}</script>\"></object>")
    page_html = with_content_security_policy(
        '<html><head><script nonce="@csp-nonce@">window.__ours = true</script></head>'
        f"<body>{hostile}</body></html>", nonce="n0nce", scripts=1)
    (tmp_path / "page.html").write_text(page_html)
    context, page, seen = _open(browser, (tmp_path / "page.html").as_uri())
    with screenshot_on_failure(page, "html-safety-policy"):
        page.wait_for_timeout(500)
        _click_what_is_left(page)
        assert page.evaluate("() => window.__ours") is True
        assert _fired(page, seen) == set() and seen["dialogs"] == []
    context.close()


# --- a graded hostile submission in the browser --------------------------------------------------------------


def _needs_sandbox_and_browser() -> None:
    from grader_tests.engine.sandbox import unavailable

    if unavailable():
        pytest.skip(f"grading needs the sandbox: {unavailable()}")
    if why_no_browser():
        pytest.skip(why_no_browser())


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The hostile submission graded by the real pipeline: (grading folder, autograded notebook)."""
    _needs_sandbox_and_browser()
    from grader_tests.engine import grade as G

    with grading_in(tmp_path_factory.mktemp("grading")) as grading:
        submissions = tmp_path_factory.mktemp("submissions")
        folder = submissions / STUDENT / A
        folder.mkdir(parents=True)
        nbformat.write(hostile_submission(), folder / f"{NOTEBOOK}.ipynb")
        state = G.grade(submissions, workers=1, timeout=60)
        assert state.entries[f"{STUDENT}/{A}"]["status"] == "graded", state.entries
        autograded = grading / "autograded" / STUDENT / A / f"{NOTEBOOK}.ipynb"
        text = autograded.read_text()
        for vector in ("html-output-script", "svg-output-script", "javascript-output", "raw-script", "md-script"):
            assert vector in text, f"the graded notebook lost the {vector} vector: the test would test nothing"
        yield grading, autograded


@pytest.fixture(scope="module")
def browser():
    if why_no_browser():
        pytest.skip(why_no_browser())
    with chromium() as browser:
        yield browser


def _open(browser, url: str, network_allowed: str | None = None) -> tuple:
    """A page at ``url`` with its console, dialogs and network requests (other than ``network_allowed``) recorded."""
    context = browser.new_context()
    seen: dict[str, list] = {"console": [], "dialogs": [], "requests": []}

    def route(request_route):
        if network_allowed and request_route.request.url.startswith(network_allowed):
            return request_route.continue_()
        seen["requests"].append(request_route.request.url)
        return request_route.abort()

    context.route(re.compile(r"^(https?|wss?)://"), route)
    page = context.new_page()
    page.on("console", lambda message: seen["console"].append(message.text))
    page.on("dialog", lambda dialog: (seen["dialogs"].append(dialog.message), dialog.dismiss()))
    page.goto(url)
    return context, page, seen


def _click_what_is_left(page) -> None:
    """Click the link and the form's button, where they still are (a student would ask the reader to)."""
    for text in ("click me", "send"):
        target = page.get_by_text(text, exact=True)
        if target.count():
            target.first.click(timeout=5_000, no_wait_after=True)
    page.wait_for_timeout(500)


def _fired(page, seen) -> set[str]:
    ran = set(page.evaluate("() => window.__pwned || []"))
    ran |= {line.split(" ", 1)[1] for line in seen["console"] if line.startswith("PWNED ")}
    return ran


def test_the_feedback_page_runs_no_student_script_and_still_typesets_its_formulas(graded, browser):
    from playwright.sync_api import expect

    grading, _ = graded
    page_path = grading / "feedback" / STUDENT / A / f"{NOTEBOOK}.html"
    html = page_path.read_text()
    assert '<meta http-equiv="Content-Security-Policy"' in html.split("</head>")[0]
    assert (grading / "feedback" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000  # one for the tree
    assert not (page_path.parent / "mathjax").exists()
    context, page, seen = _open(browser, page_path.as_uri())
    with screenshot_on_failure(page, "html-safety-feedback"):
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=TIMEOUT_MS)
        page.evaluate("() => MathJax.startup.promise")
        _click_what_is_left(page)
        assert _fired(page, seen) == set() and seen["dialogs"] == []
        assert not page.title().startswith("PWNED")
        assert seen["requests"] == []
        # Only the page's own two scripts; no frame, form, plugin, or event handler left in the document.
        assert page.locator("script").count() == 2 and page.locator("script:not([nonce])").count() == 0
        assert page.locator("iframe, form, object, embed, input, button, svg script").count() == 0
        handlers = page.evaluate("""() => [...document.querySelectorAll('*')].flatMap(
            e => [...e.attributes].filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))""")
        assert handlers == []
        assert page.locator("a[href^='javascript' i]").count() == 0
        # The student's formulas typeset, image and table kept, ordinary markdown rendered.
        answer = page.locator(".nbgrader_cell", has_text="The gradients accumulate")
        expect(answer.locator("mjx-container").first).to_be_attached(timeout=TIMEOUT_MS)
        assert answer.locator("mjx-container [data-mml-node=merror]").count() == 0
        second = page.locator(".nbgrader_cell", has_text="One is")
        assert second.locator("mjx-container").count() == 2
        assert answer.locator(f"img[src='data:image/png;base64,{PNG}']").count() == 1
        image_width = answer.locator("img[alt='a red square']").evaluate("img => img.naturalWidth")
        assert image_width == 2
        assert answer.locator("table td", has_text="fresh").count() == 1
        assert page.locator("b", has_text="raw html").count() == 1
        assert page.locator(".output_markdown strong", has_text="markdown output").count() == 1
        assert page.locator("td", has_text="html output table").count() == 1
    context.close()


def test_the_same_notebook_in_nbgraders_stock_feedback_page_runs_the_vectors(graded, browser, tmp_path):
    """The control: without the sanitising and the policy, the vectors are live in this browser."""
    import nbgrader
    from nbconvert.exporters import HTMLExporter

    _, autograded = graded
    notebook = nbformat.read(autograded, as_version=4)
    for cell in notebook.cells:  # what nbgrader's GetGrades adds from the gradebook, which the template shows
        if "nbgrader" in cell.metadata:
            cell.metadata.nbgrader.update(score=0, comment=None)
    templates = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"
    stock = HTMLExporter(template_name="feedback", extra_template_basedirs=[str(templates)],  # as nbgrader sets it
                         extra_template_paths=[str(templates.parent / "static" / "node_modules" / "bootstrap" / "dist"
                                                   / "css")])
    page_html, _ = stock.from_notebook_node(notebook, resources={
        "nbgrader": {"notebook": NOTEBOOK, "score": 0, "max_score": 0, "late_penalty": 0}})
    (tmp_path / "stock.html").write_text(page_html)
    context, page, seen = _open(browser, (tmp_path / "stock.html").as_uri())
    with screenshot_on_failure(page, "html-safety-stock-feedback"):
        page.wait_for_timeout(1_000)
        _click_what_is_left(page)
        fired = _fired(page, seen)
        assert fired >= VECTORS_IN_THE_STOCK_PAGE | CLICKED, sorted(fired)
    context.close()


def _grades(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return sorted(db.execute("SELECT id, auto_score, manual_score, extra_credit, needs_manual_grade FROM grade"))


def test_formgrader_shows_the_submission_without_running_it_and_no_grade_changes(graded, browser, tmp_path):
    from nbgrader.api import Gradebook
    from playwright.sync_api import expect

    grading, _ = graded
    database = grading / "gradebook.db"
    with Gradebook(f"sqlite:///{database}") as gradebook:
        submission = gradebook.find_submission_notebook(NOTEBOOK, A, STUDENT).id
    before = _grades(database)
    assert before and any(row[1] is None for row in before)  # the written answers, waiting for a manual score
    # jupyter lab from the course folder: formgrader reads nbgrader_config.py there (VISUALIZING_CNNS_GRADING,
    # set by grading_in, points it at this test's gradebook); nbgrader's server extensions are enabled.
    with JupyterLab(ROOT, tmp_path / "jupyter") as lab:
        base = f"http://127.0.0.1:{lab.port}"
        context, page, seen = _open(browser, f"{base}/login", network_allowed=base)
        page.fill("input[name=password]", lab.token)  # logged in as an instructor is (a cookie for the API calls)
        page.locator("button[type=submit], input[type=submit]").first.click()
        page.wait_for_load_state()
        page.goto(f"{base}/formgrader/submissions/{submission}/")
        with screenshot_on_failure(page, "html-safety-formgrader"):
            expect(page.locator(".nbgrader_cell", has_text="The gradients accumulate")).to_be_visible(
                timeout=TIMEOUT_MS)
            page.wait_for_function("() => window.jQuery && window.Backbone", timeout=TIMEOUT_MS)  # its own scripts ran
            page.wait_for_timeout(2_000)  # what a script of the student's would have needed to finish
            _click_what_is_left(page)
            page.wait_for_timeout(1_000)
            assert _fired(page, seen) == set() and seen["dialogs"] == []
            assert page.evaluate("() => window.__granted === undefined")
            assert page.locator("#notebook-container script, iframe, form, object, embed").count() == 0
            answer = page.locator(".nbgrader_cell", has_text="The gradients accumulate")
            assert answer.locator(f"img[src='data:image/png;base64,{PNG}']").count() == 1
            assert answer.locator("table td", has_text="fresh").count() == 1
            assert "\\nabla_W L" in answer.inner_text()  # the formula's text (formgrader's MathJax is on a CDN)
            mathjax_cdn = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/"
            assert [url for url in seen["requests"] if not url.startswith(mathjax_cdn)] == []
            assert _grades(database) == before, "a grade changed when formgrader showed the submission"
            # The control: the same calls made from the page's own context do change the grades.
            page.evaluate(f"() => {{ {FULL_MARKS} }}")
            page.wait_for_function("() => window.__granted !== undefined", timeout=TIMEOUT_MS)
            statuses = page.evaluate("() => window.__granted")
            assert statuses == [200] * len(before), statuses
            assert _grades(database) != before
        context.close()
