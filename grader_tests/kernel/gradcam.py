"""Probes of ``06_gradcam``: the student's ``vis_gradcam`` and ``class_activation_map`` on hidden models and images
(:func:`~grader_tests.kernel.inputs.calibrated_hidden_model`, sizes other than 224, one non-square, float64 too),
and their side effects: hooks left (also after a forward pass that fails), ``.grad`` left, the caller's image,
train/eval modes. Judged in :mod:`grader_tests.judges.gradcam`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .facts import call_in_train_mode, gradient_sizes, hook_count, input_state
from .inputs import cached_hidden_images, calibrated_hidden_model
from .record import Observations, call, probe

DTYPES = (torch.float32, torch.float64)


def cases(dtype: torch.dtype) -> list[tuple[nn.Module, torch.Tensor, int]]:
    """(model, img (3, H, W), class) the student never saw: sizes other than 224 (multiples of 16, one
    non-square), other classes, float64."""
    model = calibrated_hidden_model(dtype)
    square = cached_hidden_images(2, 64, dtype=dtype)
    tall = cached_hidden_images(1, 96, seed=7, dtype=dtype)[..., :, 16:80]  # (1, 3, 96, 64)
    if dtype == torch.float32:
        return [(model, square[0], 1), (model, square[1], 4), (model, tall[0], 0)]
    return [(model, cached_hidden_images(1, 80, seed=11, dtype=dtype)[0], 5), (model, tall[0], 2)]


def _exploding_model() -> nn.Module:
    """A hidden model whose forward raises after ``bn5_2`` and ``relu5_2`` ran (its ``fc`` fails)."""

    class Exploding(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("a failure after the target layer")

    model = calibrated_hidden_model()
    model.fc = Exploding()
    return model


def _hooks_left(student: Callable[..., Any], model: nn.Module, *args: Any) -> tuple[dict[str, Any], int]:
    """Call the student's function; its outcome and how many hooks it left on ``model``."""
    before = hook_count(model)
    outcome = call(student, model, *args)
    return outcome, hook_count(model) - before


@probe
def check_vis_gradcam(student: Callable[..., Any]) -> Observations:
    """``vis_gradcam(vgg, img)`` on hidden models and images (other sizes, non-square, float64): each map."""
    return {"maps": [call(student, model, img.clone()) for dtype in DTYPES for model, img, _ in cases(dtype)]}


@probe
def check_vis_gradcam_hooks(student: Callable[..., Any]) -> Observations:
    """``vis_gradcam``: the hooks it leaves after a normal call and after a forward pass that fails."""
    model, img, _ = cases(torch.float32)[0]
    outcome, left = _hooks_left(student, model, img.clone())
    _, left_after_failure = _hooks_left(student, _exploding_model(), img.clone())
    return {"call": outcome, "left": left, "left_after_failure": left_after_failure}


@probe
def check_vis_gradcam_no_grads(student: Callable[..., Any]) -> Observations:
    """``vis_gradcam``: the parameter gradients it leaves and the caller's image afterwards."""
    model, img, _ = cases(torch.float32)[1]
    img = img.clone()
    outcome = call(student, model, img)
    return {"call": outcome, "grads": gradient_sizes(model), "input": input_state(img)}


@probe
def check_vis_gradcam_mode(student: Callable[..., Any]) -> Observations:
    """``vis_gradcam`` on a model in train mode: its result and each module's mode before and after; then its
    result on a fresh copy of the model in eval mode (what the train-mode call must reproduce)."""
    model, img, _ = cases(torch.float32)[2]
    return call_in_train_mode(student, model, img.clone())


@probe
def check_class_activation_map(student: Callable[..., Any]) -> Observations:
    """``class_activation_map(model, img, class_idx)`` on hidden models and images (float64 too): each map."""
    return {
        "maps": [
            call(student, model, img.clone(), class_idx) for dtype in DTYPES for model, img, class_idx in cases(dtype)
        ]
    }


@probe
def check_class_activation_map_side_effects(student: Callable[..., Any]) -> Observations:
    """``class_activation_map`` on a model in train mode (result, modes, hooks left), its result on a fresh copy
    of the model in eval mode (what the train-mode call must reproduce), and the hooks it leaves when the forward
    pass fails."""
    model, img, class_idx = cases(torch.float32)[1]
    observations = call_in_train_mode(student, model, img.clone(), class_idx)
    _, observations["left_after_failure"] = _hooks_left(student, _exploding_model(), img.clone(), class_idx)
    return observations
