"""The table of every attribution method on 200 held-out images (``scripts/attribution_table.py``), shipped with
the helpers for notebook 12: complete, readable, and equal to a recomputation of a sample of its rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from script_loader import load_script

import helpers

ROOT = Path(__file__).resolve().parents[1]


script = load_script("attribution_table")
IMAGES = 200


@pytest.fixture(scope="module")
def table():
    return helpers.load_attribution_table()


def test_every_model_method_and_image_is_in_the_table(table):
    assert list(table) == ["course", "standard"]
    for model in table.values():
        assert list(model) == list(script.METHODS)
        for column in model.values():
            assert column["hit"].dtype == torch.bool and column["hit"].shape == (IMAGES,)
            assert ((column["share"] >= 0) & (column["share"] <= 1)).all()
            assert torch.equal(column["area"], table["course"]["saliency"]["area"])  # the same images throughout


@pytest.mark.parametrize(("model_name", "index"), [("course", 0), ("course", 137), ("standard", 199)])
def test_a_recomputed_row_equals_the_shipped_one(table, model_name, index):
    data = helpers.make_dataset(1, seed=script.SEED, start=index)
    model = helpers.load_pretrained() if model_name == "course" else helpers.load_pretrained(variant="standard")
    for row in script.rows(model_name, model, data.images, data.labels, data.masks, first=index):
        shipped = table[model_name][row["method"]]
        what = f"{model_name}/{row['method']}/image {index}"
        assert bool(row["hit"]) == bool(shipped["hit"][index]), what
        assert row["share"] == pytest.approx(float(shipped["share"][index]), abs=1e-4), what
        assert row["area"] == pytest.approx(float(shipped["area"][index]), abs=1e-6), what


def test_the_loader_refuses_rows_out_of_order(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("model,image,method,hit,share,area\ncourse,1,CAM,1,0.5,0.1\ncourse,0,CAM,0,0.2,0.1\n")
    with pytest.raises(ValueError, match="not in image order"):
        helpers.load_attribution_table(path)


def test_what_notebook_12_reads_in_the_table(table):
    """Its reading rests on these (a regenerated table must keep them true): with the course model every method
    finds the object; with the standard model the gradient at the image is near chance, and SmoothGrad, occlusion,
    CAM and Grad-CAM find the object."""
    area = table["course"]["saliency"]["area"]
    for method, column in table["course"].items():
        assert column["hit"].double().mean() > 0.9 and (column["share"] / area).mean() > 5, method
    standard = {method: column["hit"].double().mean() for method, column in table["standard"].items()}
    assert standard["saliency"] < 0.2 and (table["standard"]["saliency"]["share"] / area).mean() < 1.5
    assert min(standard[m] for m in ("SmoothGrad", "occlusion", "CAM", "Grad-CAM")) > 0.9
