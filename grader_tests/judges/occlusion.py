"""Occlusion sensitivity (Zeiler and Fergus 2014): the reference and the hidden checks of ``11_occlusion``.
Instructor-only.

Conventions (the notebook states them; captum's ``Occlusion`` follows the same, ``tests/test_occlusion_checks.py``):
a ``window x window`` square, moved by ``stride`` pixels, starts at ``0, stride, 2 stride, ...`` along each axis,
``ceil((L - window) / stride) + 1`` positions for an axis of ``L`` pixels, the last one clipped at the border. The
drop at a position is ``s_y(x) - s_y(x with the window's pixels, all channels, set to fill)``, computed in eval
mode and without autograd. The map gives each pixel the mean drop of the windows that cover it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grader_tests.kernel.occlusion import DROP_CASES, MAP_CASES, drop_case, drop_grid, positions
from grader_tests.kernel.record import Observations
from helpers.inference import evaluating

from . import judge, reference
from .common import (
    assert_batched,
    assert_computed_in_eval_mode,
    assert_input_untouched,
    assert_tensor_close,
    matches_mistake,
    tolerance,
)
from .records import returned

# --- reference --------------------------------------------------------------------------------------------


def occluded_copies(image: torch.Tensor, window: int, stride: int, fill: float) -> torch.Tensor:
    """``(rows * cols, 3, H, W)``: the image with each window position set to ``fill``, row-major."""
    height, width = image.shape[-2:]
    copies = []
    for r in range(positions(height, window, stride)):
        for c in range(positions(width, window, stride)):
            copy = image.clone()
            copy[:, r * stride : r * stride + window, c * stride : c * stride + window] = fill
            copies.append(copy)
    return torch.stack(copies)


def occlusion_drops(
    model: nn.Module, image: torch.Tensor, class_idx: int, window: int, stride: int, fill: float = 0.0,
    batch_size: int = 8,
) -> torch.Tensor:
    """``(rows, cols)``: the drop of logit ``class_idx`` when each window position of ``image (3, H, W)`` is filled."""
    height, width = image.shape[-2:]
    copies = occluded_copies(image, window, stride, fill)
    with evaluating(model), torch.no_grad():
        clean = model(image[None])[0, class_idx]
        scores = torch.cat([model(chunk)[:, class_idx] for chunk in copies.split(batch_size)])
    return (clean - scores).view(positions(height, window, stride), positions(width, window, stride))


def covering_sum(drops: torch.Tensor, window: int, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)``: each pixel's sum of the drops of the windows that cover it: a transposed convolution with a
    ``window x window`` kernel of ones and ``stride``, cropped to ``size`` (the windows clipped at the border)."""
    ones = torch.ones(1, 1, window, window, dtype=drops.dtype)
    return F.conv_transpose2d(drops[None, None], ones, stride=stride)[0, 0, : size[0], : size[1]]


def occlusion_map(drops: torch.Tensor, window: int, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)``: each pixel's mean drop over the windows that cover it."""
    return covering_sum(drops, window, stride, size) / covering_sum(torch.ones_like(drops), window, stride, size)


# --- judges -----------------------------------------------------------------------------------------------


@reference(range(len(DROP_CASES)))
def _drops_reference(index: int) -> tuple[str, torch.Tensor, torch.Tensor, float]:
    """``(what, image, expected, scale)`` of :data:`DROP_CASES` ``[index]``, ``scale`` the largest logit's size:
    computed once per process, as it depends only on the hidden case (callers only read it)."""
    model, image, class_idx, window, stride, fill, batch_size = drop_case(index)
    what = (f"occlusion_drops(model, image, {class_idx}, window={window}, stride={stride}, fill={fill}) on an "
            f"image of shape {tuple(image.shape)} ({image.dtype})")
    expected = occlusion_drops(model, image, class_idx, window, stride, fill, batch_size)
    with torch.no_grad():
        scale = model(image[None]).abs().max()  # drops are differences of logits of this size
    return what, image, expected, float(scale)


@judge
def check_occlusion_drops(observations: Observations) -> None:
    """Values of ``occlusion_drops`` on hidden models and images (clipped windows, non-square, fills, float64),
    and the caller's image left as it was (the side effect of this cell: occluding the caller's image in place
    also gives wrong values, so it costs this cell alone)."""
    for index, outcome in enumerate(observations["drops"]):
        if index >= len(DROP_CASES):
            break
        what, image, expected, scale = _drops_reference(index)
        limits = tolerance(expected)
        limits["atol"] = max(limits["atol"], (1e-9 if expected.dtype == torch.float64 else 1e-5) * scale)
        actual = returned(outcome, what)
        if index < len(observations["inputs"]):
            assert_input_untouched(observations["inputs"][index], image, what)
        if matches_mistake(actual, -expected, limits):
            raise AssertionError(f"{what} has the sign reversed: the drop is s_y(image) - s_y(occluded image)")
        assert_tensor_close(actual, expected, what, **limits)
    if len(observations["drops"]) != len(DROP_CASES):
        raise AssertionError("occlusion_drops: the hidden check did not record every case")


@reference()
def _batched_copies() -> tuple[int, int]:
    """``(occluded copies, batch_size)`` of the batching check's case, :data:`DROP_CASES` ``[1]``: computed once per
    process, as it depends only on the hidden case."""
    _, image, _, window, stride, _, batch_size = drop_case(1)
    return positions(image.shape[-2], window, stride) * positions(image.shape[-1], window, stride), batch_size


@judge
def check_occlusion_drops_batched(observations: Observations) -> None:
    """``occlusion_drops`` computes in eval mode and restores the modes, and calls the model (or a copy of it)
    with at most ``batch_size`` images at a time, in as few calls as that allows (one more for the clean image is
    fine). No reference: wrong values and the caller's image are the cell of ``check_occlusion_drops``."""
    copies, batch_size = _batched_copies()
    what = "occlusion_drops"
    assert_computed_in_eval_mode(observations, what)
    assert_batched(observations["batches"], copies, batch_size, what, "occluded copies", extra_calls=1)  # + clean


@judge
def check_occlusion_map(observations: Observations) -> None:
    """Values of ``occlusion_map(drops, window, stride, size)`` on hidden drop grids and sizes."""
    for index, outcome in enumerate(observations["maps"]):
        if index >= len(MAP_CASES):
            break
        drops, window, stride, size = drop_grid(index)
        what = f"occlusion_map(drops of shape {tuple(drops.shape)}, window={window}, stride={stride}, size={size})"
        expected = occlusion_map(drops, window, stride, size)
        actual = returned(outcome, what)
        summed = covering_sum(drops, window, stride, size)
        if matches_mistake(actual, summed, tolerance(expected)) and not torch.equal(summed, expected):
            raise AssertionError(f"{what} adds up the drops of the windows that cover a pixel: divide by their number")
        assert_tensor_close(actual, expected, what, **tolerance(expected))
    if len(observations["maps"]) != len(MAP_CASES):
        raise AssertionError("occlusion_map: the hidden check did not record every case")
