"""What every hidden check shares: inputs the student never saw, silent execution, helpful failures."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from helpers.data import make_dataset
from helpers.models import VGG11GAP

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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Run student code without warnings or prints reaching stderr/stdout (nbgrader scores any stderr as 0)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def run_student(function: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    """Call the student's function quietly; turn any exception into an AssertionError that says where."""
    try:
        with quiet():
            return function(*args, **kwargs)
    except NotImplementedError:
        raise AssertionError(f"{what} is not implemented yet (it still raises NotImplementedError)") from None
    except Exception as error:  # noqa: BLE001 - any failure of student code is a failed check
        raise AssertionError(f"{what} raised {type(error).__name__} on new inputs: {error}") from None


def assert_tensor_close(actual: Any, expected: torch.Tensor, what: str, *, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Compare a student's tensor with the reference; the message names the problem, not the answer."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(actual).__name__}")
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
