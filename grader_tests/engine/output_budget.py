"""How much a graded notebook may hold: one budget for every output path, and a cap on what the student wrote.

A kernel can make output by many paths: a stream, a display, an ``execute_result``, an error (its name, message
and traceback), a display's ``metadata``, an ``update_display_data`` that rewrites every earlier output with the
same ``display_id`` (a thousand copies at once), a display with a known ``display_id`` (which does the same). Every
message of those kinds is charged here before it reaches the notebook, against the cell's budget and the
notebook's; what is over is dropped, and the cell shows a note instead. Each character is charged at its worst
size in the feedback page (:data:`TEXT_WEIGHT`: HTML and JSON escaping), images at their base64 size, and an
update at its size times the outputs it rewrites, so the budget bounds the graded notebook and its page whatever
the kernel sends. A cell's first error output is always kept (it decides the cell's score), cut to
:attr:`OutputBudget.error_chars` per part.

The student's own text (sources and markdown attachments) is capped by :func:`cap_sources`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nbformat
from nbformat.notebooknode import NotebookNode

TEXT_WEIGHT = 6
"""Bytes a character of text may become in the feedback page or the notebook's JSON (``"`` is ``&quot;``)."""

MAX_METADATA_CHARS = 10_000
"""A display's ``metadata`` (image sizes, a few flags) longer than this is dropped: it is not shown anyway."""

OUTPUT_MESSAGES = ("stream", "display_data", "execute_result", "update_display_data", "error")

MB = 1_000_000


@dataclass
class OutputBudget:
    """The outputs of one notebook's run; :meth:`admit` each output message before it is applied."""

    per_cell: int = 2 * MB
    per_notebook: int = 6 * MB
    stream_chars: int = 20_000
    error_chars: int = 4_000
    spent: dict[int, int] = field(default_factory=dict)
    streamed: dict[int, int] = field(default_factory=dict)
    noted: set[int] = field(default_factory=set)
    errored: set[int] = field(default_factory=set)
    total: int = 0

    def admit(self, msg: dict[str, Any], cell_index: int, copies: int = 1) -> tuple[dict[str, Any] | None, str]:
        """``msg`` as it may be applied (trimmed), or None if it is dropped, and a note for the cell ('' if none,
        or if the cell has one already). ``copies``: how many outputs applying it writes (an update of a
        ``display_id`` rewrites each of them)."""
        kind, content = msg["msg_type"], msg["content"]
        if kind == "error":
            content = self._trimmed_error(content)
        elif kind != "stream" and len(json.dumps(content.get("metadata") or {}, default=str)) > MAX_METADATA_CHARS:
            content = {**content, "metadata": {}}
        elif kind == "stream":
            self.streamed[cell_index] = self.streamed.get(cell_index, 0) + len(content.get("text", ""))
            if self.streamed[cell_index] > self.stream_chars:
                return None, self._note_once(cell_index, "... output truncated ...")
        size = page_bytes(kind, content) * max(1, copies)
        spent = self.spent.get(cell_index, 0)
        over = "notebook" if self.total + size > self.per_notebook else "cell" if spent + size > self.per_cell else ""
        if over and (kind != "error" or cell_index in self.errored):  # a cell's first error is always kept
            limit = self.per_notebook if over == "notebook" else self.per_cell
            return None, self._note_once(cell_index, f"... output dropped: over the {limit // MB} MB a {over} may show ...")
        if kind == "error":
            self.errored.add(cell_index)
        self.spent[cell_index] = spent + size
        self.total += size
        return {**msg, "content": content}, ""

    def _note_once(self, cell_index: int, note: str) -> str:
        if cell_index in self.noted:
            return ""
        self.noted.add(cell_index)
        return note

    def _trimmed_error(self, content: dict[str, Any]) -> dict[str, Any]:
        """An error's name, message and traceback within :attr:`error_chars` each (the message keeps its end)."""
        limit = self.error_chars
        evalue = str(content.get("evalue", ""))
        if len(evalue) > limit:
            evalue = f"{evalue[: limit // 2]} ... ({len(evalue) - limit} characters cut) ... {evalue[-limit // 2 :]}"
        traceback, kept = [], 0
        for line in reversed([str(line) for line in content.get("traceback", []) or []]):
            if kept + len(line) > limit:
                traceback.insert(0, "... (the start of the traceback cut) ...")
                break
            traceback.insert(0, line)
            kept += len(line)
        return {**content, "ename": str(content.get("ename", ""))[:200], "evalue": evalue, "traceback": traceback}


