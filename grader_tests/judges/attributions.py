"""SmoothGrad (Smilkov et al. 2017) and Integrated Gradients (Sundararajan et al. 2017): the references and the
hidden checks of ``12_attributions``. Instructor-only.

Conventions (the notebook states them; captum follows the same, ``tests/test_attributions_checks.py``):

- ``smoothgrad(model, image, class_idx, samples, sigma, generator)`` draws all the noise first, in one call
  ``sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)``, and returns the mean of
  the gradients ``d s_y / d x`` at ``image + noise[i]``, shape ``(3, H, W)`` (signed: the map is drawn from it).
- ``integrated_gradients(model, image, class_idx, baseline, steps)`` is the midpoint Riemann sum
  ``(x - x') * mean_k d s_y / d x at x' + (k + 1/2) / steps * (x - x')``, ``k = 0 ... steps - 1``: captum's
  ``method="riemann_middle"``.
- Both compute in eval mode and restore the modes, write no ``.grad`` and leave the caller's tensors unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from grader_tests.kernel.attributions import IG_CASES, SMOOTHGRAD_CASES, ig_case, smoothgrad_case
from grader_tests.kernel.record import Observations
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
from .records import returned

# --- references -------------------------------------------------------------------------------------------


def class_gradients(model: nn.Module, images: torch.Tensor, class_idx: int) -> torch.Tensor:
    """``d s_y / d x`` of each image of ``images (N, 3, H, W)``, in eval mode: one backward for the batch."""
    with evaluating(model), torch.enable_grad():
        x = images.detach().clone().requires_grad_()
        (gradient,) = torch.autograd.grad(model(x)[:, class_idx].sum(), x)
    return gradient


def smoothgrad(
    model: nn.Module, image: torch.Tensor, class_idx: int, samples: int, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """``(3, H, W)``: the mean gradient of ``s_y`` over ``samples`` noisy copies of ``image``."""
    noise = sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)
    return class_gradients(model, image + noise, class_idx).mean(dim=0)


def integrated_gradients(
    model: nn.Module, image: torch.Tensor, class_idx: int, baseline: torch.Tensor, steps: int
) -> torch.Tensor:
    """``(3, H, W)``: integrated gradients from ``baseline`` to ``image``, midpoint Riemann sum of ``steps`` terms."""
    alphas = (torch.arange(steps, dtype=image.dtype) + 0.5) / steps
    path = baseline + alphas.view(-1, 1, 1, 1) * (image - baseline)
    return (image - baseline) * class_gradients(model, path, class_idx).mean(dim=0)


# --- judges -----------------------------------------------------------------------------------------------


def _tolerance(expected: torch.Tensor) -> dict[str, float]:
    limits = tolerance(expected)
    if expected.dtype == torch.float32:  # a mean of gradients: summation order differs between batchings
        limits["atol"] *= 10
    return limits


@reference(range(len(SMOOTHGRAD_CASES)))
def _smoothgrad_reference(index: int) -> tuple[str, torch.Tensor]:
    """``(what, expected)`` of :data:`SMOOTHGRAD_CASES` ``[index]``: computed once per process, as it depends
    only on the hidden case (callers only read it)."""
    model, image, class_idx, samples, sigma, seed = smoothgrad_case(index)
    what = (f"smoothgrad(model, image, {class_idx}, samples={samples}, sigma={sigma}, generator) on an image of "
            f"shape {tuple(image.shape)} ({image.dtype})")
    return what, smoothgrad(model, image, class_idx, samples, sigma, torch.Generator().manual_seed(seed))


@judge
def check_smoothgrad(observations: Observations) -> None:
    """Values of ``smoothgrad`` on hidden models and images (other sizes, sigmas, sample counts, float64)."""
    if len(observations["maps"]) != len(SMOOTHGRAD_CASES):
        raise AssertionError("smoothgrad: the hidden check did not record every case")
    for index, outcome in enumerate(observations["maps"]):
        what, expected = _smoothgrad_reference(index)
        actual = returned(outcome, what)
        if index == 0 and "again" in observations and agree(actual, returned(observations["again"], what)) is False:
            raise AssertionError(
                f"{what} returns another map for a generator of the same seed: draw the noise from the generator "
                "it is given (torch.randn(..., generator=generator))"
            )
        assert_tensor_close(actual, expected, what, **_tolerance(expected))


@reference()
def _smoothgrad_original() -> torch.Tensor:
    """The caller's image of the side-effect check of ``smoothgrad`` (:data:`SMOOTHGRAD_CASES` ``[0]``) as it was:
    built once per process, as it is the hidden case alone (callers only read it)."""
    return smoothgrad_case(0)[1]


@judge
def check_smoothgrad_side_effects(observations: Observations) -> None:
    """``smoothgrad`` computes in eval mode and restores the modes, writes no parameter ``.grad`` and leaves the
    caller's image unchanged. No reference: wrong values are the cell of ``check_smoothgrad``."""
    image = _smoothgrad_original()
    assert_computed_in_eval_mode(observations, "smoothgrad")
    assert_no_parameter_grads(observations["grads"], "smoothgrad")
    assert_input_untouched(observations["input"], image, "smoothgrad")


@reference(range(len(IG_CASES)))
def _ig_reference(index: int) -> tuple[str, torch.Tensor]:
    """``(what, expected)`` of :data:`IG_CASES` ``[index]``: computed once per process, as it depends only on
    the hidden case (callers only read it)."""
    model, image, class_idx, base, steps = ig_case(index)
    what = (f"integrated_gradients(model, image, {class_idx}, baseline, steps={steps}) on an image of shape "
            f"{tuple(image.shape)} ({image.dtype})")
    return what, integrated_gradients(model, image, class_idx, base, steps)


@judge
def check_integrated_gradients(observations: Observations) -> None:
    """Values of ``integrated_gradients`` on hidden models, images and baselines (step counts, float64)."""
    if len(observations["attributions"]) != len(IG_CASES):
        raise AssertionError("integrated_gradients: the hidden check did not record every case")
    for index, outcome in enumerate(observations["attributions"]):
        what, expected = _ig_reference(index)
        assert_tensor_close(returned(outcome, what), expected, what, **_tolerance(expected))


@reference()
def _ig_original() -> torch.Tensor:
    """The caller's image of the side-effect check of ``integrated_gradients`` (:data:`IG_CASES` ``[1]``) as it was:
    built once per process, as it is the hidden case alone (callers only read it)."""
    return ig_case(1)[1]


@judge
def check_integrated_gradients_side_effects(observations: Observations) -> None:
    """``integrated_gradients`` computes in eval mode and restores the modes, writes no parameter ``.grad`` and
    leaves the caller's image unchanged. No reference: wrong values are the cell of ``check_integrated_gradients``."""
    image = _ig_original()
    assert_computed_in_eval_mode(observations, "integrated_gradients")
    assert_no_parameter_grads(observations["grads"], "integrated_gradients")
    assert_input_untouched(observations["input"], image, "integrated_gradients")
