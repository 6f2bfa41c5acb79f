"""nbgrader preprocessors that make autograding robust and honest; ``nbgrader_config.py`` puts them in place.

* :class:`RepairStructure` (before nbgrader's own sanitising): rebuilds a submitted notebook on the skeleton of
  the released one. Deleted, duplicated, retyped or edited locked cells are put right, the student's own extra
  cells are kept where they were, and every repair is written into a "Grading notes" cell the feedback shows.
* :class:`GuardedExecute` (nbgrader's ``Execute``): a per-cell timeout that interrupts, a kernel that stops
  answering or dies ends the run without losing the cells already graded, and output floods are cut.
* :class:`JudgeHiddenChecks` (after execution, before nbgrader scores): every graded test cell scores only if
  its hidden checks' recorded observations pass the trusted judge in this process
  (:mod:`grader_tests.judges`); the records and the kernel's tracebacks leave the notebook, and records that
  were tampered with are flagged.
* :class:`FeedbackExporter`: nbconvert's HTML exporter that compiles its templates once per process and typesets
  formulas with a local copy of MathJax shared by the feedback tree, under a Content-Security-Policy.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.metadata
import json
import os
import re
import secrets
import textwrap
import time
from pathlib import Path
from typing import Any, ClassVar

import nbformat
from jinja2 import BytecodeCache, DictLoader
from jinja2.bccache import Bucket
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.nbgraderformat import MetadataValidator, ValidationError
from nbgrader.preprocessors import CheckCellMetadata, ClearHiddenTests, Execute, NbGraderPreprocessor
from traitlets import Bool, Float, Integer, Unicode, default

from grader_tests.judges import verdict
from grader_tests.judges.records import MAX_RECORD_CHARS, decode
from grader_tests.kernel.record import RECORD_MIME

from .dependencies import needed_in
from .output_budget import MB, OUTPUT_MESSAGES, OutputBudget, cap_outputs, cap_sources
from .sandbox import Limits, exit_report_path
from .sanitize import with_content_security_policy

NOTES_KEY = "visualizing_cnns"
"""Cell metadata key of the "Grading notes" cell."""

FIGURELESS_BACKEND = "module://grader_tests.kernel.figureless_backend"

MAX_RECORDS_PER_CELL = 8
"""More hidden-check records than this in one cell (no test cell runs as many checks) are a flood: one malformed
record stands for the rest, so the cell scores 0 and is flagged."""
"""``MPLBACKEND`` of grading kernels unless figures are wanted."""

HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", re.DOTALL)


def grade_id(cell: NotebookNode) -> str | None:
    """The cell's nbgrader ``grade_id``, or None (also where a submission's metadata is not nbgrader's shape)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    key = meta.get("grade_id") if isinstance(meta, dict) else None
    return key if isinstance(key, str) else None


def is_autograded_test(cell: NotebookNode) -> bool:
    """A graded code cell the student does not write: its tests decide its points."""
    return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)


def add_note(nb: NotebookNode, note: str) -> None:
    """Append ``note`` to the notebook's "Grading notes" cell, creating it at the top."""
    for cell in nb.cells:
        if cell.get("metadata", {}).get(NOTES_KEY) == "grading-notes":
            cell.source += f"\n* {note}"
            return
    cell = nbformat.v4.new_markdown_cell(f"**Grading notes**\n\n* {note}")
    cell.metadata[NOTES_KEY] = "grading-notes"
    nb.cells.insert(0, cell)


def notes(nb: NotebookNode) -> list[str]:
    """The grading notes of a notebook, one per line."""
    for cell in nb.cells:
        if cell.get("metadata", {}).get(NOTES_KEY) == "grading-notes":
            return [line[2:] for line in cell.source.splitlines() if line.startswith("* ")]
    return []


# --- structure ----------------------------------------------------------------------------------------------


