"""The walkthrough's HTML: a clean page per executed notebook, an index, and a local MathJax (no network).

* :func:`cleaned`: the copy of an executed solved notebook that a reader sees: solution regions without their
  ``### BEGIN/END SOLUTION`` lines, test cells without their hidden block, no nbgrader metadata, and nothing
  that speaks of grading (Markdown cells tagged ``student-only``, the points of task and question headings): the
  walkthrough's reader is not graded. The student notebooks keep both.
* :func:`render_page`: nbconvert's ``lab`` page of it, its formulas typeset by the MathJax copy of
  :func:`copy_mathjax`, nothing loaded from the network (no require.js, Mermaid or widget scripts).
* :func:`summary` and :func:`write_index`: the index, one card per notebook with its goals (the "You will" list of
  its first cell), its run time in this build and a thumbnail of its main figure.

MathJax 3 comes from the ``django-static-mathjax`` package (its files only: no Django). Its ``tex-svg-full.js`` is
one file that holds the TeX input, every TeX extension and the SVG output with its fonts as paths, so a page
opened from a folder (``file://``) typesets without loading anything else.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.filters import markdown2html

MATHJAX_DISTRIBUTION = "django-static-mathjax"
MATHJAX_FILES = "mathjax/static/mathjax"
MATHJAX = "mathjax/tex-svg-full.js"
"""The MathJax file, relative to the pages."""

MATHJAX_HTML = """<script>
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]],
    displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
    processEscapes: true,
    processEnvironments: true,
    tags: "ams"
  },
  svg: {fontCache: "global"}
};
</script>
<script defer src="%s"></script>"""
"""MathJax 3 with the delimiters of Jupyter's Markdown (nbconvert's own configuration is for MathJax 2)."""

SOLUTION_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)
HIDDEN_TESTS = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.MULTILINE | re.DOTALL)
STUDENT_ONLY_TAG = "student-only"
"""The tag of a Markdown cell that only students need (what is graded and for how many points, what to do when
``import helpers`` fails): not on the pages."""
POINTS = re.compile(r"[ \t]*\(\d+(?:[ \t]*\+[ \t]*\d+)*[ \t]+points?\)")
"""The points of a task or question heading, "(2 points)", "(1 + 1 points)": dropped from the pages."""
GOALS_HEADING = re.compile(r"^\s*(\*\*You will\*\*|#+\s*(Goals|You will)\b.*)\s*$", re.IGNORECASE)

PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{#- nbconvert's lab page, with nothing that loads from the network -#}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{{ resources.walkthrough.mathjax }}
{%- endblock html_head_js_mathjax -%}
{%- block extra_css -%}
<style>
nav.walkthrough { max-width: 1100px; margin: 0 auto; padding: 8px 16px; font-family: var(--jp-ui-font-family);
                  display: flex; gap: 1.5em; font-size: 14px; white-space: nowrap; }
nav.walkthrough a { overflow: hidden; text-overflow: ellipsis; min-width: 0; }
nav.walkthrough .next { margin-left: auto; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.walkthrough.nav }}
{%- endblock body_header -%}
{%- block body_footer -%}
{{ resources.walkthrough.nav }}
{{ super() }}
{%- endblock body_footer -%}
"""


# --- MathJax ----------------------------------------------------------------------------------------------------


def mathjax_folder() -> Path:
    """The installed MathJax 3 files (``es5/tex-svg-full.js`` ...), or a ``SystemExit`` that says what to install."""
    try:
        folder = Path(importlib.metadata.distribution(MATHJAX_DISTRIBUTION).locate_file(MATHJAX_FILES))
    except importlib.metadata.PackageNotFoundError:
        folder = None
    if folder is None or not (folder / "es5" / "tex-svg-full.js").is_file():
        raise SystemExit(f"MathJax 3 is missing: pip install -e '.[instructor]' (it installs {MATHJAX_DISTRIBUTION})")
    return folder


