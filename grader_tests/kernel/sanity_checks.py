"""Probes of ``13_sanity_checks``: the student's ``rank_correlation``, ``perturbation_curve`` and ``curve_area`` on
hidden maps, models, images and curves. They record what the functions return, the size of every batch the model
was called with, the modes and the caller's tensors. Judged in :mod:`grader_tests.judges.sanity_checks`, whose
references agree with ``scipy.stats.spearmanr``, with a by-hand deletion / insertion curve and with
``numpy.trapezoid`` (``tests/test_sanity_checks_checks.py``).

Cases cover maps with many ties (ReLU'd and rounded), maps of more than two dimensions, float64, steps that do
not divide the number of pixels (the last step is shorter), non-square images, and deletion and insertion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .facts import BatchRecorder, call_in_train_mode, input_state
from .inputs import HIDDEN_SEED, cached_hidden_images, calibrated_hidden_model
from .record import Observations, call, probe

RANK_CASES: tuple[tuple[tuple[int, ...], str, torch.dtype], ...] = (
    # (shape, kind, dtype): kind "continuous" (no ties), "relu" (many zeros), "rounded" (ties everywhere), "mixed"
    ((4, 8, 8), "continuous", torch.float32),
    ((3, 16, 16), "relu", torch.float64),
    ((2, 12, 12), "rounded", torch.float32),
    ((2, 3, 10, 10), "mixed", torch.float64),  # maps of more than two dimensions: every value of a map counts
    ((1, 50), "rounded", torch.float64),
)
"""Cases of the value check of ``rank_correlation``."""

CURVE_CASES: tuple[tuple[int, int, str, int, int, torch.dtype], ...] = (
    # (image, class, kind, step, batch_size, dtype) on 64 x 64 hidden images, or 80 x 64 for image 2
    (0, 1, "deletion", 512, 16, torch.float32),  # 4096 pixels, 8 steps of 512: 9 points
    (1, 5, "insertion", 300, 16, torch.float32),  # 14 steps, the last one of 196 pixels: 15 points
    (2, 1, "deletion", 700, 4, torch.float32),  # non-square (80 x 64): 8 steps, the last of 220 pixels
    (1, 5, "insertion", 1024, 3, torch.float64),  # 4 steps: 5 points
    (0, 4, "blend", 2000, 16, torch.float32),  # from one image to another: 3 steps, the last of 96 pixels
)
"""Cases of the value check of ``perturbation_curve``."""

BATCHED_SIZE = 4
"""The ``batch_size`` of the batching check, on case 1 of :data:`CURVE_CASES` (15 images: 4 batches)."""

AREA_CASES: tuple[tuple[int, int, torch.dtype], ...] = (
    # (step, pixels, dtype): the curve has ceil(pixels / step) + 1 points
    (512, 4096, torch.float32),  # equal steps
    (300, 4096, torch.float32),  # the last step is 196 pixels
    (1000, 1500, torch.float64),  # two steps, the second half as long
    (7, 50, torch.float64),  # 8 steps, the last of 1 pixel
    (4096, 4096, torch.float32),  # one step: two points
)
"""Cases of the value check of ``curve_area``."""


def steps(pixels: int, step: int) -> int:
    """How many steps a curve over ``pixels`` pixels takes at ``step`` pixels a step: ``ceil(pixels / step)``."""
    return -(-pixels // step)


def rank_pair(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(maps_a, maps_b)`` of :data:`RANK_CASES` ``[index]``: correlated, not identical, never constant."""
    shape, kind, dtype = RANK_CASES[index]
    generator = torch.Generator().manual_seed(HIDDEN_SEED + 130 + index)
    a = torch.randn(shape, generator=generator, dtype=torch.float64)
    b = 0.6 * a + torch.randn(shape, generator=generator, dtype=torch.float64)
    if kind == "relu":
        a, b = a.clamp_min(0.3), b.clamp_min(0)  # many ties at the bottom, a different number in each
    elif kind == "rounded":
        a, b = (2 * a).round(), b.round()  # a handful of values, each many times
    elif kind == "mixed":
        a, b = a.clamp_min(0), (3 * b).round()
    if index == len(RANK_CASES) - 1:
        b = -b  # anti-correlated
    return a.to(dtype), b.to(dtype)