class RepairStructure(NbGraderPreprocessor):
    """Rebuild the submission on the released notebook's cells, keeping the student's answers and extra cells.

    Every released cell leaves with the released ``metadata.nbgrader`` (points, ``grade``/``solution``/``locked``
    flags, ``grade_id``, checksum, schema version), whatever the submission's copy says: a student cannot change
    what a cell is worth or whether it is graded, and an edit that nbgrader's ``OverwriteCells`` cannot reconcile
    with the gradebook (``grade: true`` on an answer cell: ``MissingEntry``) no longer fails the submission. The
    student's own cells carry no nbgrader metadata. Each repair is noted.
    """

    release_directory = Unicode("", help="folder of the released notebooks: <assignment>/<notebook>.ipynb").tag(
        config=True
    )

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        info = resources["nbgrader"]
        path = Path(self.release_directory) / info["assignment"] / f"{info['notebook']}.ipynb"
        release = nbformat.read(path, as_version=4)
        return repair(nb, release), resources


def repair(nb: NotebookNode, release: NotebookNode) -> NotebookNode:
    """``nb`` rebuilt on ``release``: see :class:`RepairStructure`. Returns a new notebook."""
    released = {grade_id(cell): cell for cell in release.cells if grade_id(cell)}
    found: dict[str, list[NotebookNode]] = {}
    extras: dict[str | None, list[NotebookNode]] = {}  # the student's own cells, after the anchor they followed
    own: list[str] = []  # the nbgrader metadata the student's own cells carried (removed)
    anchor = None
    for cell in nb.cells:
        key = grade_id(cell)
        if cell.get("metadata", {}).get(NOTES_KEY) == "grading-notes":
            extras.setdefault(None, []).append(cell)
        elif key in released:
            found.setdefault(key, []).append(cell)
            anchor = key
        else:
            forged = cell.get("metadata", {}).pop("nbgrader", None)
            if forged:
                own.append(_describe(forged))
            extras.setdefault(anchor, []).append(cell)

    repaired = nbformat.v4.new_notebook(metadata=nb.get("metadata", release.metadata))
    repaired.cells = list(extras.get(None, []))
    messages: list[str] = []
    for key, original in released.items():
        copies = found.get(key, [])
        meta = original.metadata.nbgrader
        if changed := sorted({name for copy in copies for name in _changed(copy, meta)}):
            kind = "answer" if meta.get("solution") else "locked"
            messages.append(f"{kind} cell `{key}`: its nbgrader metadata had been changed "
                            f"({', '.join(changed)}): restored from the released notebook")
        if meta.get("solution"):
            cell = _answer(key, original, copies, messages)
            repaired.cells.append(cell)
            repaired.cells.extend(_stripped(copies[:-1]))  # earlier copies run as the student's own cells
        else:
            if not copies:
                messages.append(f"locked cell `{key}` was missing from the submission: restored")
            elif len(copies) > 1:
                messages.append(f"locked cell `{key}` appeared {len(copies)} times (duplicate): one copy kept")
            elif copies[0].source != original.source or copies[0].cell_type != original.cell_type:
                messages.append(f"locked cell `{key}` had been edited: restored from the released notebook")
            repaired.cells.append(_fresh(original))
        repaired.cells.extend(extras.get(key, []))
    if own:
        messages.append(f"{len(own)} cell(s) of your own carried nbgrader metadata ({'; '.join(own[:3])}"
                        f"{'; ...' if len(own) > 3 else ''}): removed, they are not graded")
    for message in messages:
        add_note(repaired, message)
    return repaired


def _changed(cell: NotebookNode, released: dict) -> list[str]:
    """The keys of the ``released`` nbgrader metadata that ``cell``'s differs in, and "keys of its own" if it adds
    any (their names are the student's text: not quoted); "all of it" if it is not a mapping."""
    meta = cell.get("metadata", {}).get("nbgrader")
    if not isinstance(meta, dict):
        return ["all of it"]
    changed = [name for name in released if name not in meta or meta[name] != released[name]]
    return changed + (["keys of its own"] if set(meta) - set(released) else [])


def _describe(meta: Any) -> str:
    """A short, printable account of forged nbgrader metadata."""
    if not isinstance(meta, dict):
        return f"not a mapping: {type(meta).__name__}"
    shown = {name: meta[name] for name in ("grade_id", "grade", "solution", "points") if name in meta}
    return ", ".join(f"{name}={json.dumps(value)[:40]}" for name, value in shown.items()) or "no grade_id"


