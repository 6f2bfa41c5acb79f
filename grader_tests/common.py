"""What every hidden check shares: inputs the student never saw, silent execution, helpful failures."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from helpers.data import make_dataset
from helpers.models import VGG11GAP

from .recording import Foreign, Observations, Recorded, call, restore, returned, snapshot

HIDDEN_SEED = 90210
"""Seed of the hidden inputs; the notebooks' visible checks use the demo set and the embedded model."""


def hidden_model(width: float = 1 / 16, num_classes: int = 6, seed: int = HIDDEN_SEED, dtype: torch.dtype = torch.float32) -> VGG11GAP:
    """A randomly initialised course model with random BatchNorm parameters and statistics, in eval mode."""
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        model = VGG11GAP(num_classes, width=width)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.to(dtype).eval()


def hidden_images(n: int = 2, size: int = 64, seed: int = HIDDEN_SEED, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, 3, size, size)`` normalised shapes images from a seed the student never saw."""
    return make_dataset(n, seed, size).images.to(dtype)


def assert_tensor_close(actual: Any, expected: torch.Tensor, what: str, *, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Compare a student's tensor with the reference; the message names the problem, not the answer."""
    if isinstance(actual, Recorded):
        actual = actual.tensor
    if not isinstance(actual, torch.Tensor):
        name = actual.type_name if isinstance(actual, Foreign) else type(actual).__name__
        raise AssertionError(f"{what} should be a torch.Tensor, got {name}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not actual.is_floating_point():
        raise AssertionError(f"{what} should hold floats, got {actual.dtype}")
    actual = actual.detach().to(expected.dtype)
    if not torch.isfinite(actual).all():
        raise AssertionError(f"{what} contains NaN or infinite values")
    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    except AssertionError:
        raise AssertionError(f"{what} has the right shape but wrong values on inputs you have not seen") from None


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


def tolerance(expected: torch.Tensor) -> dict[str, float]:
    """Relative to the reference's scale, so tiny gradients of a random model are compared meaningfully."""
    scale = float(expected.abs().max())
    if expected.dtype == torch.float64:
        return {"rtol": 1e-7, "atol": 1e-9 * scale}
    return {"rtol": 1e-4, "atol": 1e-5 * scale}


# --- shared side-effect checks ----------------------------------------------------------------------------


def hook_count(model: nn.Module) -> int:
    """Hooks registered on ``model``'s modules plus global module hooks (forward, pre-forward, backward)."""
    from torch.nn.modules import module as module_globals

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


def gradient_sizes(model: nn.Module) -> dict[str, float]:
    """Probe side: the largest ``|.grad|`` of each parameter (0.0 where ``.grad`` is None)."""
    return {name: 0.0 if p.grad is None else float(p.grad.detach().abs().max()) for name, p in model.named_parameters()}


def assert_no_parameter_grads(sizes: dict[str, float], what: str) -> None:
    """Judge side: every ``.grad`` is ``None`` or zero (``zero_grad(set_to_none=False)`` is fine too)."""
    left = [name for name, size in sizes.items() if size != 0]
    if left:
        raise AssertionError(
            f"{what} leaves gradients in the .grad of {len(left)} model parameter(s) (e.g. {left[0]}): "
            "compute the gradient you need with torch.autograd.grad, which writes no .grad"
        )


def modes(model: nn.Module) -> list[bool]:
    """Probe side: each module's train flag."""
    return [module.training for module in model.modules()]


def assert_modes_restored(after: list[bool], before: list[bool], what: str) -> None:
    if list(after) != list(before):
        raise AssertionError(
            f"{what} changes the model's train/eval mode: compute in eval mode but give the caller back the mode "
            "it had (helpers.evaluating(model) does both)"
        )


def input_state(image: torch.Tensor) -> dict[str, Any]:
    """Probe side: the caller's image after the student's call (values, requires_grad, .grad)."""
    return {"image": snapshot(image), "has_grad": image.grad is not None}


def assert_input_untouched(state: dict[str, Any], original: torch.Tensor, what: str) -> None:
    """Judge side of :func:`input_state`, against the trusted original image."""
    image = restore(state["image"])
    if image.requires_grad or state["has_grad"]:
        raise AssertionError(f"{what} turns on requires_grad (or leaves a .grad) on the caller's image: work on a copy")
    if image.tensor.shape != original.shape or not torch.equal(image.tensor, original):
        raise AssertionError(f"{what} changes the values of the caller's image")


def call_in_train_mode(student: Callable[..., Any], model: nn.Module, *args: Any) -> Observations:
    """Probe side: call the student's function on ``model`` put in train mode; its outcome, each module's mode
    before and after, the hooks it left and the parameter gradients it left."""
    model.train()
    before, hooks = modes(model), hook_count(model)
    outcome = call(student, model, *args)
    return {
        "call": outcome, "before": before, "after": modes(model), "hooks_left": hook_count(model) - hooks,
        "grads": gradient_sizes(model),
    }


def assert_computed_in_eval_mode(observations: Observations, expected: torch.Tensor, what: str) -> None:
    """Judge side of :func:`call_in_train_mode`: the modes are restored and the result is the eval-mode one."""
    actual = returned(observations["call"], f"{what} on a model in train mode")
    assert_modes_restored(observations["after"], observations["before"], what)
    assert_tensor_close(
        actual, expected, f"{what} on a model in train mode (compute in eval mode: BatchNorm must use its running "
        "statistics)", **tolerance(expected)
    )