def _images() -> list[torch.Tensor]:
    """Three hidden images ``(3, H, W)``: two 64 x 64, one 80 x 64."""
    square = cached_hidden_images(2, 64)
    tall = cached_hidden_images(1, 80, seed=11)[..., :, 8:72]
    return [square[0], square[1], tall[0]]


def curve_case(index: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, int, int, int]:
    """``(model, start, end, saliency, class_idx, step, batch_size)`` of :data:`CURVE_CASES` ``[index]``; the
    saliency map is a random order of distinct values in (-1/2, 1/2), about half of them negative (no ties; a
    signed map, like the notebook's Grad-CAM before its ReLU: ordering by magnitude is wrong)."""
    image_index, class_idx, kind, step, batch_size, dtype = CURVE_CASES[index]
    images = [image.to(dtype) for image in _images()]
    image = images[image_index]
    generator = torch.Generator().manual_seed(HIDDEN_SEED + 140 + index)
    height, width = image.shape[-2:]
    ranks = torch.randperm(height * width, generator=generator).view(height, width)  # distinct values: no ties
    saliency = ((ranks.to(torch.float64) + 0.5) / (height * width) - 0.5).to(dtype)
    if kind == "deletion":
        start, end = image.clone(), torch.zeros_like(image)
    elif kind == "insertion":
        start, end = _blurred(image), image.clone()
    else:
        start, end = image.clone(), images[1 - image_index][..., : image.shape[-2], : image.shape[-1]].clone()
    return calibrated_hidden_model(dtype), start, end, saliency, class_idx, step, batch_size


def _blurred(image: torch.Tensor) -> torch.Tensor:
    """A 7 x 7 box blur of ``image`` (edges replicated): an insertion's start."""
    padded = torch.nn.functional.pad(image[None], (3, 3, 3, 3), mode="replicate")
    return torch.nn.functional.avg_pool2d(padded, 7, stride=1)[0]


def area_curve(index: int) -> tuple[torch.Tensor, int, int]:
    """``(curve, step, pixels)`` of :data:`AREA_CASES` ``[index]``: random values in [0, 1]."""
    step, pixels, dtype = AREA_CASES[index]
    generator = torch.Generator().manual_seed(HIDDEN_SEED + 150 + index)
    curve = torch.rand(steps(pixels, step) + 1, generator=generator, dtype=torch.float64)
    return curve.to(dtype), step, pixels


@probe
def check_rank_correlation(student: Callable[..., Any]) -> Observations:
    """Values of ``rank_correlation`` on hidden pairs of maps: no ties, many ties, more than two dimensions."""
    values = []
    for index in range(len(RANK_CASES)):
        a, b = rank_pair(index)
        values.append(call(student, a.clone(), b.clone()))
    return {"values": values}


@probe
def check_perturbation_curve(student: Callable[..., Any]) -> Observations:
    """Values of ``perturbation_curve`` on hidden models, images and signed saliency maps (deletion, insertion,
    steps that do not divide the number of pixels, non-square, float64), and the caller's tensors after each call."""
    curves, inputs = [], []
    for index in range(len(CURVE_CASES)):
        model, start, end, saliency, class_idx, step, batch_size = curve_case(index)
        curves.append(call(student, model, start, end, saliency, class_idx, step, batch_size))
        inputs.append({"start": input_state(start), "end": input_state(end), "saliency": input_state(saliency)})
    return {"curves": curves, "inputs": inputs}


@probe
def check_perturbation_curve_batched(student: Callable[..., Any]) -> Observations:
    """``perturbation_curve`` on a model in train mode: the batch sizes it called the model (or a copy of it) with,
    the modes; then its result on a fresh copy of the model in eval mode (what it must reproduce)."""
    model, start, end, saliency, class_idx, step, _ = curve_case(1)
    return call_in_train_mode(student, BatchRecorder(model), start, end, saliency, class_idx, step, BATCHED_SIZE)


@probe
def check_curve_area(student: Callable[..., Any]) -> Observations:
    """Values of ``curve_area(curve, step, pixels)`` on hidden curves, with equal steps and a shorter last one."""
    areas = []
    for index in range(len(AREA_CASES)):
        curve, step, pixels = area_curve(index)
        areas.append(call(student, curve.clone(), step, pixels))
    return {"areas": areas}