def _answer(key: str, original: NotebookNode, copies: list[NotebookNode], messages: list[str]) -> NotebookNode:
    """The student's answer cell: the last copy, with the released cell type."""
    if not copies:
        messages.append(f"answer cell `{key}` was missing from the submission: restored empty")
        return _fresh(original)
    if len(copies) > 1:
        messages.append(f"answer cell `{key}` appeared {len(copies)} times (duplicate): the last copy is graded")
    cell = copies[-1]
    if cell.cell_type != original.cell_type:
        messages.append(f"answer cell `{key}` had been changed to {cell.cell_type}: restored as {original.cell_type}")
        cell = _retyped(cell, original.cell_type)
    cell.metadata["nbgrader"] = nbformat.from_dict(original.metadata.nbgrader)  # the release's, never the student's
    return cell


def _fresh(cell: NotebookNode) -> NotebookNode:
    copy = nbformat.from_dict(cell)
    if copy.cell_type == "code":
        copy.outputs, copy.execution_count = [], None
    return copy


def _retyped(cell: NotebookNode, cell_type: str) -> NotebookNode:
    maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}[cell_type]
    return maker(cell.source, metadata=cell.metadata)


def _stripped(cells: list[NotebookNode]) -> list[NotebookNode]:
    for cell in cells:
        cell.metadata.pop("nbgrader", None)
    return cells


class CheckCellMetadataOnce(CheckCellMetadata):
    """nbgrader's ``CheckCellMetadata``, each distinct (cell type, nbgrader metadata) validated once per process:
    the check depends on nothing else, and most cells are the released notebook's in every submission
    (``jsonschema.validate`` rechecks the schema itself on every call: a tenth of a notebook's grading)."""

    valid: ClassVar[set[tuple[str, str]]] = set()

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        validator = MetadataValidator()
        for cell in nb.cells:
            key = (cell.cell_type, json.dumps(cell.get("metadata", {}).get("nbgrader"), sort_keys=True))
            if key in self.valid:
                continue
            try:
                validator.validate_cell(cell)
            except ValidationError:
                self.log.error("Notebook failed to validate; the nbgrader metadata may be corrupted.")
                raise
            self.valid.add(key)
        return nb, resources


# --- execution ----------------------------------------------------------------------------------------------