def copy_mathjax(out: Path) -> Path:
    """Copy MathJax's one file and its licence into ``out/mathjax/``; returns the copied file."""
    source = mathjax_folder()
    target = out / MATHJAX
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "es5" / "tex-svg-full.js", target)
    shutil.copyfile(source / "LICENSE", target.parent / "LICENSE")
    return target


# --- pages ------------------------------------------------------------------------------------------------------


def cleaned(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What a reader sees of an executed solved notebook (a copy; the executed notebook is left as it ran).

    Solution cells keep their code without the ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines; test cells
    lose their ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` block (the grader's probe); cells lose their
    nbgrader metadata; Markdown cells tagged ``student-only`` go, and headings lose their points."""
    copy = nbformat.from_dict(notebook)
    copy.cells = [cell for cell in copy.cells
                  if not (cell.cell_type == "markdown" and STUDENT_ONLY_TAG in cell.metadata.get("tags", []))]
    for cell in copy.cells:
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "code":
            cell.source = HIDDEN_TESTS.sub("", SOLUTION_MARKER.sub("", cell.source)).strip("\n")
        elif cell.cell_type == "markdown":
            cell.source = POINTS.sub("", cell.source)
    copy.metadata.pop("widgets", None)
    return copy


def exporter() -> HTMLExporter:
    """nbconvert's ``lab`` HTML exporter with the walkthrough's page template."""
    return HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"walkthrough.html.j2": PAGE_TEMPLATE})],
                        template_file="walkthrough.html.j2")


def render_page(notebook: nbformat.NotebookNode, title: str, nav: str, html_exporter: HTMLExporter) -> str:
    """The HTML page of an executed notebook (cleaned here), typeset by the MathJax copy next to it."""
    resources = {"metadata": {"name": title},
                 "walkthrough": {"mathjax": MATHJAX_HTML % MATHJAX, "nav": nav}}
    body, _ = html_exporter.from_notebook_node(cleaned(notebook), resources=resources)
    return body


def short_title(title: str) -> str:
    """A title up to its colon, for the links between pages: "12 · Attributions" (the full title is the link's
    tooltip), so that the bar stays one line."""
    return title.split(":", 1)[0].strip()


def nav_bar(pages: list[tuple[str, str]], index: int) -> str:
    """Links to the index and to the previous and next pages of ``pages`` ((file, title) in course order)."""
    def link(page: str, title: str, text: str, css: str = "") -> str:
        return f'<a{css} href="{html.escape(page)}" title="{html.escape(title)}">{text}</a>'

    links = ['<a href="index.html">Visualizing CNNs: the walkthrough</a>']
    if index > 0:
        page, title = pages[index - 1]
        links.append(link(page, title, f"&larr; {html.escape(short_title(title))}"))
    if index + 1 < len(pages):
        page, title = pages[index + 1]
        links.append(link(page, title, f"{html.escape(short_title(title))} &rarr;", ' class="next"'))
    return f'<nav class="walkthrough">{" ".join(links)}</nav>'


# --- the index --------------------------------------------------------------------------------------------------


@dataclass
class Summary:
    """One notebook's card on the index."""

    page: str
    title: str
    goals_html: str
    seconds: float
    peak_mib: float
    thumbnail_png: bytes | None


def title(notebook: nbformat.NotebookNode, fallback: str) -> str:
    """The first ``# `` heading of the notebook's Markdown."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def goals(notebook: nbformat.NotebookNode) -> str:
    """The Markdown of the notebook's goals: the "**You will**" (or "## Goals") heading of its first Markdown cell
    and the list under it; without one, the first paragraph after the title."""
    first = next((cell.source for cell in notebook.cells if cell.cell_type == "markdown"), "")
    lines = first.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if GOALS_HEADING.match(line)), None)
    if start is None:  # the first paragraph that is not a heading
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", first) if p.strip() and not p.lstrip().startswith("#")]
        return paragraphs[0] if paragraphs else ""
    block: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            if block:
                break
            continue
        block.append(line)
    return lines[start - 1].strip() + "\n\n" + "\n".join(block)


def representative_figure(notebook: nbformat.NotebookNode, max_aspect: float = 2.5) -> bytes | None:
    """The PNG of the notebook's figure for the index: the image of a cell tagged ``thumbnail`` if there is one,
    else the largest image no wider than ``max_aspect`` times its height (a notebook's main result is usually its
    largest figure; a strip of small panels would shrink to a line), else the first image."""
    from PIL import Image  # matplotlib's dependency

    images = []  # (tagged, area, fits, png)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                png = base64.b64decode(output["data"]["image/png"])
                with Image.open(io.BytesIO(png)) as image:
                    width, height = image.size
                tagged = "thumbnail" in cell.metadata.get("tags", [])
                images.append((tagged, width * height, width <= max_aspect * height, png))
    if not images:
        return None
    for choice in ([i for i in images if i[0]], sorted((i for i in images if i[2]), key=lambda i: -i[1]), images):
        if choice:
            return choice[0][3]
    return None


def thumbnail(png: bytes, size: tuple[int, int] = (320, 220)) -> bytes:
    """``png`` scaled down to fit ``size``, as a PNG."""
    from PIL import Image  # matplotlib's dependency

    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("RGB")
        image.thumbnail(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def summary(notebook: nbformat.NotebookNode, page: str, name: str, seconds: float, peak_mib: float) -> Summary:
    """The index card of an executed notebook rendered to ``page``."""
    figure = representative_figure(notebook)
    return Summary(page=page, title=title(notebook, name), goals_html=markdown2html(goals(notebook)),
                   seconds=seconds, peak_mib=peak_mib, thumbnail_png=thumbnail(figure) if figure else None)


INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1000px;
       padding: 1em 1.5em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
article { display: flex; gap: 1.5em; padding: 1.2em 0; border-top: 1px solid #ddd; }
article figure { margin: 0; flex: 0 0 320px; text-align: center; }
article figure img { max-width: 320px; border: 1px solid #eee; }
article h2 { margin: 0 0 0.2em 0; font-size: 1.3em; }
article .meta { color: #666; font-size: 0.9em; margin: 0 0 0.5em 0; }
article .goals ol, article .goals ul { margin: 0.3em 0; padding-left: 1.4em; }
a { color: #1a5fb4; }
"""


def write_index(out: Path, cards: list[Summary]) -> Path:
    """``out/index.html``: the notebooks in course order, each with its goals, run time and a figure."""
    articles = []
    for card in cards:
        figure = ""
        if card.thumbnail_png:
            data = base64.b64encode(card.thumbnail_png).decode("ascii")
            figure = (f'<figure><a href="{html.escape(card.page)}"><img src="data:image/png;base64,{data}" '
                      f'alt="a figure of {html.escape(card.title)}"></a></figure>')
        articles.append(
            f'<article class="notebook">{figure}<div>\n'
            f'<h2><a href="{html.escape(card.page)}">{html.escape(card.title)}</a></h2>\n'
            f'<p class="meta">runs in {card.seconds:.1f} s (this build, kernel start included), '
            f'peak memory {card.peak_mib:.0f} MiB</p>\n'
            f'<div class="goals">{card.goals_html}</div>\n</div></article>'
        )
    text = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
        f"<title>Visualizing CNNs: the walkthrough</title>\n<style>{INDEX_CSS}</style>\n{MATHJAX_HTML % MATHJAX}\n"
        "</head><body>\n<h1>Visualizing CNNs: the walkthrough</h1>\n"
        "<p>The solved notebooks, executed, in course order: every cell, output and figure. To work through "
        "them yourself, open <code>notebooks/</code> in JupyterLab.</p>\n"
        + "\n".join(articles) + "\n</body></html>\n"
    )
    path = out / "index.html"
    path.write_text(text, encoding="utf-8")
    return path
