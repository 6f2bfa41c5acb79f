"""Hidden inputs: models and images the student never saw (the notebooks' visible checks use the demo set and the
embedded model). Probes build them in the kernel; judges build the same ones again in the grading process.

Each is built once per process and handed out as a fresh copy; the fork server builds those the probes use
(:func:`warm`) before it forks any kernel, so kernels start with them.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from helpers.data import make_dataset
from helpers.models import VGG11GAP

HIDDEN_SEED = 90210
"""Seed of the hidden inputs."""


def hidden_model(width: float = 1 / 16, num_classes: int = 6, seed: int = HIDDEN_SEED, dtype: torch.dtype = torch.float32) -> VGG11GAP:
    """A randomly initialised course model with random BatchNorm parameters and statistics, in eval mode."""
    return copy.deepcopy(_hidden_model(width, num_classes, seed, dtype))


@functools.lru_cache(maxsize=16)
def _hidden_model(width: float, num_classes: int, seed: int, dtype: torch.dtype) -> VGG11GAP:
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
    return _images(n, size, seed).to(dtype, copy=True)


def calibrated_hidden_model(dtype: torch.dtype = torch.float32, seed: int = 5) -> nn.Module:
    """:func:`hidden_model` with He-initialised convs, a unit-scale head and BatchNorm statistics measured on
    hidden images, in eval mode.

    The plain hidden model (default init, arbitrary running statistics) is nearly constant: its logits barely
    depend on the image and its Grad-CAM maps are negative everywhere, so after the ReLU every map is zero and
    a check could not tell a right answer from a wrong one. Here logits differ by several units, maps change
    sign, and the BatchNorm layers still have non-trivial affine parameters.
    """
    return copy.deepcopy(_calibrated_model(dtype, seed))  # built once per process


@functools.lru_cache(maxsize=8)
def _calibrated_model(dtype: torch.dtype, seed: int) -> VGG11GAP:
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


@functools.lru_cache(maxsize=16)
def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return make_dataset(n, seed, size).images


cached_hidden_images = hidden_images  # the name some probes use


def warm() -> None:
    """Build the hidden inputs the probes use (in the fork server, so that every kernel starts with them)."""
    for dtype in (torch.float32, torch.float64):
        calibrated_hidden_model(dtype)
        hidden_model(dtype=dtype)
        hidden_model(width=1 / 32, dtype=dtype)
        for n, size, seed in ((1, 64, HIDDEN_SEED), (2, 64, HIDDEN_SEED), (1, 96, 7), (1, 80, 11), (1, 32, HIDDEN_SEED),
                              (3, 32, HIDDEN_SEED)):
            hidden_images(n, size, seed, dtype)
    hidden_model(width=1 / 4, seed=HIDDEN_SEED + 2, dtype=torch.float64)
