"""What a kernel can send and a submission can carry is bounded before it costs memory or pages: the output budget
(every output path, one budget per cell and per notebook), the cap on the student's sources, and a hidden-check
record that is refused unread when it would inflate."""

from __future__ import annotations

import base64
import io
import pickle
import zipfile

import nbformat
import pytest
import torch

from grader_tests.engine.output_budget import (
    MAX_CELL_SOURCE, MB, TEXT_WEIGHT, OutputBudget, cap_outputs, cap_sources, page_bytes,
)
from grader_tests.judges.records import MAX_RECORD_ITEMS, decode
from grader_tests.kernel.record import encode


def message(kind: str, **content) -> dict:
    return {"msg_type": kind, "content": content, "header": {"msg_type": kind}, "parent_header": {}}


def test_an_update_is_charged_for_every_output_it_rewrites():
    budget = OutputBudget(per_cell=2 * MB, per_notebook=6 * MB)
    update = message("update_display_data", data={"text/plain": "x" * 10_000}, metadata={})
    assert budget.admit(update, 0, copies=1)[0] is not None
    dropped, note = budget.admit(update, 0, copies=50)  # 50 x 60 kB of page: over the cell, not the notebook
    assert dropped is None and "over the 2 MB a cell may show" in note
    assert budget.total == page_bytes("update_display_data", update["content"])


def test_the_notebook_budget_holds_across_cells_and_each_cell_gets_one_note():
    budget = OutputBudget(per_cell=2 * MB, per_notebook=6 * MB)
    image = message("display_data", data={"image/png": "A" * 1_900_000}, metadata={})
    admitted = [budget.admit(image, cell, 1)[0] is not None for cell in range(5)]
    assert admitted == [True, True, True, False, False] and budget.total == 3 * (1_900_000 + 2)  # the metadata "{}"
    notes = [budget.admit(image, 3, 1)[1], budget.admit(image, 3, 1)[1]]
    assert notes == ["", ""]  # cell 3 had its note at its first drop
    assert budget.admit(image, 5, 1)[1] == "... output dropped: over the 6 MB a notebook may show ..."


def test_text_is_charged_at_its_worst_size_in_a_page_and_images_at_their_own():
    assert page_bytes("stream", {"text": "<" * 10}) == 10 * TEXT_WEIGHT
    assert page_bytes("display_data", {"data": {"image/png": "A" * 10, "text/html": "b" * 10}, "metadata": {}}) == (
        2 + 10 + 10 * TEXT_WEIGHT)  # "{}" of the metadata, the base64 as it is, HTML escaped


def test_an_error_is_always_kept_once_and_cut_to_its_ends():
    budget = OutputBudget(per_cell=1000, per_notebook=1000, error_chars=100)
    error = message("error", ename="ValueError", evalue="s" + "x" * 10_000_000 + "e", traceback=["t"] * 1000)
    kept, _ = budget.admit(error, 0)
    assert kept is not None and kept["content"]["evalue"].startswith("sxx") and kept["content"]["evalue"].endswith("e")
    assert len(kept["content"]["evalue"]) < 200 and len(kept["content"]["traceback"]) <= 101
    assert budget.admit(error, 0)[0] is None  # a second error of a cell over budget is dropped


def test_metadata_over_its_limit_is_dropped_and_a_stream_stops_at_its_characters():
    budget = OutputBudget(stream_chars=100)
    kept, _ = budget.admit(message("display_data", data={"text/plain": "a"}, metadata={"m": "m" * 20_000}), 0)
    assert kept["content"]["metadata"] == {}
    assert budget.admit(message("stream", name="stdout", text="a" * 100), 1)[0] is not None
    dropped, note = budget.admit(message("stream", name="stdout", text="a"), 1)
    assert dropped is None and note == "... output truncated ..."


