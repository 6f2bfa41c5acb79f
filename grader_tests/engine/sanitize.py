"""What a submission carries, made inert before a browser shows it: the feedback pages and nbgrader's formgrader.

A student writes the markdown answers, the code whose outputs are rendered, and every byte of the notebook's
JSON. Shown unfiltered, a ``<script>``, an ``<img onerror=...>``, an ``<svg>`` with a script or a
``javascript:`` link would run in the instructor's Jupyter session (formgrader's API sets scores; the terminals
extension opens a shell) and in the student's feedback page. Three pieces, put in place by ``nbgrader_config.py``
on nbconvert's ``HTMLExporter``, which both nbgrader's feedback and its formgrader build from that file:

* :func:`clean_html`, the ``clean_html`` filter of the templates (with ``HTMLExporter.sanitize_html`` on, the
  filter of ``text/html`` and ``text/markdown`` outputs and of raw cells): ``nh3`` (the Rust ``ammonia``
  sanitiser) keeps text, formulas (``$...$`` is text, MathJax typesets it later), tables, lists, code,
  images (``data:image/...`` included) and links to ``http``, ``https`` and ``mailto``; it removes scripts and
  their text, styles, event handlers, ``javascript:`` and other URL schemes, ``data:`` anywhere but an image,
  links to a relative path (formgrader serves the files submitted beside a notebook at such paths),
  iframes, objects, embeds, forms and their fields, SVG and MathML, comments; element ids get a ``user-content-``
  prefix (a student's ``id`` cannot shadow a name the page's own scripts use) and in-page links follow it.
* :class:`SafeMarkdown`, the ``markdown2html`` filter: nbconvert's own Markdown rendering, then
  :func:`clean_html`. nbgrader's feedback and formgrade templates render markdown cells with ``markdown2html``
  alone (they replace the block where nbconvert would call ``clean_html``), so the filter itself must clean.
* :class:`RemoveActiveContent`, a preprocessor for the paths that are not HTML strings: outputs keep only the
  types the page shows as text, HTML, formulas or images (no JavaScript, widgets or Mermaid; no ``isolated``
  HTML in an iframe; no file references), image sizes are numbers (nbconvert writes them unquoted), execution
  counts are numbers, widget state leaves the notebook's metadata, attachments are images, and a grade id is
  one word.

The feedback pages add a Content-Security-Policy (:func:`content_security_policy`) as a second wall.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import nh3
from jinja2 import pass_context
from markupsafe import Markup
from nbconvert.preprocessors import Preprocessor
from nbformat.notebooknode import NotebookNode
from traitlets.config import LoggingConfigurable

ID_PREFIX = "user-content-"
"""Prefix of every element id in student HTML (GitHub's choice): ``<h2 id="user-content-Results">``."""

TAGS = frozenset(nh3.ALLOWED_TAGS | {"tfoot"}) - {"area", "map"}
"""HTML elements kept (ammonia's defaults: text, headings, lists, tables, code, images, links; image maps left
out). Anything else is removed and its text kept, except ``script`` and ``style``, removed with their text."""

ATTRIBUTES = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"class", "id", "title", "lang", "dir", "style", "align"},
}
"""Attributes kept: ammonia's defaults (``a href``, ``img src alt width height``, table cell spans ...) and, on
every element, ``class`` (code highlighting, pandas tables), ``id`` (prefixed), ``title``, ``lang``, ``dir``,
``style`` (only the properties of :data:`STYLE_PROPERTIES`) and ``align``. Event handlers are never kept."""

STYLE_PROPERTIES = frozenset({
    "text-align", "vertical-align", "color", "background-color", "font-weight", "font-style", "text-decoration",
    "white-space", "border", "border-collapse", "padding", "margin", "width", "max-width", "height",
})
"""CSS properties kept in a ``style`` attribute (Markdown table alignment, pandas' tables): nothing that
positions an element over the page (``position``) or loads a URL (``background``)."""

URL_SCHEMES = frozenset({"http", "https", "mailto", "data"})
"""URL schemes kept in ``href``/``src``; ``data:`` only as an image (:func:`_url_attribute`)."""

