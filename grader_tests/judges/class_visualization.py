"""Notebook ``10_class_visualization``: reference implementations and the judges of its hidden checks.
Instructor-only: never released.

Conventions (stated in the notebook):

* ``class_visualization(model, start (N, 3, H, W), classes (N,), steps, lr, l2_reg, max_jitter, blur_every,
  blur_sigma, generator) -> (N, 3, H, W)``: gradient ascent on ``s_c(I) - l2_reg * ||I||_2^2`` (the **logit**
  ``s_c``, never the softmax), image by image, from a copy of ``start``. Step ``t = 1 .. steps``:

  1. ``dy, dx = torch.randint(-max_jitter, max_jitter + 1, (2,), generator=generator).tolist()``, one draw per
     step for the whole batch; the images are rolled by ``torch.roll(x, (dy, dx), dims=(2, 3))``;
  2. ``G_n``, the gradient of ``s_{c_n}(x_n) - l2_reg * ||x_n||^2`` with respect to the rolled image ``x_n``;
  3. a **normalised** ascent step per image: ``x_n <- x_n + lr * G_n / ||G_n||_2`` (the norm over all
     ``3 H W`` values of that image's gradient);
  4. the roll undone (``-dy, -dx``);
  5. each channel clamped to the range of valid pixels in normalised units, ``[(0 - mean) / std, (1 - mean) / std]``;
  6. when ``blur_every > 0`` and ``t % blur_every == 0``: ``helpers.gaussian_blur(x, blur_sigma)`` (a 5 x 5
     kernel, reflected borders: torchvision's ``gaussian_blur(x, kernel_size=5, sigma=blur_sigma)``, bit for bit).

  In eval mode (each module's mode restored), no parameter ``.grad`` written, ``start`` unchanged; the result has
  no autograd history.
* ``fool(model, image (3, H, W), target, step, max_steps) -> (image (3, H, W), steps)``: from a copy of ``image``,
  before each step the model's prediction is read; at the first ``n`` in ``0 .. max_steps`` where it is ``target``
  (or at ``n = max_steps``) the function returns the current image and ``n``. A step is
  ``x <- clamp(x + step * g / ||g||_2)`` with ``g = d s_target / d x`` (the logit), clamped as above. Same side
  effects as ``class_visualization``.

The probes of :mod:`grader_tests.kernel.class_visualization` record what the student's functions return on the
calibrated hidden model; the value judges compare with the references below, the side-effect judges compare the
student's results with each other only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from grader_tests.kernel.class_visualization import (
    FOOL_CASES,
    VIS_CASES,
    fool_arguments,
    fool_case,
    vis_arguments,
    vis_case,
)
from grader_tests.kernel.record import Observations
from helpers.images import gaussian_blur, normalize
from helpers.inference import evaluating

from . import judge, reference
from .common import agree, assert_input_untouched, assert_modes_restored, assert_no_parameter_grads
from .records import Foreign, Recorded, returned

BLUR_KERNEL = 5
"""The Gaussian kernel's size (``helpers.gaussian_blur``'s default)."""

# --- references -----------------------------------------------------------------------------------------------


def pixel_bounds(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid range of each channel in normalised units, ``(3, 1, 1)`` each: pixels 0 and 1 normalised."""
    ones = torch.ones(3, 1, 1, dtype=like.dtype, device=like.device)
    return normalize(0 * ones), normalize(ones)


def clamp_to_pixels(x: torch.Tensor) -> torch.Tensor:
    """``x`` with every channel clamped to its valid range (any leading batch dimensions)."""
    low, high = pixel_bounds(x)
    return torch.maximum(torch.minimum(x, high), low)