def page_bytes(kind: str, content: dict[str, Any]) -> int:
    """What one output message may add to the graded notebook and to its feedback page, in bytes (worst case)."""
    if kind == "stream":
        return TEXT_WEIGHT * len(content.get("text", ""))
    if kind == "error":
        text = [content.get("ename", ""), content.get("evalue", ""), *(content.get("traceback") or [])]
        return TEXT_WEIGHT * sum(len(str(part)) for part in text)
    size = len(json.dumps(content.get("metadata") or {}, default=str))
    for mime, value in (content.get("data") or {}).items():
        if isinstance(value, str) and mime.startswith("image/") and mime != "image/svg+xml":
            size += len(value)  # base64, embedded as it is
        else:
            size += TEXT_WEIGHT * (len(value) if isinstance(value, str) else len(json.dumps(value, default=str)))
    return size


MAX_CELL_SOURCE = 500_000
MAX_NOTEBOOK_SOURCE = 3 * MB
"""Characters of source and attachments per cell and per notebook a submission may bring (the released
notebooks hold about 100,000 in all; a pasted screenshot is a few hundred thousand)."""


def cap_sources(nb: NotebookNode, protected: set[int]) -> list[str]:
    """Replace the student's cells that are too large (source and attachments) by a note, largest first, until
    each is within :data:`MAX_CELL_SOURCE` and the notebook within :data:`MAX_NOTEBOOK_SOURCE`; the cells at the
    indices in ``protected`` (the released, locked ones) are never touched. Returns the grading notes."""
    sizes = {index: _source_size(cell) for index, cell in enumerate(nb.cells)}
    total = sum(sizes.values())
    notes = []
    for index in sorted(sizes, key=sizes.get, reverse=True):
        if index in protected or (sizes[index] <= MAX_CELL_SOURCE and total <= MAX_NOTEBOOK_SOURCE):
            continue
        cell = nb.cells[index]
        text = f"this cell's {sizes[index]:,} characters are over the grader's limit, so it was not graded"
        cell.source = f"# {text}" if cell.cell_type == "code" else f"*({text})*"
        cell.pop("attachments", None)
        total -= sizes[index] - len(cell.source)
        notes.append(f"cell {index + 1} held {sizes[index]:,} characters of source and attachments (the limit is "
                     f"{MAX_CELL_SOURCE:,} a cell, {MAX_NOTEBOOK_SOURCE:,} a notebook): replaced by a note")
    return notes


def _source_size(cell: NotebookNode) -> int:
    source = cell.get("source", "")
    size = len(source) if isinstance(source, str) else sum(len(line) for line in source)
    return size + (len(json.dumps(cell.get("attachments"), default=str)) if cell.get("attachments") else 0)


def cap_outputs(nb: NotebookNode, limit: int, kept: Callable[[NotebookNode], bool] = lambda output: False) -> list[str]:
    """The last line of defence, after the run: if the outputs' JSON exceeds ``limit`` bytes in all (an output
    path :class:`OutputBudget` did not see), the largest cells keep only their first error and a note, until it
    does not. Outputs for which ``kept`` is true (hidden-check records, judged and removed next) are neither
    counted nor dropped. Returns the grading notes."""
    def size(outputs: list) -> int:
        return len(json.dumps([out for out in outputs if not kept(out)], default=str))

    sizes = {index: size(cell.get("outputs", [])) for index, cell in enumerate(nb.cells)}
    total = sum(sizes.values())
    notes = []
    for index in sorted(sizes, key=sizes.get, reverse=True):
        if total <= limit:
            break
        cell = nb.cells[index]
        errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"][:1]
        note = "\n... output dropped: over the limit of a notebook ...\n"
        records = [out for out in cell.get("outputs", []) if kept(out)]
        cell.outputs = [*records, *errors, nbformat.v4.new_output("stream", name="stdout", text=note)]
        total -= sizes[index] - size(cell.outputs)
        notes.append(f"the output of cell {index + 1} ({sizes[index]:,} bytes) was over the limit of a notebook: dropped")
    return notes