IMAGE_DATA_URL = re.compile(r"data:image/(png|jpeg|gif|webp|svg\+xml)[;,]", re.IGNORECASE)
"""A ``data:`` URL allowed as an ``<img src>``: an image, which a browser never runs (an SVG shown as an
image runs no script and loads nothing)."""

URL_ATTRIBUTES = frozenset({"href", "src", "cite"})


ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _url_attribute(element: str, attribute: str, value: str) -> str | None:
    """nh3's per-attribute hook: ``data:`` URLs only as images; in-page links to the prefixed ids; no link to a
    path on the server that shows the page (formgrader serves the files submitted beside a notebook, and a page
    of those opened from the link would run as the instructor's Jupyter server)."""
    if attribute not in URL_ATTRIBUTES:
        return value
    url = value.strip()
    if url[:5].lower() == "data:":
        return value if element == "img" and attribute == "src" and IMAGE_DATA_URL.match(url) else None
    if attribute == "href" and url.startswith("#"):
        return url if url.startswith("#" + ID_PREFIX) else "#" + ID_PREFIX + url[1:]
    if attribute in ("href", "cite") and not ABSOLUTE_URL.match(url):
        return None
    return value


def clean_html(html: Any) -> Markup:
    """Student HTML with nothing a browser would run or load as a page: ``str`` (or ``bytes``) -> ``Markup``.

    >>> str(clean_html('<p onclick="steal()">$x^2$ <script>steal()</script><img src=x onerror=steal()></p>'))
    '<p>$x^2$ <img src="x"></p>'
    """
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else str(html)
    return Markup(nh3.clean(  # noqa: S704 - sanitised just now
        text, tags=set(TAGS), clean_content_tags={"script", "style"}, attributes=ATTRIBUTES,
        attribute_filter=_url_attribute, url_schemes=set(URL_SCHEMES), filter_style_properties=set(STYLE_PROPERTIES),
        id_prefix=ID_PREFIX, strip_comments=True, link_rel="noopener noreferrer",
    ))


class SafeMarkdown(LoggingConfigurable):
    """The ``markdown2html`` filter of an ``HTMLExporter`` (its ``parent``): the exporter's own rendering (math
    kept for MathJax, attachments, heading anchors), then :func:`clean_html`. Registered through the exporter's
    ``filters`` setting, which builds it with ``parent=exporter``."""

    jinja_pass_arg = pass_context(lambda: None).jinja_pass_arg  # Jinja passes the template context, as to its own
    remembered: ClassVar[dict[tuple[int, str], Markup]] = {}
    """The result per exporter and source, for cells without attachments: most Markdown of a feedback page is the
    released notebook's, the same for every student (rendering and cleaning it was a tenth of a page's time)."""

    def __call__(self, context: Any, source: str) -> Markup:
        render = getattr(self.parent, "markdown2html", None)
        if render is None:
            raise TypeError(f"SafeMarkdown renders with an HTMLExporter's markdown2html, not {self.parent!r}")
        cell = context.get("cell") if hasattr(context, "get") else None
        if cell is not None and cell.get("attachments"):  # attachment: links resolve against this cell's own
            return clean_html(render(context, source))
        key = (id(type(self.parent)), source)
        if key not in self.remembered:
            if len(self.remembered) > 20_000:
                self.remembered.clear()
            self.remembered[key] = clean_html(render(context, source))
        return self.remembered[key]


SHOWN_MIMETYPES = frozenset({
    "text/plain", "text/html", "text/markdown", "text/latex", "image/png", "image/jpeg", "image/svg+xml",
})
"""Output types a page shows: as text, sanitised HTML, formulas or an image. The rest (JavaScript, widget views,
Mermaid diagrams, PDFs, JSON, unknown types) are left out of the page."""

ATTACHMENT_MIMETYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/svg+xml"})
SAFE_ID = re.compile(r"[A-Za-z0-9_.\-]+\Z")


