"""Saliency maps (Simonyan et al. 2013): the reference and the hidden checks of ``05_saliency``. Instructor-only.

Conventions (the notebook states them): the target is the **logit** ``s_y`` (never the softmax); the map is
``M_ij = max_ch |d s_y / d I_ch,ij|`` (maximum magnitude over the colour channels); gradients come from
``torch.autograd.grad``, so nothing is written to any ``.grad``; the model runs in eval mode and each module's
mode is restored afterwards.

The checks run the student's function on :func:`calibrated_hidden_model` (the common hidden model with
BatchNorm statistics measured on data, so that its maps are not degenerate) and on hidden images at sizes other
than 224 (one non-square), in float32 and float64: the probes of :mod:`grader_tests.kernel.saliency` call the
student's functions and record what they returned. The value judges compare with the reference; the side-effect
judges (no accumulation, eval mode, side effects) compare the student's results with each other only, so that a
wrong value costs its value cell and nothing else.
"""

from __future__ import annotations

import torch
from torch import nn

from grader_tests.kernel.record import Observations
from grader_tests.kernel.saliency import DTYPES, batch, cases
from helpers.inference import evaluating

from . import judge, reference
from .common import (
    agree,
    assert_computed_in_eval_mode,
    assert_input_untouched,
    assert_no_parameter_grads,
    assert_tensor_close,
    tolerance,
)
from .records import Recorded, restore, returned

# --- reference --------------------------------------------------------------------------------------------


def gradient_score(scores: torch.Tensor, image: torch.Tensor, class_idx: int) -> torch.Tensor:
    """``d scores[class_idx] / d image`` with the batch dim removed: ``(1, 3, H, W) -> (3, H, W)``.

    ``scores`` are the logits ``model(image)[0]`` of an ``image (1, 3, H, W)`` that requires grad.
    """
    (gradient,) = torch.autograd.grad(scores[class_idx], image)
    return gradient[0]


def saliency(model: nn.Module, images: torch.Tensor, target: int | torch.Tensor | None = None) -> torch.Tensor:
    """Vanilla-gradient saliency ``(N, 3, H, W) -> (N, H, W)``: ``max_ch |d s_c / d x|`` (``c`` = top class
    unless ``target`` is given). One backward for the batch: in eval mode the images are independent, so the
    gradient of the summed target logits is each image's own gradient."""
    with evaluating(model), torch.enable_grad():
        x = images.detach().clone().requires_grad_()
        logits = model(x)
        if target is None:
            classes = logits.argmax(1)
        else:
            classes = torch.as_tensor(target, device=logits.device).long().expand(len(x))
        (gradient,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), x)
    return gradient.abs().amax(1)


def saliency_map(model: nn.Module, image: torch.Tensor, class_idx: int) -> torch.Tensor:
    """The graded signature: one normalised ``image (3, H, W)`` -> ``(H, W)`` saliency of class ``class_idx``."""
    return saliency(model, image[None], class_idx)[0]


# --- judges -----------------------------------------------------------------------------------------------


def _reference_gradient(model: nn.Module, image: torch.Tensor, class_idx: int) -> torch.Tensor:
    with torch.enable_grad():
        x = batch(image)
        return gradient_score(model(x)[0], x, class_idx)


@reference()
def _gradient_references() -> tuple[tuple[str, torch.Tensor], ...]:
    """``(what, expected)`` of each case of ``compute_gradient_score``: computed once per process, as they depend
    only on the hidden cases (callers only read them)."""
    references = []
    for model, image, class_idx in (case for dtype in DTYPES for case in cases(dtype)):
        shape = (1, *image.shape)
        what = f"compute_gradient_score(scores, image, {class_idx}) on an image of shape {shape} ({image.dtype})"
        references.append((what, _reference_gradient(model, image, class_idx)))
    return tuple(references)


@judge
def check_compute_gradient_score(observations: Observations) -> None:
    """Values of ``compute_gradient_score`` on hidden models and images (other sizes and classes, float64)."""
    for (what, expected), outcome in zip(_gradient_references(), observations["gradients"], strict=True):
        assert_tensor_close(returned(outcome, what), expected, what, **tolerance(expected))


def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit the same values (NaN equal to NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return bool(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))


@judge
def check_compute_gradient_score_no_accumulation(observations: Observations) -> None:
    """Two calls on the same image tensor (for two classes): the second returns what the student's own function
    returns for that class on a fresh tensor, and the first result does not change during the second call.

    The student's results are compared with each other only: wrong values are the cell of
    ``check_compute_gradient_score``, not this one."""
    what = "compute_gradient_score called twice on the same image tensor"
    first = returned(observations["first"], what)
    second = returned(observations["second"], what)
    alone = returned(observations["alone"], "compute_gradient_score on a fresh image tensor")
    if agree(second, alone) is False:
        summed = None
        if isinstance(first, Recorded) and first.tensor.shape == alone.tensor.shape:
            summed = Recorded(first.tensor + alone.tensor.to(first.tensor.dtype), False, False)
        if agree(second, summed):
            raise AssertionError(
                f"{what}: the second result is the sum of both gradients, because backward() adds to image.grad. "
                "torch.autograd.grad returns the gradient without accumulating it"
            )
        raise AssertionError(
            f"{what}: the second result differs from what the same call returns on a fresh image tensor, so the "
            "first call changes the second. Compute each gradient on its own (torch.autograd.grad)"
        )
    after = restore(observations["first_after_second"])
    if isinstance(first, Recorded) and isinstance(after, Recorded) and not _identical(after.tensor, first.tensor):
        raise AssertionError(
            f"{what}: the tensor returned by the first call changed during the second call; it shares memory "
            "with image.grad. Return a gradient that is not a view of .grad"
        )


@reference()
def _map_references() -> tuple[tuple[str, torch.Tensor], ...]:
    """``(what, expected)`` of each case of ``saliency_map``: computed once per process, as they depend only
    on the hidden cases (callers only read them)."""
    references = []
    for model, image, class_idx in (case for dtype in DTYPES for case in cases(dtype)):
        what = f"saliency_map(model, image, {class_idx}) on an image of shape {tuple(image.shape)} ({image.dtype})"
        references.append((what, saliency_map(model, image, class_idx)))
    return tuple(references)


@judge
def check_saliency_map(observations: Observations) -> None:
    """Values of ``saliency_map(model, image, class_idx)`` on hidden models and images (other sizes, float64)."""
    for (what, expected), outcome in zip(_map_references(), observations["maps"], strict=True):
        assert_tensor_close(returned(outcome, what), expected, what, **tolerance(expected))


@reference()
def _side_effects_image() -> torch.Tensor:
    """The caller's image of ``check_saliency_map_side_effects`` as it was: built once per process, as it is the
    hidden case alone (callers only read it)."""
    return cases(torch.float32)[0][1].clone()


@judge
def check_saliency_map_side_effects(observations: Observations) -> None:
    """``saliency_map`` computes in eval mode (its result on a model in train mode is its own result in eval
    mode), restores each module's mode, writes no parameter ``.grad`` and leaves the caller's image as it was.
    No reference: wrong values are the cell of ``check_saliency_map``."""
    image = _side_effects_image()
    what = "saliency_map"
    assert_computed_in_eval_mode(observations, what)
    assert_no_parameter_grads(observations["grads"], what)
    assert_input_untouched(observations["input"], image, what)