def test_sources_over_the_cap_are_replaced_by_a_note_and_locked_cells_are_never_touched():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1" + " " * MAX_CELL_SOURCE),
        nbformat.v4.new_markdown_cell("fine"),
        nbformat.v4.new_markdown_cell("y" * (MAX_CELL_SOURCE + 1)),
    ])
    notes = cap_sources(nb, protected={2})
    assert nb.cells[0].source.startswith("# this cell's") and nb.cells[1].source == "fine"
    assert len(nb.cells[2].source) == MAX_CELL_SOURCE + 1 and len(notes) == 1


def test_outputs_left_over_the_limit_by_any_path_are_cut_after_the_run():
    cells = [nbformat.v4.new_code_cell("x") for _ in range(3)]
    for cell in cells:
        cell.outputs = [nbformat.v4.new_output("error", ename="E", evalue="v", traceback=[]),
                        nbformat.v4.new_output("stream", name="stdout", text="z" * 1_000_000)]
    nb = nbformat.v4.new_notebook(cells=cells)
    notes = cap_outputs(nb, 2_500_000)
    assert len(notes) == 1 and [out.output_type for out in nb.cells[0].outputs] == ["error", "stream"]
    assert "over the limit of a notebook" in nb.cells[0].outputs[1].text


# --- records -------------------------------------------------------------------------------------------------


def _repacked(payload: str, compression: int) -> str:
    plain = zipfile.ZipFile(io.BytesIO(base64.b64decode(payload)))
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", compression) as out:
        for entry in plain.infolist():
            out.writestr(entry.filename, plain.read(entry))
    return base64.b64encode(packed.getvalue()).decode()


def test_a_record_that_would_inflate_is_refused_before_it_is_loaded():
    bomb = _repacked(encode("parameters.check_x", {"t": torch.zeros(50_000_000)}), zipfile.ZIP_DEFLATED)
    assert len(bomb) < 1_000_000  # 200 MB of zeros
    with pytest.raises(ValueError, match="compressed entry"):
        decode(bomb)
    honest = encode("parameters.check_x", {"t": torch.arange(5.0), "n": [1, "a"]})
    assert decode(_repacked(honest, zipfile.ZIP_STORED))[1]["n"] == [1, "a"]


def test_a_record_that_lies_about_its_sizes_or_is_no_archive_is_refused():
    raw = bytearray(base64.b64decode(encode("parameters.check_x", {"t": torch.zeros(10)})))
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (10**9).to_bytes(4, "little")  # the first entry's uncompressed size
    with pytest.raises(ValueError):
        decode(base64.b64encode(bytes(raw)).decode())
    with pytest.raises(ValueError, match="not torch.save's archive"):
        decode(base64.b64encode(pickle.dumps({"check": "x"})).decode())


def test_a_record_that_shares_one_list_over_and_over_is_refused_not_walked():
    laughs = [0]
    for _ in range(40):
        laughs = [laughs, laughs]  # 2**40 leaves, 40 lists
    with pytest.raises(ValueError, match=f"more than {MAX_RECORD_ITEMS:,} values"):
        decode(encode("parameters.check_x", {"laughs": laughs}))


def test_a_tensor_larger_than_its_storage_is_refused():
    expanded = torch.zeros(1).expand(10**6, 10**6)  # 4 TB as the judge would read it, 4 bytes stored
    buffer = io.BytesIO()
    torch.save({"check": "parameters.check_x", "observations": {"t": expanded}}, buffer)
    with pytest.raises(ValueError, match="larger than its storage"):
        decode(base64.b64encode(buffer.getvalue()).decode())


def test_hidden_check_records_are_neither_counted_nor_dropped_by_the_last_cap():
    record = nbformat.v4.new_output("display_data", data={"application/x-record": "r" * 3_000_000})
    cell = nbformat.v4.new_code_cell("check()")
    cell.outputs = [record, nbformat.v4.new_output("stream", name="stdout", text="ok")]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert cap_outputs(nb, 1_000_000, kept=lambda out: "application/x-record" in out.get("data", {})) == []
    assert nb.cells[0].outputs[0] is record and len(nb.cells[0].outputs) == 2
    assert len(cap_outputs(nb, 1_000_000)) == 1 and record not in nb.cells[0].outputs  # without the exception