def _number(value: Any) -> int | None:
    """An image's width or height as a whole number of pixels, or None (nbconvert writes it unquoted: a text
    such as ``1 onerror=steal()`` would add an attribute)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    return int(value) if isinstance(value, str) and value.strip().isdigit() else None


def _image_metadata(metadata: Any) -> dict:
    """An output's metadata reduced to the image sizes and alt texts nbconvert's templates read."""
    kept: dict = {}
    for mimetype, entry in (metadata or {}).items() if isinstance(metadata, dict) else ():
        if mimetype not in ("image/png", "image/jpeg") or not isinstance(entry, dict):
            continue
        sizes = {key: _number(entry.get(key)) for key in ("width", "height") if _number(entry.get(key)) is not None}
        alt = {"alt": entry["alt"]} if isinstance(entry.get("alt"), str) else {}
        unconfined = {"unconfined": True} if entry.get("unconfined") is True else {}
        kept[mimetype] = NotebookNode({**sizes, **alt, **unconfined})
    return NotebookNode(kept)


class RemoveActiveContent(Preprocessor):
    """A notebook reduced to what a page may show: see the module's docstring. Works on the copy being
    rendered (formgrader's and the feedback's), never on the graded notebook on disk."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        nbgrader = cell.get("metadata", {}).get("nbgrader")
        if isinstance(nbgrader, dict) and "grade_id" in nbgrader and not SAFE_ID.match(str(nbgrader["grade_id"])):
            nbgrader["grade_id"] = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(nbgrader["grade_id"])) or "_"
        if "attachments" in cell:
            cell.attachments = NotebookNode({
                name: NotebookNode({mime: data for mime, data in bundle.items() if mime in ATTACHMENT_MIMETYPES})
                for name, bundle in cell.attachments.items() if isinstance(bundle, dict)
            })
        if cell.cell_type == "raw":
            cell.source = str(clean_html(cell.source))
        if cell.cell_type != "code":
            return cell, resources
        cell.execution_count = _number(cell.get("execution_count"))
        for output in cell.get("outputs", []):
            output.pop("svg_filename", None)
            if "execution_count" in output:
                output.execution_count = _number(output.execution_count)
            if "data" in output:
                output.data = NotebookNode({
                    mime: value for mime, value in output.data.items() if mime in SHOWN_MIMETYPES
                })
                if "text/html" in output.data:
                    html = output.data["text/html"]
                    output.data["text/html"] = str(clean_html("".join(html) if isinstance(html, list) else html))
                output.metadata = _image_metadata(output.get("metadata"))
        return cell, resources


CSP_NONCE_PLACEHOLDER = "@csp-nonce@"
"""Written where the page's own scripts take the page's nonce (:func:`with_content_security_policy`)."""


def content_security_policy(nonce: str) -> str:
    """The feedback page's policy: only the scripts that carry ``nonce`` (the page's MathJax configuration and
    the feedback tree's MathJax file) run; no plugin, frame, form target, connection, worker or ``<base>``; images only
    from ``data:`` URLs (the page's own figures), styles inline (the page's and MathJax's)."""
    return "; ".join([
        "default-src 'none'",
        f"script-src 'nonce-{nonce}'",
        "style-src 'unsafe-inline'",
        "img-src data:",
        "font-src data:",
        "object-src 'none'",
        "frame-src 'none'",
        "child-src 'none'",
        "worker-src 'none'",
        "connect-src 'none'",
        "form-action 'none'",
        "base-uri 'none'",
    ])


def with_content_security_policy(page: str, nonce: str, scripts: int) -> str:
    """``page`` with a Content-Security-Policy ``<meta>`` first in its ``<head>`` and ``nonce`` on its own
    ``scripts`` scripts, which carry :data:`CSP_NONCE_PLACEHOLDER` in the head (student content is in the body,
    and sanitised). A page that is not as expected is refused rather than written without its policy."""
    head, separator, body = page.partition("</head>")
    if not separator or "<head>" not in head or head.count(CSP_NONCE_PLACEHOLDER) != scripts:
        raise ValueError(f"a feedback page needs <head>...</head> with {scripts} scripts of its own to carry the "
                         "Content-Security-Policy nonce (check the feedback template)")
    meta = f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(nonce)}">'
    head = head.replace("<head>", "<head>\n" + meta, 1).replace(CSP_NONCE_PLACEHOLDER, nonce)
    return head + separator + body
