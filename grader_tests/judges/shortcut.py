"""Finding and removing a shortcut: the references and the hidden checks of ``14_shortcut``. Instructor-only.

Conventions (the notebook states them):

* ``locate_cue(maps, grid)``: the ``(row, col)`` of the cell of a ``grid x grid`` split of the maps (rows of
  ``H / grid`` pixels, columns of ``W / grid``) that holds the largest share of the heat, each map's share per
  cell taken on its own and then averaged over the maps; a map that is zero everywhere has a share of 0 everywhere.
* ``cue_class(model, images, cell, grid)``: for each image, the class whose logit drops most when the cell is filled
  with 0 in all channels, computed in eval mode.
* ``augmentation()``: a pipeline ``(image, masks) -> (image, masks)`` of the same shapes that keeps each mask on
  the pixels it marks and breaks the mark as a signal (cut out, or no longer of its class's hue) in at least half of
  the outputs, the object kept.
"""

from __future__ import annotations

from typing import Any

import torch

from grader_tests.kernel.record import Observations
from grader_tests.kernel.shortcut import (
    AUGMENT_DRAWS, CLASS_CASES, GRID_CASES, augment_inputs, class_case, cue_maps,
)
from helpers.inference import evaluating
from helpers.metrics import dilate

from . import judge, reference
from .records import Foreign, Recorded, returned

# --- references ----------------------------------------------------------------------------------------------


