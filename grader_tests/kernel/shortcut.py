"""Probes of ``14_shortcut``: the student's ``locate_cue``, ``cue_class`` and ``augmentation`` on hidden maps, models
and scenes. They record what the functions return (for ``augmentation``, what its pipeline makes of hidden scenes
and their masks, with the random generator seeded here). Judged in :mod:`grader_tests.judges.shortcut`.

The hidden maps of ``locate_cue`` are built so that their truth is known: every map holds a bump of heat on a
"cue" in the same grid cell, beside an object bump elsewhere, and among them is one map a thousand times louder
than the others (a share must be taken per map) and one map of zeros (its shares are zero, not 0 / 0).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .inputs import HIDDEN_SEED, calibrated_hidden_model
from .record import Observations, call, call_keeping, probe, snapshot

# --- locate_cue ----------------------------------------------------------------------------------------------

GRID_CASES: tuple[tuple[int, int, int, int, tuple[int, int], torch.dtype], ...] = (
    # (maps, height, width, grid, the cue's cell (row, col), dtype)
    (12, 64, 64, 4, (0, 3), torch.float32),
    (10, 96, 64, 4, (2, 1), torch.float32),  # not square: cells of 24 x 16
    (9, 60, 60, 5, (4, 0), torch.float64),
    (8, 48, 48, 3, (1, 2), torch.float32),
)
"""Cases of the value check of ``locate_cue``."""


def cue_maps(index: int) -> tuple[torch.Tensor, int, tuple[int, int]]:
    """``(maps (N, H, W), grid, cue cell)`` of :data:`GRID_CASES` ``[index]``: non-negative maps, each with an object
    bump at a random place and a smaller bump in the cue's cell; map 1 is 1000 times louder, with its object in
    another cell than the cue's (nor the cue's with row and column swapped), and the last map is zero everywhere."""
    n, height, width, grid, (row, col), dtype = GRID_CASES[index]
    g = torch.Generator().manual_seed(HIDDEN_SEED + 140 + index)
    y = torch.arange(height, dtype=torch.float64).view(-1, 1) + 0.5
    x = torch.arange(width, dtype=torch.float64).view(1, -1) + 0.5
    cell_h, cell_w = height / grid, width / grid

    def bump(cy: float, cx: float, sigma: float) -> torch.Tensor:
        return torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))

    maps = []
    for i in range(n):
        oy, ox = (torch.rand(2, generator=g, dtype=torch.float64) * torch.tensor([height, width])).tolist()
        if i == 1:  # the loud map: its object in a cell that is neither the cue's nor its transpose
            oy, ox = ((row + 2) % grid + 0.5) * cell_h, ((col + 1) % grid + 0.5) * cell_w
        cy = (row + 0.3 + 0.4 * float(torch.rand(1, generator=g))) * cell_h
        cx = (col + 0.3 + 0.4 * float(torch.rand(1, generator=g))) * cell_w
        heat = bump(oy, ox, min(height, width) / 10) + 0.8 * bump(cy, cx, min(cell_h, cell_w) / 4)
        heat = heat + 0.02 * torch.rand(height, width, generator=g, dtype=torch.float64)
        maps.append(heat * (1000.0 if i == 1 else 1.0))
    maps[-1] = torch.zeros(height, width, dtype=torch.float64)
    return torch.stack(maps).to(dtype), grid, (row, col)


@probe
def check_locate_cue(student: Callable[..., Any]) -> Observations:
    """Values of ``locate_cue(maps, grid)`` on hidden maps whose cue cell is known."""
    cells = []
    for index in range(len(GRID_CASES)):
        maps, grid, _ = cue_maps(index)
        cells.append(call(student, maps.clone(), grid))
    return {"cells": cells}


# --- cue_class -----------------------------------------------------------------------------------------------

CLASS_CASES: tuple[dict[str, Any], ...] = (
    # the shortcut model on hidden marked scenes at 128 px, the mark's cell of a 4 x 4 grid
    {"model": "shortcut", "n": 8, "size": 128, "kind": "swapped", "cell": (0, 3), "grid": 4, "train": False},
    {"model": "shortcut", "n": 6, "size": 128, "kind": "random", "cell": (0, 3), "grid": 4, "train": True},
    # the calibrated hidden model on 64 px scenes, another cell and grid, in train mode and in float64
    {"model": "calibrated", "n": 8, "size": 64, "kind": "random", "cell": (2, 1), "grid": 4, "train": True},
    {"model": "calibrated", "n": 6, "size": 64, "kind": "random", "cell": (1, 0), "grid": 2, "train": False,
     "dtype": torch.float64},
)
"""Cases of the value check of ``cue_class``; ``train``: the model is handed over in train mode."""


def class_case(index: int) -> tuple[nn.Module, torch.Tensor, tuple[int, int], int]:
    """``(model, images (N, 3, S, S), cell, grid)`` of :data:`CLASS_CASES` ``[index]``, the model in the case's mode:
    built once per process (:func:`warm`), handed out as a fresh copy."""
    model, images, cell, grid = _class_case(index)
    return copy.deepcopy(model), images.clone(), cell, grid


@functools.lru_cache(maxsize=len(CLASS_CASES))
def _class_case(index: int) -> tuple[nn.Module, torch.Tensor, tuple[int, int], int]:
    from helpers.data import make_shortcut_dataset
    from helpers.pretrained import load_pretrained

    case = CLASS_CASES[index]
    dtype = case.get("dtype", torch.float32)
    model = load_pretrained(variant="shortcut") if case["model"] == "shortcut" else calibrated_hidden_model(dtype)
    images = make_shortcut_dataset(case["n"], HIDDEN_SEED + 14 + index, case["size"], kind=case["kind"]).images
    return model.to(dtype).train(case["train"]), images.to(dtype), case["cell"], case["grid"]


@probe
def check_cue_class(student: Callable[..., Any]) -> Observations:
    """Values of ``cue_class(model, images, cell, grid)``: the shortcut model and the calibrated hidden model, some
    handed over in train mode."""
    classes = []
    for index in range(len(CLASS_CASES)):
        model, images, cell, grid = class_case(index)
        classes.append(call(student, model, images, cell, grid))
    return {"classes": classes}


# --- augmentation --------------------------------------------------------------------------------------------

AUGMENT_SCENES = 6
"""Hidden scenes the pipeline is applied to, each :data:`AUGMENT_DRAWS` times."""
AUGMENT_DRAWS = 3
AUGMENT_SEED = HIDDEN_SEED + 1414


def augment_inputs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(image (3, 128, 128) in [0, 1], masks (2, 128, 128) bool: the object's, the mark's)]``: hidden scenes of
    the shortcut world without pixel noise (object and mark are each one colour), whose marks are all visible
    (built once per process, handed out as fresh copies)."""
    return [(image.clone(), masks.clone()) for image, masks in _augment_inputs()]


