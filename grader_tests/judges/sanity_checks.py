"""Sanity checks (Adebayo et al. 2018) and deletion / insertion curves (Petsiuk et al. 2018): the references and
the hidden checks of ``13_sanity_checks``. Instructor-only.

Conventions (the notebook states them; ``tests/test_sanity_checks_checks.py`` compares the references with scipy,
by-hand curves and numpy):

* ``rank_correlation(maps_a, maps_b)``: for each of the ``N`` pairs of maps ``(N, ...)``, the Pearson correlation
  of the ranks of their flattened values, tied values getting the average of the ranks they span
  (``scipy.stats.spearmanr``; ``rankdata(method="average")``).
* ``perturbation_curve(model, start, end, saliency, class_idx, step, batch_size)``: pixels in order of decreasing
  saliency; point ``k = 0 .. K``, ``K = ceil(H W / step)``, is the softmax probability of ``class_idx`` for the
  image that holds ``end`` (all channels) at the ``min(k step, H W)`` first pixels of that order and ``start``
  elsewhere; in eval mode, without autograd, in batches of at most ``batch_size`` images.
* ``curve_area(curve, step, pixels)``: the trapezoid rule over the fractions ``min(k step, pixels) / pixels``.
"""

from __future__ import annotations

import torch
from torch import nn

from grader_tests.kernel.record import Observations
from grader_tests.kernel.sanity_checks import (
    AREA_CASES,
    BATCHED_SIZE,
    CURVE_CASES,
    RANK_CASES,
    area_curve,
    curve_case,
    rank_pair,
    steps,
)
from helpers.inference import evaluating

from . import judge, reference
from .common import (
    assert_batched,
    assert_computed_in_eval_mode,
    assert_input_untouched,
    assert_tensor_close,
    matches_mistake,
)
from .records import Foreign, Recorded, returned

# --- reference --------------------------------------------------------------------------------------------


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``1 .. n`` of a 1-D tensor, tied values sharing the average of the ranks they span."""
    _, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).to(torch.float64)  # the highest rank of each distinct value
    return (last - (counts - 1) / 2)[inverse]


def ordinal_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``1 .. n``, ties broken by position (a mistake the value check names: right without ties only)."""
    order = torch.argsort(values, stable=True)
    ranks = torch.empty(values.numel(), dtype=torch.float64)
    ranks[order] = torch.arange(1, values.numel() + 1, dtype=torch.float64)
    return ranks


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm())


def rank_correlation(maps_a: torch.Tensor, maps_b: torch.Tensor, ranks=average_ranks) -> torch.Tensor:
    """``(N,)`` float64: the Spearman rank correlation of each pair of maps ``(N, ...)``."""
    a, b = maps_a.detach().flatten(1).double(), maps_b.detach().flatten(1).double()
    return torch.stack([_pearson(ranks(x), ranks(y)) for x, y in zip(a, b)])


def order_by_saliency(saliency: torch.Tensor) -> torch.Tensor:
    """Flat pixel indices in order of decreasing saliency (ties: the lower index first)."""
    return torch.argsort(saliency.flatten(), descending=True, stable=True)


def perturbed_images(start: torch.Tensor, end: torch.Tensor, saliency: torch.Tensor, step: int) -> torch.Tensor:
    """``(K + 1, C, H, W)``: image ``k`` holds ``end`` at the ``min(k step, H W)`` most salient pixels."""
    pixels = saliency.numel()
    order = order_by_saliency(saliency)
    images = []
    for k in range(steps(pixels, step) + 1):
        taken = torch.zeros(pixels, dtype=torch.bool)
        taken[order[: min(k * step, pixels)]] = True
        images.append(torch.where(taken.view(saliency.shape), end, start))
    return torch.stack(images)


