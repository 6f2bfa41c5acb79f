"""Saliency maps (Simonyan et al. 2013): the reference and the hidden checks of ``05_saliency``. Instructor-only.

Conventions (the notebook states them): the target is the **logit** ``s_y`` (never the softmax); the map is
``M_ij = max_ch |d s_y / d I_ch,ij|`` (maximum magnitude over the colour channels); gradients come from
``torch.autograd.grad``, so nothing is written to any ``.grad``; the model runs in eval mode and each module's
mode is restored afterwards.

The checks run the student's function on :func:`calibrated_hidden_model` (the common hidden model with
BatchNorm statistics measured on data, so that its maps are not degenerate) and on hidden images at sizes other
than 224 (one non-square), in float32 and float64. The side-effect checks (:func:`hook_count`,
:func:`assert_no_parameter_grads`, :func:`assert_modes_restored`) are shared with :mod:`grader_tests.gradcam`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from helpers.inference import evaluating

from .common import HIDDEN_SEED, assert_tensor_close, hidden_images, hidden_model, quiet, run_student

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


# --- shared side-effect checks ----------------------------------------------------------------------------


def hook_count(model: nn.Module) -> int:
    """Hooks registered on ``model``'s modules plus global module hooks (forward, pre-forward, backward)."""
    from torch.nn.modules import module as module_globals  # noqa: PLC0415

    per_module = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )
    global_hooks = sum(
        len(getattr(module_globals, name, {}))
        for name in (
            "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks"
        )
    )
    return per_module + global_hooks


def assert_no_parameter_grads(model: nn.Module, what: str) -> None:
    """Every parameter's ``.grad`` is ``None`` (or all zeros: ``zero_grad(set_to_none=False)`` is fine too)."""
    left = [name for name, p in model.named_parameters() if p.grad is not None and bool(p.grad.ne(0).any())]
    if left:
        raise AssertionError(
            f"{what} leaves gradients in the .grad of {len(left)} model parameter(s) (e.g. {left[0]}): "
            "compute the gradient you need with torch.autograd.grad, which writes no .grad"
        )


