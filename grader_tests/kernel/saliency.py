"""Probes of ``05_saliency``: the student's ``compute_gradient_score`` and ``saliency_map`` on hidden models and
images (other sizes, one non-square, other classes, float32 and float64). Judged in
:mod:`grader_tests.judges.saliency`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .facts import call_in_train_mode, input_state
from .inputs import cached_hidden_images, calibrated_hidden_model
from .record import Observations, call, call_keeping, probe, snapshot

DTYPES = (torch.float32, torch.float64)

SECOND_CLASS = 5
"""The class of the second call of the accumulation check (the first is the case's own)."""


def cases(dtype: torch.dtype) -> list[tuple[nn.Module, torch.Tensor, int]]:
    """(model, image (3, H, W), class) triples the student never saw: other sizes, other classes, float64."""
    model = calibrated_hidden_model(dtype)
    square = cached_hidden_images(2, 64, dtype=dtype)
    tall = cached_hidden_images(1, 96, seed=7, dtype=dtype)[..., :, 16:80]  # (1, 3, 96, 64): non-square
    if dtype == torch.float32:
        return [(model, square[0], 0), (model, square[1], 3), (model, tall[0], 5)]
    return [(model, square[1], 2), (model, tall[0], 4)]


def batch(image: torch.Tensor) -> torch.Tensor:
    """The ``(1, 3, H, W)`` leaf that ``compute_gradient_score`` differentiates against."""
    return image[None].detach().clone().requires_grad_()


@probe
def check_compute_gradient_score(student: Callable[..., Any]) -> Observations:
    """Values of ``compute_gradient_score`` on hidden models and images (other sizes and classes, float64)."""
    gradients = []
    for dtype in DTYPES:
        for model, image, class_idx in cases(dtype):
            x = batch(image)
            with torch.enable_grad():
                scores = model(x)[0]
            gradients.append(call(student, scores, x, class_idx))
    return {"gradients": gradients}


@probe
def check_compute_gradient_score_no_accumulation(student: Callable[..., Any]) -> Observations:
    """Two calls on the same image tensor (for two classes): each result, and the first after the second; then
    the second class again on a fresh tensor, the student's own answer that the second call must reproduce."""
    model, image, first_class = cases(torch.float32)[1]
    x = batch(image)
    with torch.enable_grad():
        first, first_value = call_keeping(student, model(x)[0], x, first_class)
        second = call(student, model(x)[0], x, SECOND_CLASS)
        first_after_second = snapshot(first_value)
        fresh = batch(image)
        alone = call(student, model(fresh)[0], fresh, SECOND_CLASS)
    return {"first": first, "second": second, "first_after_second": first_after_second, "alone": alone}


@probe
def check_saliency_map(student: Callable[..., Any]) -> Observations:
    """Values of ``saliency_map(model, image, class_idx)`` on hidden models and images (other sizes, float64)."""
    return {
        "maps": [
            call(student, model, image.clone(), class_idx) for dtype in DTYPES for model, image, class_idx in cases(dtype)
        ]
    }


@probe
def check_saliency_map_side_effects(student: Callable[..., Any]) -> Observations:
    """``saliency_map`` on a model in train mode: its result, the modes, parameter gradients, the caller's image;
    then its result on a fresh copy of the model in eval mode (what the train-mode call must reproduce)."""
    model, image, class_idx = cases(torch.float32)[0]
    image = image.clone()
    return {**call_in_train_mode(student, model, image, class_idx), "input": input_state(image)}