class GuardedExecute(Execute):
    """nbgrader's ``Execute`` that survives what student code does to a kernel.

    A cell that runs past ``timeout`` is interrupted (nbgrader's default) and the next cells run. If the kernel
    does not answer the interrupt either, or dies, or the notebook exceeds ``notebook_timeout``, the remaining
    cells are not run and a note says why; the cells before keep their results. Every output is charged to one
    budget per cell and one per notebook as it arrives (:mod:`grader_tests.engine.output_budget`), whatever its
    path, and the student's own sources are capped: a graded notebook and its feedback page stay under 10 MB.

    What cannot change a grade is skipped unless asked for (``every_cell``, ``figures``): figures are not
    rendered (:mod:`grader_tests.kernel.figureless_backend`), the cells after the last autograded test cell are not
    run (a markdown cell after that test says so in the feedback), nor are the cells before it that no test or
    solution cell depends on (:mod:`grader_tests.engine.dependencies`; each says so in its output).
    """

    max_output_chars = Integer(20_000, help="stream characters kept per cell").tag(config=True)
    max_cell_output_bytes = Integer(2 * MB, help="bytes of output a cell may add to its feedback page").tag(
        config=True
    )
    max_notebook_output_bytes = Integer(6 * MB, help="bytes of output a notebook may add to its feedback page").tag(
        config=True
    )
    memory_mb = Integer(Limits.memory_mb, help="memory of a sandboxed kernel, its scratch files included (MB)").tag(
        config=True
    )
    processes = Integer(Limits.processes, help="processes and threads of a sandboxed kernel").tag(config=True)
    notebook_timeout = Float(600.0, help="seconds for a whole notebook before the remaining cells are skipped").tag(
        config=True
    )
    figures = Bool(False, help="render matplotlib figures into the graded notebooks (slower)").tag(config=True)
    every_cell = Bool(False, help="run every cell: those no test depends on, and those after the last test (slower)").tag(
        config=True
    )
    release_directory = Unicode("", help="folder of the released notebooks: which cells are the release's").tag(
        config=True
    )

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        km.limits = Limits(memory_mb=self.memory_mb, processes=self.processes)  # read by ForkingKernelManager
        return km

    def start_new_kernel(self, **kwargs: Any) -> None:
        if not self.figures:
            kwargs.setdefault("env", {**os.environ, "MPLBACKEND": FIGURELESS_BACKEND})
        super().start_new_kernel(**kwargs)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self._stopped: str | None = None
        self._budget = OutputBudget(self.max_cell_output_bytes, self.max_notebook_output_bytes, self.max_output_chars)
        self._records: dict[int, int] = {}
        self._started = time.monotonic()
        self._timeouts_in_a_row = 0
        self._messages: list[str] = []
        tests = [index for index, cell in enumerate(nb.cells) if is_autograded_test(cell)]
        self._last = len(nb.cells) if self.every_cell or not tests else tests[-1]
        self._needed = None if self.every_cell else self._needed_cells(nb, resources)
        locked = {index for index, cell in enumerate(nb.cells) if utils.is_locked(cell) and not utils.is_solution(cell)}
        self._messages += cap_sources(nb, locked)
        nb, resources = super().preprocess(nb, resources, *args, **kwargs)
        nb.metadata.pop("widgets", None)  # widget state: no page shows it, and nothing counted it
        self._messages += cap_outputs(nb, self.max_notebook_output_bytes, _is_record)  # whatever path it took
        if any(cell.cell_type == "code" for cell in nb.cells[self._last + 1 :]):
            nb.cells.insert(self._last + 1, _not_run_marker())
        for message in self._messages:  # added afterwards: a new cell during the run would shift the cell loop
            add_note(nb, message)
        return nb, resources

    def _needed_cells(self, nb: NotebookNode, resources: dict[str, Any]) -> set[int] | None:
        """The cells before the last test that run (:mod:`grader_tests.engine.dependencies`): the tests, the
        student's own code (solution cells, cells the release does not have word for word) and what they depend
        on; None (all of them) where the released notebook cannot be read."""
        info = resources.get("nbgrader", {})
        try:
            released = _released_sources(Path(self.release_directory) / info["assignment"] / f"{info['notebook']}.ipynb")
        except (KeyError, OSError, ValueError):
            return None
        always = {index for index, cell in enumerate(nb.cells) if cell.cell_type == "code" and (
            utils.is_solution(cell) or utils.is_grade(cell) or cell.source not in released)}
        return needed_in(nb, always, self._last)

    def preprocess_cell(self, cell: NotebookNode, resources: dict[str, Any], index: int) -> Any:
        if cell.cell_type != "code":
            return cell, resources
        if self._stopped is None and time.monotonic() - self._started > self.notebook_timeout:
            self._stop(f"the notebook ran longer than {self.notebook_timeout:.0f} s in all")
        if self._stopped is not None:
            return cell, resources  # not run: its graded cells score 0 (JudgeHiddenChecks)
        if index > self._last:
            return cell, resources
        if self._needed is not None and index not in self._needed:
            cell.outputs = [_skipped_marker()]
            return cell, resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except CellTimeoutError:  # interrupted at its timeout, the kernel did not even answer that
            cell.outputs.append(_error("CellTimeoutError", f"the cell ran longer than {self.timeout} s"))
            if run_sync(self.km.is_alive)():
                self._stop(f"cell {index + 1} ran longer than {self.timeout} s and the kernel ignored the interrupt")
            else:  # it died in the meantime, for example of its memory limit: say why
                self._stop(f"the kernel died while running cell {index + 1}: {self._why_dead()}")
            run_sync(self.km.shutdown_kernel)(now=True)
            return cell, resources
        except DeadKernelError:
            why = self._why_dead()
            cell.outputs.append(_error("DeadKernelError", f"the kernel died while running this cell: {why}"))
            self._stop(f"the kernel died while running cell {index + 1}: {why}")
            return cell, resources
        timed_out = any(out.get("ename") == "CellTimeoutError" for out in cell.outputs if out.output_type == "error")
        if timed_out:
            self._note(f"cell {index + 1} timed out after {self.timeout} s and was interrupted")
            self._timeouts_in_a_row += 1
            if self._timeouts_in_a_row >= 2:
                self._stop("the kernel no longer answers after a timeout")
                run_sync(self.km.shutdown_kernel)(now=True)
        else:
            self._timeouts_in_a_row = 0
        return cell, resources

    def process_message(self, msg: dict[str, Any], cell: NotebookNode, cell_index: int) -> Any:
        """Every output message, whatever its path (display updates included), is charged to the notebook's
        :class:`~grader_tests.engine.output_budget.OutputBudget` before nbclient applies it; hidden-check records
        are kept apart (judged and removed later), a flood or an oversized one kept as malformed."""
        if msg.get("msg_type") in OUTPUT_MESSAGES:
            if not _well_formed(msg):
                return None
            if RECORD_MIME in (msg["content"].get("data") or {}):
                msg = self._record(msg, cell_index)
            else:
                msg, note = self._budget.admit(msg, cell_index, self._copies(msg))
                if note:
                    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=f"\n{note}\n"))
            if msg is None:
                return None
        return super().process_message(msg, cell, cell_index)

    def _copies(self, msg: dict[str, Any]) -> int:
        """How many outputs applying ``msg`` writes: one, or every output already shown with its ``display_id``
        (nbclient rewrites them all), plus the new one unless it is an update."""
        display_id = (msg["content"].get("transient") or {}).get("display_id")
        mapped = sum(len(outputs) for outputs in self._display_id_map.get(display_id, {}).values()) if display_id else 0
        return mapped + (msg["msg_type"] != "update_display_data")

    def _record(self, msg: dict[str, Any], cell_index: int) -> dict[str, Any] | None:
        """A hidden-check record as a plain display of the record alone (no other data, no ``display_id``)."""
        count = self._records[cell_index] = self._records.get(cell_index, 0) + 1
        if count > MAX_RECORDS_PER_CELL + 1:
            return None
        payload = msg["content"]["data"][RECORD_MIME]
        if count > MAX_RECORDS_PER_CELL or not isinstance(payload, str) or len(payload) > MAX_RECORD_CHARS:
            payload = "dropped: over the limits"
        return {**msg, "msg_type": "display_data", "content": {"data": {RECORD_MIME: payload}, "metadata": {}}}

    def _why_dead(self) -> str:
        """What the sandbox's keeper reported about the kernel's end (it writes the report as the kernel ends)."""
        report = None
        if self.km is not None and self.km.connection_file:
            path = Path(exit_report_path(os.path.dirname(self.km.connection_file)))
            for _ in range(20):
                if path.exists():
                    with contextlib.suppress(ValueError, OSError):
                        report = json.loads(path.read_text())
                        break
                time.sleep(0.05)
        if report and report.get("oom_kills"):
            return f"it ran out of memory (a grading kernel may use {report['memory_mb']} MB)"
        if report:
            return f"it exited with code {report['exit']} (os._exit, sys.exit in a thread, or a crash)"
        return "os._exit, a crash or out of memory"

    def _note(self, message: str) -> None:
        self._messages.append(message)

    def _stop(self, reason: str) -> None:
        self._stopped = reason
        self._note(f"{reason}: the cells after it were not run")