def modes(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


def assert_modes_restored(model: nn.Module, before: list[bool], what: str) -> None:
    if modes(model) != before:
        raise AssertionError(
            f"{what} changes the model's train/eval mode: compute in eval mode but give the caller back the mode "
            "it had (helpers.evaluating(model) does both)"
        )


def assert_input_untouched(image: torch.Tensor, original: torch.Tensor, what: str) -> None:
    if image.requires_grad or image.grad is not None:
        raise AssertionError(f"{what} turns on requires_grad (or leaves a .grad) on the caller's image: work on a copy")
    if not torch.equal(image, original):
        raise AssertionError(f"{what} changes the values of the caller's image")


# --- hidden checks -----------------------------------------------------------------------------------------


def calibrated_hidden_model(dtype: torch.dtype = torch.float32, seed: int = 5) -> nn.Module:
    """:func:`~grader_tests.common.hidden_model` with He-initialised convs, a unit-scale head and BatchNorm
    statistics measured on hidden images, in eval mode.

    The plain hidden model (default init, arbitrary running statistics) is nearly constant: its logits barely
    depend on the image and its Grad-CAM maps are negative everywhere, so after the ReLU every map is zero and
    a check could not tell a right answer from a wrong one. Here logits differ by several units, maps change
    sign, and the BatchNorm layers still have non-trivial affine parameters.
    """
    model = hidden_model()
    model.load_state_dict(_calibrated_state(seed))
    return model.to(dtype).eval()


@functools.lru_cache(maxsize=4)
def _calibrated_state(seed: int) -> dict[str, torch.Tensor]:
    model = hidden_model()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.normal_(module.bias, 0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the calibration pass
        nn.init.normal_(model.fc.weight, 0, 1)
        nn.init.normal_(model.fc.bias, 0, 0.1)
        model.train()
        model(_images(16, 64, 3))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1
    return {key: value.clone() for key, value in model.state_dict().items()}


@functools.lru_cache(maxsize=8)
def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return hidden_images(n, size, seed=seed)


def cached_hidden_images(
    n: int, size: int, seed: int = HIDDEN_SEED, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """:func:`~grader_tests.common.hidden_images`, rendered once per process (a fresh copy each call)."""
    return _images(n, size, seed).to(dtype, copy=True)


def _cases(dtype: torch.dtype) -> list[tuple[nn.Module, torch.Tensor, int]]:
    """(model, image (3, H, W), class) triples the student never saw: other sizes, other classes, float64."""
    model = calibrated_hidden_model(dtype)
    square = cached_hidden_images(2, 64, dtype=dtype)
    tall = cached_hidden_images(1, 96, seed=7, dtype=dtype)[..., :, 16:80]  # (1, 3, 96, 64): non-square
    if dtype == torch.float32:
        return [(model, square[0], 0), (model, square[1], 3), (model, tall[0], 5)]
    return [(model, square[1], 2), (model, tall[0], 4)]


def tolerance(expected: torch.Tensor) -> dict[str, float]:
    """Relative to the reference's scale, so tiny gradients of a random model are compared meaningfully."""
    scale = float(expected.abs().max())
    if expected.dtype == torch.float64:
        return {"rtol": 1e-7, "atol": 1e-9 * scale}
    return {"rtol": 1e-4, "atol": 1e-5 * scale}


def _student_gradient(student: Callable[..., Any], model: nn.Module, image: torch.Tensor, class_idx: int) -> Any:
    x = image[None].detach().clone().requires_grad_()
    what = f"compute_gradient_score(scores, image, {class_idx}) on an image of shape {tuple(x.shape)} ({x.dtype})"
    with torch.enable_grad():
        scores = model(x)[0]
    return run_student(student, scores, x, class_idx, what=what), what


def _reference_gradient(model: nn.Module, image: torch.Tensor, class_idx: int) -> torch.Tensor:
    with torch.enable_grad():
        x = image[None].detach().clone().requires_grad_()
        return gradient_score(model(x)[0], x, class_idx)


def check_compute_gradient_score(student: Callable[..., Any]) -> None:
    """Values of ``compute_gradient_score`` on hidden models and images (other sizes and classes, float64)."""
    for dtype in (torch.float32, torch.float64):
        for model, image, class_idx in _cases(dtype):
            actual, what = _student_gradient(student, model, image, class_idx)
            expected = _reference_gradient(model, image, class_idx)
            assert_tensor_close(actual, expected, what, **tolerance(expected))


def check_compute_gradient_score_no_accumulation(student: Callable[..., Any]) -> None:
    """Two calls on the same image tensor (for two classes) each give their own gradient, and the second call
    does not change what the first returned."""
    model, image, first_class = _cases(torch.float32)[1]
    second_class = 5
    expected_first = _reference_gradient(model, image, first_class)
    expected_second = _reference_gradient(model, image, second_class)
    x = image[None].detach().clone().requires_grad_()
    what = "compute_gradient_score called twice on the same image tensor"
    with torch.enable_grad():
        first = run_student(student, model(x)[0], x, first_class, what=what)
    assert_tensor_close(first, expected_first, f"the first result of {what}", **tolerance(expected_first))
    kept = first.detach().clone()
    with torch.enable_grad():
        second = run_student(student, model(x)[0], x, second_class, what=what)
    summed = expected_first + expected_second
    if isinstance(second, torch.Tensor) and second.shape == summed.shape and torch.allclose(
        second.detach().to(summed.dtype), summed, rtol=1e-4, atol=1e-5 * float(summed.abs().max())
    ):
        raise AssertionError(
            f"{what}: the second result is the sum of both gradients, because backward() adds to image.grad. "
            "torch.autograd.grad returns the gradient without accumulating it"
        )
    assert_tensor_close(second, expected_second, f"the second result of {what}", **tolerance(expected_second))
    if not torch.equal(first.detach(), kept):
        raise AssertionError(
            f"{what}: the tensor returned by the first call changed during the second call; it shares memory "
            "with image.grad. Return a gradient that is not a view of .grad"
        )


def check_saliency_map(student: Callable[..., Any]) -> None:
    """Values of ``saliency_map(model, image, class_idx)`` on hidden models and images (other sizes, float64)."""
    for dtype in (torch.float32, torch.float64):
        for model, image, class_idx in _cases(dtype):
            what = f"saliency_map(model, image, {class_idx}) on an image of shape {tuple(image.shape)} ({image.dtype})"
            actual = run_student(student, model, image.clone(), class_idx, what=what)
            expected = saliency_map(model, image, class_idx)
            assert_tensor_close(actual, expected, what, **tolerance(expected))


def check_saliency_map_side_effects(student: Callable[..., Any]) -> None:
    """``saliency_map`` computes in eval mode, restores each module's mode, writes no parameter ``.grad`` and
    leaves the caller's image as it was."""
    model, image, class_idx = _cases(torch.float32)[0]
    expected = saliency_map(model, image, class_idx)  # eval mode
    model.train()
    before = modes(model)
    image = image.clone()
    original = image.clone()
    what = "saliency_map"
    actual = run_student(student, model, image, class_idx, what=f"{what} on a model in train mode")
    assert_modes_restored(model, before, what)
    assert_tensor_close(
        actual, expected, f"{what} on a model in train mode (compute in eval mode: BatchNorm must use its running "
        "statistics)", **tolerance(expected)
    )
    assert_no_parameter_grads(model, what)
    assert_input_untouched(image, original, what)


def run_quietly(function: Callable[..., Any], *args: Any) -> None:
    """Call ``function`` and swallow any exception quietly (the hook checks provoke failures on purpose)."""
    try:
        with quiet():
            function(*args)
    except Exception:  # noqa: BLE001, S110 - the failure is the point; what it leaves behind is checked
        pass
