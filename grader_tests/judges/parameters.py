"""Notebook 02_parameters: reference implementations and the judges of its hidden checks. Instructor-only: never
released.

Conventions (as in the assignment): a module's parameter count is the sum of ``numel()`` over
``module.named_parameters()``: every parameter, frozen ones (``requires_grad=False``) included, each shared
parameter once, and no buffers (BatchNorm's running statistics are buffers, not parameters).

The probes of :mod:`grader_tests.kernel.parameters` record the counts the student's functions return on unseen
modules and shapes; the judges here compare them with the references.
"""

from __future__ import annotations

from torch import nn

from grader_tests.kernel.parameters import CONV_CASES, LINEAR_CASES, built, modules
from grader_tests.kernel.record import Observations

from . import judge, reference
from .records import returned

# --- references ---------------------------------------------------------------------------------------------


def get_module_params_num(module: nn.Module) -> int:
    """The number of scalar parameters of ``module``: ``sum(p.numel() for _, p in module.named_parameters())``."""
    param_num = 0
    for _, param in module.named_parameters():
        param_num += param.numel()
    return param_num


def conv2d_params(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> int:
    """Parameters of ``nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)``:
    ``C_out * C_in * k * k`` weights ``+ C_out`` biases."""
    return out_channels * in_channels * kernel_size * kernel_size + (out_channels if bias else 0)


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of ``nn.Linear(in_features, out_features, bias=bias)``: ``n_in * n_out + n_out``."""
    return in_features * out_features + (out_features if bias else 0)


# --- judges -------------------------------------------------------------------------------------------------


def _as_int(outcome: dict[str, object], what: str) -> int:
    type_name, bool_or_float, index = returned(outcome, what)
    if bool_or_float or index is None:
        raise AssertionError(f"{what} should return an integer, got {type_name}")
    return index


@reference()
def _reference_counts() -> tuple[tuple[str, int], ...]:
    """``(description, count)`` of each unseen module: computed once per process, as they depend only on the hidden
    modules."""
    return tuple((description, get_module_params_num(built(factory))) for description, factory in modules())


@judge
def check_get_module_params_num(observations: Observations) -> None:
    """Counts of unseen modules: other widths, frozen and shared parameters, BatchNorm buffers, no parameters."""
    for (description, count), outcome in zip(_reference_counts(), observations["counts"], strict=True):
        what = f"get_module_params_num on {description}"
        if _as_int(outcome, what) != count:
            raise AssertionError(f"{what} gives a wrong count")


@judge
def check_conv2d_params(observations: Observations) -> None:
    """The formula on unseen channel counts, kernel sizes and with/without bias."""
    for case, outcome in zip(CONV_CASES, observations["counts"], strict=True):
        in_channels, out_channels, kernel_size, bias = case
        what = f"conv2d_params({in_channels}, {out_channels}, {kernel_size}, bias={bias})"
        if _as_int(outcome, what) != conv2d_params(in_channels, out_channels, kernel_size, bias):
            raise AssertionError(f"{what} gives a wrong count")


@judge
def check_linear_params(observations: Observations) -> None:
    """The formula on unseen widths and with/without bias."""
    for (in_features, out_features, bias), outcome in zip(LINEAR_CASES, observations["counts"], strict=True):
        what = f"linear_params({in_features}, {out_features}, bias={bias})"
        if _as_int(outcome, what) != linear_params(in_features, out_features, bias):
            raise AssertionError(f"{what} gives a wrong count")
