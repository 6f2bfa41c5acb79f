"""Results computed by the course's scripts, shipped with the package because no notebook could compute them
in its time: ``attributions.csv``, every attribution method of the course on 200 held-out images
(``scripts/attribution_table.py``, read by notebook 12)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

ATTRIBUTIONS = Path(__file__).parent / "attributions.csv"


def load_attribution_table(path: Path = ATTRIBUTIONS) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """``table[model][method]``: ``{"hit": (N,) bool, "share": (N,) float64, "area": (N,) float64}`` over the
    held-out images, in image order. ``hit``: the map's maximum lies on the object grown by 16 px; ``share``: the
    map's share on the object; ``area``: the object's share of the image (``share / area`` is notebook 5's ratio).
    Models ``"course"`` and ``"standard"``; methods in the order of the file."""
    columns: dict[tuple[str, str], dict[str, list]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            column = columns.setdefault((row["model"], row["method"]), {"image": [], "hit": [], "share": [], "area": []})
            column["image"].append(int(row["image"]))
            column["hit"].append(row["hit"] == "1")
            column["share"].append(float(row["share"]))
            column["area"].append(float(row["area"]))
    table: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for (model, method), column in columns.items():
        if column["image"] != sorted(column["image"]):
            raise ValueError(f"{path}: the rows of {model}/{method} are not in image order")
        table.setdefault(model, {})[method] = {
            "hit": torch.tensor(column["hit"]),
            "share": torch.tensor(column["share"], dtype=torch.float64),
            "area": torch.tensor(column["area"], dtype=torch.float64),
        }
    return table