def _is_record(output: NotebookNode) -> bool:
    return RECORD_MIME in output.get("data", {})


def _well_formed(msg: dict[str, Any]) -> bool:
    """Whether an output message has the shape nbclient expects (a kernel can send any JSON)."""
    content = msg.get("content")
    if not isinstance(content, dict):
        return False
    fields = {"data": dict, "metadata": dict, "transient": dict, "text": str, "traceback": list}
    return all(content.get(name) is None or isinstance(content[name], kind) for name, kind in fields.items())


def _not_run_marker() -> NotebookNode:
    cell = nbformat.v4.new_markdown_cell(
        "**Grading stopped here.** The cells below come after the last graded test, so they cannot change the "
        "grade and were not run. Your own notebook shows what they do."
    )
    cell.metadata[NOTES_KEY] = "not-run"
    return cell


@functools.lru_cache(maxsize=64)
def _released_code(path: Path, stamp: tuple[int, int]) -> frozenset[str]:
    return frozenset(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")


def _released_sources(path: Path) -> frozenset[str]:
    """The sources of the released notebook's code cells (read once per process and version of the file)."""
    stat = path.stat()
    return _released_code(path, (stat.st_mtime_ns, stat.st_size))


def _skipped_marker() -> NotebookNode:
    text = "Not run in grading: no test depends on this cell. Your own notebook shows what it does."
    return nbformat.v4.new_output("display_data", data={"text/markdown": f"*{text}*", "text/plain": text})


def _error(ename: str, evalue: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


# --- judging ------------------------------------------------------------------------------------------------


KERNEL_PACKAGE = "grader_tests.kernel."

FLAGGED = "flagged for the instructor"
"""Grading notes that start with this describe records the grader refused: the summary lists them apart."""


def expected_checks(source: str) -> list[str]:
    """Names of the hidden checks a test cell's hidden block imports: ``<topic>.<check>`` for
    ``from grader_tests.kernel.<topic> import <check>``."""
    names = []
    for block in HIDDEN_BLOCK.findall(source):
        for node in ast.walk(ast.parse(textwrap.dedent(block))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(KERNEL_PACKAGE):
                names += [f"{node.module.removeprefix(KERNEL_PACKAGE)}.{alias.name}" for alias in node.names]
    return names


class JudgeHiddenChecks(NbGraderPreprocessor):
    """Score graded test cells by the trusted judge of their recorded observations, never by the kernel's word.

    A graded test cell keeps its points only if it ran without an error and each hidden check its (trusted,
    restored) source names left exactly one record in the cell's own outputs, which the judge passes. A record
    that is malformed, duplicated, names a check the cell does not run, or appears in any other cell scores the
    cell 0 (where there is one) and is flagged to the instructor in the grading notes. Every ``execute_result``
    becomes a plain display: nbgrader reads an ``execute_result`` of a graded cell as its score.
    """

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            records = [out for out in cell.outputs if RECORD_MIME in out.get("data", {})]
            kept = [_displayed(_without_traceback(out)) for out in cell.outputs if out not in records]
            if is_autograded_test(cell):
                kept, flag = _verdict(cell, kept, records)
            else:
                flag = f"{len(records)} hidden-check record(s) in cell {index + 1}, which is no graded test"
                flag = flag if records else None
            if flag:
                add_note(nb, f"{FLAGGED}: {flag}; the records were ignored")
            cell.outputs = kept
        return nb, resources


def _verdict(cell: NotebookNode, outputs: list, records: list) -> tuple[list, str | None]:
    """The cell's outputs after judging (at most one error output: the reason it scored 0), and a flag."""
    errors = [out for out in outputs if out.output_type == "error"]
    others = [out for out in outputs if out.output_type != "error"]
    expected = expected_checks(cell.source)
    recorded: dict[str, list] = {}
    flag = None
    for out in records:
        try:
            name, observations = decode(out["data"][RECORD_MIME])
        except Exception as error:  # noqa: BLE001 - whatever the kernel sent, it is not a record
            flag = f"a malformed hidden-check record in `{grade_id(cell)}` ({type(error).__name__})"
            continue
        recorded.setdefault(name, []).append(observations)
    for name, copies in recorded.items():
        if name not in expected:
            flag = flag or f"a record of `{name}` in `{grade_id(cell)}`, which does not run that check"
        elif len(copies) > 1:
            flag = flag or f"{len(copies)} records of `{name}` in `{grade_id(cell)}`, which runs it once"
    reason = None
    if flag:
        reason = "this cell's hidden-test records were tampered with (see the grading notes)"
    elif cell.get("execution_count") is None and not outputs and not records:
        reason = "this cell was not run (see the grading notes at the top)"
    elif errors:
        return [*others, errors[0]], None
    else:
        for name in expected:
            reason = verdict(name, recorded[name][0]) if name in recorded else (
                "a hidden test did not run (the cell stopped before it)")
            if reason:
                break
    if reason is None:
        return others, None
    return [*others, _error("HiddenTestFailed", reason)], flag


def _displayed(output: NotebookNode) -> NotebookNode:
    """An ``execute_result`` as a ``display_data`` with the same data: shown, never read as a score."""
    if output.output_type != "execute_result":
        return output
    return nbformat.v4.new_output("display_data", data=output.get("data", {}), metadata=output.get("metadata", {}))


def _without_traceback(output: NotebookNode) -> NotebookNode:
    """Error outputs keep their type and message; the traceback (which may quote hidden code) goes."""
    if output.output_type == "error":
        output.traceback = [f"{output.ename}: {output.evalue}"]
    return output


# --- feedback -----------------------------------------------------------------------------------------------


class ClearHiddenTestsOfTests(ClearHiddenTests):
    """nbgrader's ``ClearHiddenTests`` on the graded test cells only, where the hidden tests are. A student's own
    cell that quotes the markers is the student's text: it must neither be cut nor break the feedback."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict[str, Any], index: int) -> Any:
        if not is_autograded_test(cell):
            return cell, resources
        return super().preprocess_cell(cell, resources, index)


class _CompiledTemplates(BytecodeCache):
    """Jinja's compiled templates, kept for the life of the process (Jinja checks each against its source)."""

    compiled: ClassVar[dict[str, bytes]] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


class _RememberedHighlight(Highlight2HTML):
    """Pygments' HTML of a code cell, computed once per grading process for each source text: most cells of a
    feedback page are the released notebook's, the same for every student (pygments was a third of the time)."""

    remembered: ClassVar[dict[tuple[str, str | None, str | None], str]] = {}

    def __call__(self, source: str, language: str | None = None, metadata: Any = None) -> str:
        key = (source, language or self.pygments_lexer, (metadata or {}).get("magics_language"))
        if key not in self.remembered:
            if len(self.remembered) > 50_000:
                self.remembered.clear()
            self.remembered[key] = super().__call__(source, language, metadata)
        return self.remembered[key]


FEEDBACK_CSS = """<style>
/* a failure's reason in full: error and stream outputs wrap instead of scrolling sideways */
.output_subarea pre { white-space: pre-wrap; word-break: normal; overflow-wrap: anywhere; }
</style>
"""
"""Added to every feedback page's head (inline styles are allowed by its Content-Security-Policy)."""


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback exporter at twice the speed, and offline.

    Its templates compile once per grading process, not once per notebook, code cells are highlighted once per
    distinct source (:class:`_RememberedHighlight`), and a page without images skips the exporter's
    BeautifulSoup pass, which only adds image alt texts and JupyterLab's tab stops (the feedback template has no
    JupyterLab cells).

    Formulas are typeset by MathJax 3 from one copy shared by the whole feedback tree,
    ``feedback/mathjax/tex-svg-full.js`` (from the ``django-static-mathjax`` package: MathJax's files, no Django),
    which each page ``feedback/<student>/<assignment>/<notebook>.html`` loads as ``../../mathjax/tex-svg-full.js``:
    offline, and 2.2 MB once rather than once per page (300 students x 14 notebooks would be about 9 GB). The
    copy is written when the first page of a tree is (:meth:`write_shared_mathjax`, atomically: grading workers
    write pages in parallel). That one file holds the TeX input, every TeX extension and the SVG output with its
    fonts, so nothing else is loaded, even from ``file://``. (nbgrader's ``release_feedback`` copies the HTML files
    only: hand out a student's folder with ``mathjax/`` beside it, docs/instructors.md.)

    Error outputs wrap (:data:`FEEDBACK_CSS`): a failure's reason shows in full, not cut off in a box that
    scrolls sideways.

    Each page carries a Content-Security-Policy (:func:`grader_tests.engine.sanitize.content_security_policy`):
    only its MathJax configuration and MathJax's file run, with a nonce drawn for the page; student HTML was
    sanitised before (:mod:`grader_tests.engine.sanitize`, set up in ``nbgrader_config.py``).
    """

    mathjax_distribution: ClassVar[str] = "django-static-mathjax"
    mathjax_source: ClassVar[str] = "mathjax/static/mathjax/es5/tex-svg-full.js"
    mathjax_file: ClassVar[str] = "../../mathjax/tex-svg-full.js"
    """The shared copy, relative to a page ``feedback/<student>/<assignment>/<notebook>.html``."""
    mathjax_macro: ClassVar[str] = """{%- macro mathjax(url=None) -%}{% raw %}
<script nonce="@csp-nonce@">
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
</script>{% endraw %}
<script defer nonce="@csp-nonce@" src="{{ path }}"></script>
{%- endmacro %}"""
    """Replaces nbconvert's ``mathjax.html.j2`` (MathJax 2 from a CDN), which the feedback template imports; its two
    scripts are the only ones the page's Content-Security-Policy lets run (they get the page's nonce)."""
    _mathjax: ClassVar[bytes | None] = None
    _shared_copies: ClassVar[set[Path]] = set()
    """The shared copies this process has checked or written (each is checked once per process, not per page)."""

    @default("extra_loaders")
    def _local_mathjax(self) -> list:
        macro = self.mathjax_macro.replace("{{ path }}", self.mathjax_file)
        return [DictLoader({"mathjax.html.j2": macro})]

    @classmethod
    def mathjax(cls) -> bytes:
        """MathJax's file, read once per process."""
        if cls._mathjax is None:
            try:
                path = Path(importlib.metadata.distribution(cls.mathjax_distribution).locate_file(cls.mathjax_source))
                cls._mathjax = path.read_bytes()
            except (importlib.metadata.PackageNotFoundError, OSError) as error:
                raise RuntimeError(f"feedback needs MathJax 3: pip install -e '.[instructor]' (it installs "
                                   f"{cls.mathjax_distribution})") from error
        return cls._mathjax

    def _create_environment(self) -> Any:
        environment = super()._create_environment()
        environment.bytecode_cache = _CompiledTemplates()
        return environment

    @classmethod
    def write_shared_mathjax(cls, page_folder: Path) -> Path:
        """Write the shared MathJax copy that pages in ``page_folder`` load (``page_folder/../../mathjax/``), unless
        it is there already with the right content; atomic (a temporary file renamed), so that parallel grading
        workers never leave a half-written copy. Returns the copy's path."""
        target = Path(os.path.normpath(Path(page_folder).resolve() / cls.mathjax_file))
        if target in cls._shared_copies and target.is_file():  # checked or written by this process already
            return target
        data = cls.mathjax()
        with contextlib.suppress(OSError):
            if target.stat().st_size == len(data) and target.read_bytes() == data:
                cls._shared_copies.add(target)
                return target
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
        temporary.write_bytes(data)
        os.replace(temporary, target)
        cls._shared_copies.add(target)
        return target

    def from_notebook_node(self, nb: NotebookNode, resources: dict | None = None, **kw: Any) -> tuple[str, dict]:
        output, resources = self._page(nb, resources, **kw)
        output = output.replace("</head>", FEEDBACK_CSS + "</head>", 1)
        output = with_content_security_policy(output, nonce=secrets.token_urlsafe(18), scripts=2)
        destination = self._destination(resources)
        if destination is not None:  # nbgrader's converter: the page's folder is known, the copy written once
            self.write_shared_mathjax(destination)
        else:  # used on its own: the writer writes the copy, relative to its build directory
            resources.setdefault("outputs", {})[self.mathjax_file] = self.mathjax()
        return output, resources

    def _destination(self, resources: dict) -> Path | None:
        """The folder nbgrader's converter (this exporter's parent) writes the page into, or None."""
        nbgrader = resources.get("nbgrader", {})
        format_dest = getattr(self.parent, "_format_dest", None)
        if format_dest is None or "assignment" not in nbgrader or "student" not in nbgrader:
            return None
        return Path(format_dest(nbgrader["assignment"], nbgrader["student"]))

    def _page(self, nb: NotebookNode, resources: dict | None = None, **kw: Any) -> tuple[str, dict]:
        language = nb.metadata.get("language_info", {})
        lexer = language.get("pygments_lexer", language.get("name"))
        self.filters = {**self.filters, "highlight_code": _RememberedHighlight(pygments_lexer=lexer, parent=self)}
        self.register_filter("highlight_code", self.filters["highlight_code"])  # HTMLExporter's path takes it too
        if any(key.startswith("image/") for cell in nb.cells for out in cell.get("outputs", [])
               for key in out.get("data", {})):
            return super().from_notebook_node(nb, resources, **kw)
        # HTMLExporter.from_notebook_node up to its BeautifulSoup pass
        resources = self._init_resources(resources)
        self.register_filter("filter_data_type",
                             WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self, resources=resources))
        return TemplateExporter.from_notebook_node(self, nb, resources, **kw)