def cell_shares(maps: torch.Tensor, grid: int) -> torch.Tensor:
    """``(N, grid, grid)``: each map's share of its heat in each cell (0 for a map that is zero everywhere)."""
    n, height, width = maps.shape
    sums = maps.double().reshape(n, grid, height // grid, grid, width // grid).sum((2, 4))
    total = sums.sum((1, 2), keepdim=True)
    return torch.where(total > 0, sums / total.clamp_min(1e-300), torch.zeros_like(sums))


def locate_cue(maps: torch.Tensor, grid: int) -> tuple[int, int]:
    """``(row, col)`` of the cell with the largest mean share."""
    mean = cell_shares(maps, grid).mean(0)
    row, col = divmod(int(mean.argmax()), grid)
    return row, col


def occlude_cell(images: torch.Tensor, cell: tuple[int, int], grid: int) -> torch.Tensor:
    """Copies of ``images (N, 3, H, W)`` with the cell ``(row, col)`` of a ``grid x grid`` split set to 0."""
    height, width = images.shape[-2:]
    (row, col), h, w = cell, height // grid, width // grid
    occluded = images.clone()
    occluded[..., row * h : (row + 1) * h, col * w : (col + 1) * w] = 0
    return occluded


def cue_drops(model: torch.nn.Module, images: torch.Tensor, cell: tuple[int, int], grid: int) -> torch.Tensor:
    """``(N, classes)``: each logit's drop when the cell is occluded, in eval mode."""
    with evaluating(model), torch.no_grad():
        return model(images) - model(occlude_cell(images, cell, grid))


def cue_class(model: torch.nn.Module, images: torch.Tensor, cell: tuple[int, int], grid: int) -> torch.Tensor:
    """``(N,)`` int64: the class whose logit drops most when the cell is occluded."""
    return cue_drops(model, images, cell, grid).argmax(1)


def hue_saturation(rgb: torch.Tensor) -> tuple[float, float]:
    """Hue in [0, 1) and saturation in [0, 1] of one colour ``(3,)`` in [0, 1]."""
    r, g, b = (float(c) for c in rgb.clamp(0, 1))
    high, low = max(r, g, b), min(r, g, b)
    if high <= 0 or high == low:
        return 0.0, 0.0
    span = high - low
    if high == r:
        hue = ((g - b) / span) % 6
    elif high == g:
        hue = (b - r) / span + 2
    else:
        hue = (r - g) / span + 4
    return hue / 6, span / high


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return ~dilate(~mask[None], radius)[0]


# --- judges --------------------------------------------------------------------------------------------------


def _cell_of(value: Any) -> tuple[int, int] | None:
    """A recorded ``(row, col)`` as two ints; ``None`` if it is not two integers."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    cell = []
    for item in value:
        if isinstance(item, Recorded):
            if item.tensor.numel() != 1 or item.tensor.is_floating_point() or item.tensor.dtype == torch.bool:
                return None
            item = int(item.tensor.reshape(()))
        if not isinstance(item, int) or isinstance(item, bool):
            return None
        cell.append(item)
    return cell[0], cell[1]


@reference(range(len(GRID_CASES)))
def _locate_reference(index: int) -> tuple[str, tuple[int, int]]:
    """``(what, expected cell)`` of :data:`GRID_CASES` ``[index]``: computed once per process, as it depends only on
    the hidden case."""
    maps, grid, truth = cue_maps(index)
    n, height, width = maps.shape
    expected = locate_cue(maps, grid)
    assert expected == truth, "the hidden maps lost their cue"
    return f"locate_cue on {n} maps of {height} x {width} ({maps.dtype}) with grid={grid}", expected


@judge
def check_locate_cue(observations: Observations) -> None:
    """Values of ``locate_cue(maps, grid)`` on hidden maps whose cue cell is known."""
    for index, outcome in enumerate(observations["cells"]):
        if index >= len(GRID_CASES):
            break
        what, expected = _locate_reference(index)
        actual = _cell_of(returned(outcome, what))
        if actual is None:
            raise AssertionError(f"{what} should return (row, col): two ints")
        if actual == (expected[1], expected[0]):
            raise AssertionError(f"{what} returned (column, row): the first number is the row (counted down the image)")
        if actual != expected:
            maps, grid, _ = cue_maps(index)
            n, height, width = maps.shape
            sums = maps.double().reshape(n, grid, height // grid, grid, width // grid).sum((2, 4))
            if actual == divmod(int((sums / sums.sum((1, 2), keepdim=True)).mean(0).argmax()), grid):
                raise AssertionError(f"{what} divides a map of zeros by its total (0 / 0 is NaN): give such a map a "
                                     "share of 0 in every cell")
            loud = locate_cue(maps[1:2], grid)
            if actual == loud:
                raise AssertionError(
                    f"{what} follows the loudest map: take each map's share of its own heat before averaging")
            raise AssertionError(f"{what} names another cell than the one that holds the largest mean share")
    if len(observations["cells"]) != len(GRID_CASES):
        raise AssertionError("locate_cue: the hidden check did not record every case")


@reference(range(len(CLASS_CASES)))
def _cue_reference(index: int) -> tuple[str, torch.Tensor]:
    """``(what, drops (N, classes))`` of :data:`CLASS_CASES` ``[index]``: computed once per process, as it depends
    only on the hidden case (callers only read it)."""
    model, images, cell, grid = class_case(index)
    case = CLASS_CASES[index]
    mode = " (handed over in train mode)" if case["train"] else ""
    what = (f"cue_class on {len(images)} images of {tuple(images.shape[1:])} ({images.dtype}), cell={cell}, "
            f"grid={grid}, the {case['model']} model{mode}")
    return what, cue_drops(model, images, cell, grid)


@judge
def check_cue_class(observations: Observations) -> None:
    """Values of ``cue_class(model, images, cell, grid)`` on the shortcut model and the calibrated hidden model."""
    for index, outcome in enumerate(observations["classes"]):
        if index >= len(CLASS_CASES):
            break
        what, drops = _cue_reference(index)
        expected = drops.argmax(1)
        actual = returned(outcome, what)
        if isinstance(actual, Foreign) or not isinstance(actual, Recorded):
            name = actual.type_name if isinstance(actual, Foreign) else type(actual).__name__
            raise AssertionError(f"{what} should return a torch.Tensor of class indices, got {name}")
        tensor = actual.tensor
        if tuple(tensor.shape) != tuple(expected.shape):
            raise AssertionError(f"{what} has shape {tuple(tensor.shape)}, expected {tuple(expected.shape)}")
        if tensor.is_floating_point() or tensor.dtype == torch.bool:
            raise AssertionError(f"{what} should hold class indices (integers), got {tensor.dtype}")
        tensor = tensor.long()
        if torch.equal(tensor, expected):
            continue
        if torch.equal(tensor, drops.argmin(1)):
            raise AssertionError(f"{what} picks the smallest drop: the drop is s_c(image) - s_c(occluded image), "
                                 "and the mark's class loses the most")
        model, images, cell, grid = class_case(index)
        with evaluating(model), torch.no_grad():
            occluded = model(occlude_cell(images, cell, grid)).argmax(1)
        if torch.equal(tensor, occluded):
            raise AssertionError(f"{what} returns the prediction on the occluded images, not the class that lost the "
                                 "most when the cell was hidden")
        if CLASS_CASES[index]["train"]:
            raise AssertionError(f"{what} returns wrong classes: compute in eval mode (helpers.evaluating), and check "
                                 "which pixels you occlude")
        raise AssertionError(f"{what} returns wrong classes on inputs you have not seen")
    if len(observations["classes"]) != len(CLASS_CASES):
        raise AssertionError("cue_class: the hidden check did not record every case")


MIN_ALIGNED = 0.9
"""Share of the outputs whose masks must lie on what they mark."""
MIN_BROKEN = 0.5
"""Share of the outputs whose mark must be broken (cut out, or of another hue or grey)."""
MIN_OBJECT_KEPT = 0.8
"""Share of the outputs that must still show their object."""


def _uniform_inside(image: torch.Tensor, mask: torch.Tensor) -> bool | None:
    """Whether the image is one colour inside the mask (eroded by 2 px: resampled edges blur), as the object and
    the mark of the hidden scenes are; ``None`` when too little of the mask is left to tell."""
    inside = erode(mask, 2)
    if int(inside.sum()) < 12:
        return None
    pixels = image[:, inside]
    colour = pixels.median(dim=1).values
    close = ((pixels - colour[:, None]).abs().amax(0) < 0.1).float().mean()
    return bool(close >= 0.8)


def mark_broken(image: torch.Tensor, mark: torch.Tensor, original_mark: torch.Tensor, original_image: torch.Tensor) -> bool:
    """Whether a mark no longer signals its class: (almost) cut out, or no longer of its class's hue, or grey."""
    if int(mark.sum()) < 0.25 * int(original_mark.sum()):
        return True
    inside = erode(mark, 1)
    region = inside if int(inside.sum()) >= 4 else mark
    hue, saturation = hue_saturation(image[:, region].mean(1))
    original_hue, _ = hue_saturation(original_image[:, original_mark].mean(1))
    distance = abs(hue - original_hue)
    return min(distance, 1 - distance) >= 1 / 12 or saturation < 0.3


@judge
def check_augmentation(observations: Observations) -> None:
    """``augmentation()``'s pipeline on hidden scenes: the shapes of what it returns, masks on what they mark, the
    object kept, and the mark broken as a signal in at least half of the outputs."""
    what = "augmentation()"
    returned(observations["built"], what)
    inputs = augment_inputs()
    outputs = observations["outputs"]
    if len(outputs) != len(inputs) * AUGMENT_DRAWS:
        raise AssertionError(f"{what}: the hidden check did not record every case")
    aligned, broken, kept = [], [], []
    for index, outcome in enumerate(outputs):
        image_in, masks_in = inputs[index // AUGMENT_DRAWS]
        value = returned(outcome, f"the pipeline of {what} called as pipeline(image, masks)")
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, Recorded) for v in value):
            raise AssertionError(f"the pipeline of {what} should return (image, masks): two tensors, as it was called")
        image, masks = (v.tensor for v in value)
        if tuple(image.shape) != tuple(image_in.shape) or not image.is_floating_point():
            raise AssertionError(f"the pipeline of {what} turns an image of shape {tuple(image_in.shape)} into one of "
                                 f"shape {tuple(image.shape)} ({image.dtype}): keep the size and float pixels")
        if tuple(masks.shape) != tuple(masks_in.shape):
            raise AssertionError(f"the pipeline of {what} turns masks of shape {tuple(masks_in.shape)} into shape "
                                 f"{tuple(masks.shape)}: transform the masks with the image")
        image, masks = image.double(), masks > 0.5 if masks.is_floating_point() else masks.bool()
        kept.append(bool(masks[0].sum() >= 0.3 * masks_in[0].sum()))
        for channel in range(2):
            uniform = _uniform_inside(image, masks[channel])
            if uniform is not None:
                aligned.append(uniform)
        broken.append(mark_broken(image, masks[1], masks_in[1], image_in.double()))
    if not aligned or sum(aligned) < MIN_ALIGNED * len(aligned):
        share = 1 - sum(aligned) / max(1, len(aligned))
        raise AssertionError(
            f"the masks the pipeline of {what} returns are off the pixels they mark in {share:.0%} of the outputs: "
            "a transform that moves the image must move its masks the same way (pass both to each v2 transform)")
    if sum(kept) < MIN_OBJECT_KEPT * len(kept):
        raise AssertionError(
            f"the pipeline of {what} cuts most of the object out of {1 - sum(kept) / len(kept):.0%} of the outputs: "
            "the label then names a shape the image does not show (crop less)")
    if sum(broken) < MIN_BROKEN * len(broken):
        raise AssertionError(
            f"the mark still signals its class in {1 - sum(broken) / len(broken):.0%} of the outputs of the pipeline of "
            f"{what}: moving it (flips, crops, rotations) is not enough, a convolution finds it anywhere; break what "
            "it signals")
