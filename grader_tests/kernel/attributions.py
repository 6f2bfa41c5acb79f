"""Probes of ``12_attributions``: the student's ``smoothgrad`` and ``integrated_gradients`` on hidden models and
images (other sizes, one non-square, other classes, baselines, float64). They record what the functions return and
the side effects. Judged in :mod:`grader_tests.judges.attributions`, whose references agree with captum's
``NoiseTunnel(Saliency)`` and ``IntegratedGradients`` (``tests/test_attributions_checks.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .facts import call_in_train_mode, gradient_sizes, hook_count, input_state, modes
from .inputs import HIDDEN_SEED, cached_hidden_images, calibrated_hidden_model
from .record import Observations, call, probe

SMOOTHGRAD_CASES: tuple[tuple[int, int, int, float, int, torch.dtype], ...] = (
    # (image, class, samples, sigma, generator seed, dtype)
    (0, 0, 8, 0.3, 1, torch.float32),
    (1, 4, 5, 1.0, 2, torch.float32),
    (2, 5, 6, 0.15, 3, torch.float32),  # non-square (96 x 64)
    (1, 2, 4, 0.5, 4, torch.float64),
)
"""Cases of the value check of ``smoothgrad``."""

IG_CASES: tuple[tuple[int, int, str, int, torch.dtype], ...] = (
    # (image, class, baseline, steps, dtype)
    (0, 0, "zeros", 16, torch.float32),
    (1, 3, "blurred", 7, torch.float32),
    (2, 5, "zeros", 10, torch.float32),  # non-square
    (1, 1, "noise", 12, torch.float64),
)
"""Cases of the value check of ``integrated_gradients``."""


def images(dtype: torch.dtype) -> list[torch.Tensor]:
    """Three hidden images ``(3, H, W)``: two 64 x 64, one 96 x 64."""
    square = cached_hidden_images(2, 64, dtype=dtype)
    tall = cached_hidden_images(1, 96, seed=7, dtype=dtype)[..., :, 16:80]
    return [square[0], square[1], tall[0]]


def smoothgrad_case(index: int) -> tuple[nn.Module, torch.Tensor, int, int, float, int]:
    """``(model, image, class_idx, samples, sigma, seed)`` of :data:`SMOOTHGRAD_CASES` ``[index]``."""
    image, class_idx, samples, sigma, seed, dtype = SMOOTHGRAD_CASES[index]
    return calibrated_hidden_model(dtype), images(dtype)[image].clone(), class_idx, samples, sigma, HIDDEN_SEED + seed


def baseline(kind: str, image: torch.Tensor) -> torch.Tensor:
    """A baseline ``x'`` for integrated gradients: all zeros, a box-blurred copy, or Gaussian noise."""
    if kind == "zeros":
        return torch.zeros_like(image)
    if kind == "blurred":
        return torch.nn.functional.avg_pool2d(image[None], 9, stride=1, padding=4, count_include_pad=False)[0]
    generator = torch.Generator().manual_seed(HIDDEN_SEED + 77)
    return torch.randn(image.shape, generator=generator, dtype=torch.float64).to(image.dtype)


def ig_case(index: int) -> tuple[nn.Module, torch.Tensor, int, torch.Tensor, int]:
    """``(model, image, class_idx, baseline, steps)`` of :data:`IG_CASES` ``[index]``."""
    image, class_idx, kind, steps, dtype = IG_CASES[index]
    x = images(dtype)[image].clone()
    return calibrated_hidden_model(dtype), x, class_idx, baseline(kind, x), steps


@probe
def check_smoothgrad(student: Callable[..., Any]) -> Observations:
    """Values of ``smoothgrad(model, image, class_idx, samples, sigma, generator)`` on hidden inputs."""
    results = []
    for index in range(len(SMOOTHGRAD_CASES)):
        model, image, class_idx, samples, sigma, seed = smoothgrad_case(index)
        results.append(_seeded_call(student, index, model, image, class_idx, samples, sigma, seed))
    # case 0 again, with the same generator but another global random state: noise drawn from the generator
    # gives the same map, noise drawn elsewhere does not
    model, image, class_idx, samples, sigma, seed = smoothgrad_case(0)
    again = _seeded_call(student, 1000, model, image, class_idx, samples, sigma, seed)
    return {"maps": results, "again": again}


def _seeded_call(student: Callable[..., Any], global_seed: int, model: nn.Module, image: torch.Tensor,
                 class_idx: int, samples: int, sigma: float, seed: int) -> Any:
    """One call with a generator of ``seed``, torch's global generator set to ``HIDDEN_SEED + global_seed`` for
    the call and restored afterwards (the student's kernel draws what it drew before)."""
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED + global_seed)
        return call(student, model, image, class_idx, samples, sigma, torch.Generator().manual_seed(seed))


@probe
def check_smoothgrad_side_effects(student: Callable[..., Any]) -> Observations:
    """``smoothgrad`` on a model in train mode, as :func:`~.facts.call_in_train_mode` records it, each call with
    its own generator of the same seed and the same global random state (so both draw the same noise, even a
    function that ignores its generator: that is the value check's cell); and the caller's image afterwards."""
    model, image, class_idx, samples, sigma, seed = smoothgrad_case(0)
    twin, twin_image = copy.deepcopy(model).eval(), image.clone()
    model.train()
    before, hooks = modes(model), hook_count(model)
    outcome = _seeded_call(student, 0, model, image, class_idx, samples, sigma, seed)
    return {
        "call": outcome, "before": before, "after": modes(model), "hooks_left": hook_count(model) - hooks,
        "grads": gradient_sizes(model), "input": input_state(image),
        "in_eval_mode": _seeded_call(student, 0, twin, twin_image, class_idx, samples, sigma, seed),
    }


@probe
def check_integrated_gradients(student: Callable[..., Any]) -> Observations:
    """Values of ``integrated_gradients(model, image, class_idx, baseline, steps)`` on hidden inputs."""
    results = []
    for index in range(len(IG_CASES)):
        model, image, class_idx, base, steps = ig_case(index)
        results.append(call(student, model, image, class_idx, base.clone(), steps))
    return {"attributions": results}


@probe
def check_integrated_gradients_side_effects(student: Callable[..., Any]) -> Observations:
    """``integrated_gradients`` on a model in train mode (and its own result in eval mode), the caller's image."""
    model, image, class_idx, base, steps = ig_case(1)
    return {**call_in_train_mode(student, model, image, class_idx, base, steps), "input": input_state(image)}
