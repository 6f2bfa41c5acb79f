"""Hidden inputs: models and images the student never saw (the notebooks' visible checks use the demo set and the
embedded model). Probes build them in the kernel; judges build the same ones again in the grading process."""

from __future__ import annotations

import functools

import torch
from torch import nn

from helpers.data import make_dataset
from helpers.models import VGG11GAP

HIDDEN_SEED = 90210
"""Seed of the hidden inputs."""


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


def calibrated_hidden_model(dtype: torch.dtype = torch.float32, seed: int = 5) -> nn.Module:
    """:func:`hidden_model` with He-initialised convs, a unit-scale head and BatchNorm statistics measured on
    hidden images, in eval mode.

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
    """:func:`hidden_images`, rendered once per process (a fresh copy each call)."""
    return _images(n, size, seed).to(dtype, copy=True)