def class_visualization(
    model: nn.Module,
    start: torch.Tensor,
    classes: torch.Tensor,
    steps: int,
    lr: float,
    l2_reg: float,
    max_jitter: int,
    blur_every: int,
    blur_sigma: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Jittered, blurred, clamped gradient ascent on ``s_c(I) - l2_reg ||I||^2``, one normalised step per image."""
    x = start.detach().clone()
    index = torch.as_tensor(classes).long().view(-1, 1)
    with evaluating(model), torch.enable_grad():
        for t in range(1, steps + 1):
            dy, dx = torch.randint(-max_jitter, max_jitter + 1, (2,), generator=generator).tolist()
            rolled = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).requires_grad_()
            objective = model(rolled).gather(1, index).sum() - l2_reg * rolled.pow(2).sum()
            (gradient,) = torch.autograd.grad(objective, rolled)
            norms = gradient.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            stepped = rolled.detach() + lr * gradient / norms
            x = clamp_to_pixels(torch.roll(stepped, shifts=(-dy, -dx), dims=(2, 3)))
            if blur_every > 0 and t % blur_every == 0:
                x = gaussian_blur(x, blur_sigma, kernel_size=BLUR_KERNEL)
    return x


def fool(model: nn.Module, image: torch.Tensor, target: int, step: float, max_steps: int) -> tuple[torch.Tensor, int]:
    """Normalised ascent on the target logit until the model predicts ``target``: ``(image, steps taken)``."""
    x = image.detach().clone()
    with evaluating(model), torch.enable_grad():
        for n in range(max_steps + 1):
            x.requires_grad_()
            scores = model(x[None])[0]
            if int(scores.argmax()) == target or n == max_steps:
                return x.detach(), n
            (gradient,) = torch.autograd.grad(scores[target], x)
            x = clamp_to_pixels(x.detach() + step * gradient / gradient.norm())
    raise AssertionError("unreachable")


@reference(range(len(VIS_CASES)))
def _visualization_reference(index: int) -> tuple[str, torch.Tensor]:
    """``(what, expected)`` of :data:`VIS_CASES` ``[index]``: computed once per process, as it depends only on the
    hidden case (callers only read it)."""
    model, start, classes, settings = vis_case(index)
    what = (
        f"class_visualization on {len(start)} start image(s) of shape {tuple(start.shape[1:])} ({start.dtype}), "
        f"classes {classes.tolist()}, {settings['steps']} steps"
    )
    return what, class_visualization(model, *vis_arguments(index)[1])


@reference(range(len(FOOL_CASES)))
def _fool_reference(index: int) -> tuple[str, int, torch.Tensor, int]:
    """``(what, max_steps, expected image, expected steps)`` of :data:`FOOL_CASES` ``[index]``: computed once per
    process, as it depends only on the hidden case (callers only read it)."""
    model, image, target, step, max_steps = fool_case(index)
    what = f"fool(model, image {tuple(image.shape)} ({image.dtype}), target={target}, step={step}, max_steps={max_steps})"
    return what, max_steps, *fool(model, *fool_arguments(index)[1])


@reference()
def _original_start() -> torch.Tensor:
    """The caller's ``start`` of the side-effect check of ``class_visualization`` (:data:`VIS_CASES` ``[0]``) as it
    was: built once per process, as it is the hidden case alone (callers only read it)."""
    return vis_case(0)[1]


@reference()
def _original_image() -> torch.Tensor:
    """The caller's image of the side-effect check of ``fool`` (:data:`FOOL_CASES` ``[0]``) as it was: built once per
    process, as it is the hidden case alone (callers only read it)."""
    return fool_case(0)[1].clone()


# --- helpers of the judges ---------------------------------------------------------------------------------------


def _tolerance(expected: torch.Tensor) -> dict[str, float]:
    """Float error accumulated over a few steps (an analytic penalty gradient, a rolled-back gradient, a sum of
    per-image losses); far below what any mistake changes (``tests/test_class_visualization_checks.py``)."""
    scale = float(expected.abs().max())
    if expected.dtype == torch.float64:
        return {"rtol": 1e-7, "atol": 1e-7 * scale}
    return {"rtol": 1e-3, "atol": 2e-3 * scale}


def _tensor(value: Any, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, Recorded):
        name = value.type_name if isinstance(value, Foreign) else type(value).__name__
        raise AssertionError(f"{what} should return a torch.Tensor, got {name}")  # noqa: TRY004 - a failed check
    if tuple(value.tensor.shape) != shape:
        raise AssertionError(f"{what} returns shape {tuple(value.tensor.shape)}, expected {shape}")
    if not value.tensor.is_floating_point():
        raise AssertionError(f"{what} should return floats, got {value.tensor.dtype}")
    if not torch.isfinite(value.tensor).all():
        raise AssertionError(f"{what} returns NaN or infinite values")
    return value.tensor


def _close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    return bool(torch.allclose(actual.to(expected.dtype), expected, **_tolerance(expected)))


def _explain_visualization(actual: torch.Tensor, model: nn.Module, start: torch.Tensor, classes: torch.Tensor,
                           settings: dict[str, Any]) -> str:
    """Name the mistake where a variant of the reference reproduces the student's result."""
    from grader_tests.kernel.class_visualization import generator

    def variant(**change: Any) -> torch.Tensor:
        s = {**settings, **change}
        return class_visualization(model, start, classes, s["steps"], s["lr"], s["l2_reg"], s["max_jitter"],
                                   s["blur_every"], s["blur_sigma"], generator(s["seed"]))

    if float(settings["l2_reg"]) != 0 and _close(actual, variant(l2_reg=-settings["l2_reg"])):
        return ": the penalty has the wrong sign (subtract l2_reg * ||I||^2 from the score: its gradient is -2 * l2_reg * I)"
    if _close(actual, variant(lr=-settings["lr"])):
        return ": the image moves downhill (gradient ascent adds lr * G / ||G||)"
    return ""


# --- the judges ---------------------------------------------------------------------------------------------------


@judge
def check_class_visualization(observations: Observations) -> None:
    """Results on hidden models and start images (other sizes, a non-square one, other settings, float64) against
    the reference, within float error."""
    if len(observations["images"]) != len(VIS_CASES):
        raise AssertionError("class_visualization: the check did not run on every case")
    for index, outcome in enumerate(observations["images"]):
        what, expected = _visualization_reference(index)
        actual = _tensor(returned(outcome, what), what, tuple(expected.shape))
        if not _close(actual, expected):
            model, start, classes, settings = vis_case(index)
            raise AssertionError(
                f"{what} gives other images than the stated update rule on inputs you have not seen"
                f"{_explain_visualization(actual, model, start, classes, settings)}"
            )


def _assert_side_effects(observations: Observations, what: str, original: torch.Tensor) -> None:
    """Eval mode (the train-mode result is the student's own eval-mode result), modes restored, no hooks left, no
    parameter ``.grad``, the caller's tensor unchanged. No reference: wrong values are the value check's cell."""
    actual = returned(observations["call"], f"{what} on a model in train mode")
    assert_modes_restored(observations["after"], observations["before"], what)
    own = returned(observations["in_eval_mode"], f"{what} on a model in eval mode")
    if isinstance(actual, (list, tuple)) and isinstance(own, (list, tuple)) and actual and own:
        actual, own = actual[0], own[0]  # fool: compare the images
    if agree(actual, own) is False:
        raise AssertionError(
            f"{what} on a model in train mode returns another result than on the same model in eval mode: compute "
            "in eval mode (BatchNorm must use its running statistics)"
        )
    if observations["hooks_left"] != 0:
        raise AssertionError(f"{what} leaves {observations['hooks_left']} hook(s) on the model: remove them")
    assert_no_parameter_grads(observations["grads"], what)
    assert_input_untouched(observations["input"], original, what)


@judge
def check_class_visualization_side_effects(observations: Observations) -> None:
    """Computed in eval mode with each module's mode restored, no parameter gradients, ``start`` unchanged."""
    _assert_side_effects(observations, "class_visualization", _original_start())


def _steps(value: Any, what: str) -> int:
    if isinstance(value, Recorded) and value.tensor.numel() == 1 and not value.tensor.is_floating_point():
        return int(value.tensor)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    name = value.type_name if isinstance(value, Foreign) else type(value).__name__
    raise AssertionError(f"{what}: the number of steps should be an int, got {name}")


@judge
def check_fool(observations: Observations) -> None:
    """The image and the step count on hidden images and targets against the reference: several steps, 0 steps
    (the model already predicts the target), a budget too small to fool the model, float64."""
    if len(observations["results"]) != len(FOOL_CASES):
        raise AssertionError("fool: the check did not run on every case")
    for index, outcome in enumerate(observations["results"]):
        what, max_steps, expected, expected_steps = _fool_reference(index)
        value = returned(outcome, what)
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise AssertionError(f"{what} should return a pair (image, steps)")
        actual = _tensor(value[0], f"{what}: the image", tuple(expected.shape))
        steps = _steps(value[1], what)
        if steps != expected_steps:
            if expected_steps == 0:
                raise AssertionError(
                    f"{what} returns {steps} steps for an image the model already predicts as the target: check the "
                    "prediction before each step, the start image included, and stop at once (0 steps)"
                )
            if steps == max_steps and expected_steps < max_steps:
                raise AssertionError(
                    f"{what} takes all {max_steps} steps: stop at the first step where the prediction is the target"
                )
            raise AssertionError(
                f"{what} returns {steps} steps, not the number of steps the stated rule takes on inputs you have "
                "not seen (check the prediction before each step; count the steps taken)"
            )
        if not _close(actual, expected):
            raise AssertionError(
                f"{what} takes the right number of steps but returns another image than the stated update rule "
                "(a step of length `step` along d s_target / d x, then the clamp to valid pixels)"
            )


@judge
def check_fool_side_effects(observations: Observations) -> None:
    """Computed in eval mode with each module's mode restored, no parameter gradients, the image unchanged."""
    _assert_side_effects(observations, "fool", _original_image())