def warm() -> None:
    """Build this notebook's hidden inputs (the fork server does, so that every kernel starts with them)."""
    for index in range(len(CLASS_CASES)):
        _class_case(index)
    _augment_inputs()


@functools.lru_cache(maxsize=1)
def _augment_inputs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    from helpers.data import make_shortcut_dataset
    from helpers.images import denormalize

    batch = make_shortcut_dataset(24, AUGMENT_SEED, noise=0.0, kind="random")
    full = batch.cue_masks.flatten(1).sum(1) == batch.cue_masks.flatten(1).sum(1).max()
    chosen = full.nonzero()[:, 0][:AUGMENT_SCENES].tolist()
    return [(denormalize(batch.images[i]), torch.stack([batch.masks[i], batch.cue_masks[i]])) for i in chosen]


def _plain(value: Any) -> Any:
    """Tensor subclasses (``tv_tensors.Image``, ``Mask``) as plain tensors, inside tuples and lists too."""
    if isinstance(value, torch.Tensor):
        return value.as_subclass(torch.Tensor)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value) if isinstance(value, list) else tuple(map(_plain, value))
    return value


@probe
def check_augmentation(student: Callable[..., Any]) -> Observations:
    """What ``augmentation()``'s pipeline makes of hidden scenes and their masks, each several times, the random
    generator seeded here."""
    from torchvision import tv_tensors

    built, pipeline = call_keeping(student)
    if "error" in built:
        return {"built": built, "outputs": []}
    outputs = []
    with torch.random.fork_rng():
        torch.manual_seed(AUGMENT_SEED)
        for image, masks in augment_inputs():
            for _ in range(AUGMENT_DRAWS):
                outcome, value = call_keeping(pipeline, tv_tensors.Image(image.clone()), tv_tensors.Mask(masks.clone()))
                if "error" not in outcome:
                    outcome = {"value": snapshot(_plain(value))}
                outputs.append(outcome)
    return {"built": {"value": None}, "outputs": outputs}