def perturbation_curve(
    model: nn.Module, start: torch.Tensor, end: torch.Tensor, saliency: torch.Tensor, class_idx: int, step: int,
    batch_size: int = 16,
) -> torch.Tensor:
    """``(K + 1,)``: the softmax probability of ``class_idx`` as ``end`` replaces ``start``, most salient first."""
    images = perturbed_images(start, end, saliency, step)
    with evaluating(model), torch.no_grad():
        return torch.cat([model(chunk).softmax(1)[:, class_idx] for chunk in images.split(batch_size)])


def fractions(count: int, step: int, pixels: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The share of the pixels changed at each of the ``count`` points of a curve."""
    return (torch.arange(count, dtype=torch.float64) * step).clamp_max(pixels).div(pixels).to(dtype)


def curve_area(curve: torch.Tensor, step: int, pixels: int) -> torch.Tensor:
    """The area under ``curve`` over the fractions of changed pixels (trapezoid rule), in float64."""
    curve = curve.detach().double()
    return torch.trapezoid(curve, fractions(len(curve), step, pixels))


def area_tolerance(curve: torch.Tensor) -> float:
    """How far a right ``curve_area`` may be from the float64 reference: each fraction ``t_k`` and each point
    may be rounded to float32 on the way (the text asks for a float, not for float64), an error of at most
    ``eps32`` relative each; the trapezoid sum adds ``K`` terms of widths ``<= 1`` and heights ``<= max|c|``, so
    the area moves by at most ``4 (K + 1) eps32 max(1, max|c|)`` (a factor 2 for the widths' two ends, 2 for
    the sums); 4.8e-6 for a curve of 9 points."""
    points = len(curve)
    scale = max(1.0, float(curve.detach().double().abs().max()))
    return 4 * (points + 1) * torch.finfo(torch.float32).eps * scale


# --- judges -----------------------------------------------------------------------------------------------


@judge
def check_rank_correlation(observations: Observations) -> None:
    """Values of ``rank_correlation`` on hidden pairs of maps: no ties, many ties, more than two dimensions."""
    right_without_ties = False
    for index, outcome in enumerate(observations["values"]):
        if index >= len(RANK_CASES):
            break
        a, b = rank_pair(index)
        shape, kind, dtype = RANK_CASES[index]
        what = f"rank_correlation(maps_a, maps_b) on maps of shape {shape} ({dtype}, {kind} values)"
        expected = rank_correlation(a, b)
        actual = returned(outcome, what)
        limits = {"rtol": 1e-4, "atol": 1e-5}
        if kind == "continuous":
            right_without_ties = matches_mistake(actual, expected, limits)
        elif right_without_ties and not matches_mistake(actual, expected, limits) and matches_mistake(actual, expected, {"rtol": 0, "atol": 0.2}):
            raise AssertionError(f"{what} is right for maps without ties but not for maps with tied values: give "
                                 "every tied value the average of the ranks they span")
        assert_tensor_close(actual, expected, what, **limits)
    if len(observations["values"]) != len(RANK_CASES):
        raise AssertionError("rank_correlation: the hidden check did not record every case")


@reference(range(len(CURVE_CASES)))
def _curve_reference(index: int) -> tuple[str, tuple[tuple[str, torch.Tensor], ...], torch.Tensor]:
    """``(what, the caller's tensors as they were, expected)`` of :data:`CURVE_CASES` ``[index]``: computed once per
    process, as it depends only on the hidden case (callers only read it)."""
    model, start, end, saliency, class_idx, step, batch_size = curve_case(index)
    kind = CURVE_CASES[index][2]
    what = (f"perturbation_curve(model, start, end, saliency, {class_idx}, step={step}) ({kind}) on images of "
            f"shape {tuple(start.shape)} ({start.dtype})")
    originals = (("start", start), ("end", end), ("saliency", saliency))
    return what, originals, perturbation_curve(model, start, end, saliency, class_idx, step, batch_size)


@judge
def check_perturbation_curve(observations: Observations) -> None:
    """Values of ``perturbation_curve`` on hidden models, images and signed saliency maps (deletion, insertion,
    steps that do not divide the number of pixels, non-square, float64), and the caller's ``start``, ``end`` and
    ``saliency`` left as they were (the side effect of this cell, the one whose visible check asserts it)."""
    for index, outcome in enumerate(observations["curves"]):
        if index >= len(CURVE_CASES):
            break
        what, originals, expected = _curve_reference(index)
        actual = returned(outcome, what)
        if index < len(observations["inputs"]):
            for name, original in originals:
                assert_input_untouched(observations["inputs"][index][name], original, f"{what} ({name})")
        limits = {"rtol": 1e-4, "atol": 1e-9 if expected.dtype == torch.float64 else 1e-5}
        if not matches_mistake(actual, expected, limits):
            model, start, end, saliency, class_idx, step, _ = curve_case(index)
            mistakes = (
                (-saliency, "takes the least salient pixels first: order by decreasing saliency"),
                (saliency.abs(), "orders the pixels by |saliency|: order by the signed values, largest first (a "
                                 "negative value comes after every positive one)"),
            )
            for order, message in mistakes:
                if matches_mistake(actual, perturbation_curve(model, start, end, order, class_idx, step), limits):
                    raise AssertionError(f"{what} {message}")
        assert_tensor_close(actual, expected, what, **limits)
    if len(observations["curves"]) != len(CURVE_CASES):
        raise AssertionError("perturbation_curve: the hidden check did not record every case")


@reference()
def _batched_images() -> int:
    """The number of images of the batching check's curve, :data:`CURVE_CASES` ``[1]``: computed once per process,
    as it depends only on the hidden case."""
    _, _, _, saliency, _, step, _ = curve_case(1)
    return steps(saliency.numel(), step) + 1


@judge
def check_perturbation_curve_batched(observations: Observations) -> None:
    """``perturbation_curve`` computes in eval mode and restores the modes, and calls the model (or a copy of it)
    with at most ``batch_size`` images at a time, in as few calls as that allows (two more, for the first and the
    last image, are fine). No reference: wrong values and the caller's tensors are the cell of
    ``check_perturbation_curve``."""
    what = "perturbation_curve"
    assert_computed_in_eval_mode(observations, what)
    assert_batched(observations["batches"], _batched_images(), BATCHED_SIZE, what, "images", extra_calls=2)


@judge
def check_curve_area(observations: Observations) -> None:
    """Values of ``curve_area(curve, step, pixels)`` on hidden curves, with equal steps and a shorter last one."""
    for index, outcome in enumerate(observations["areas"]):
        if index >= len(AREA_CASES):
            break
        curve, step, pixels = area_curve(index)
        what = f"curve_area(curve of {len(curve)} points, step={step}, pixels={pixels})"
        expected = float(curve_area(curve, step, pixels))
        value = returned(outcome, what)
        if isinstance(value, Recorded):
            if value.tensor.numel() != 1 or not value.tensor.is_floating_point():
                raise AssertionError(f"{what} should be one float (or a tensor holding one), got a tensor of shape "
                                     f"{tuple(value.tensor.shape)} ({value.tensor.dtype})")
            value = float(value.tensor.reshape(()))
        if isinstance(value, (Foreign, bool)) or not isinstance(value, (int, float)):
            name = value.type_name if isinstance(value, Foreign) else type(value).__name__
            raise AssertionError(f"{what} should be a float, got {name}")  # noqa: TRY004 - a judge's verdict
        even = float(torch.trapezoid(curve.double(), dx=1 / (len(curve) - 1)))
        tol = area_tolerance(curve)
        if pixels % step and abs(value - even) <= tol and abs(expected - even) > tol:
            raise AssertionError(f"{what} spaces the points evenly: the last step changes only the pixels that are "
                                 "left, so the last point is closer to the one before")
        if not abs(value - expected) <= tol:
            raise AssertionError(f"{what} has wrong values on inputs you have not seen")
    if len(observations["areas"]) != len(AREA_CASES):
        raise AssertionError("curve_area: the hidden check did not record every case")

