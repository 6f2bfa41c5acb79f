"""Notebook 02_parameters: reference implementations and hidden checks. Instructor-only: never released.

Conventions (as in the seed): a module's parameter count is the sum of ``numel()`` over
``module.named_parameters()``: every parameter, frozen ones (``requires_grad=False``) included, each shared
parameter once, and no buffers (BatchNorm's running statistics are buffers, not parameters).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import nn

from helpers.models import VGG11Classification

from .common import HIDDEN_SEED, hidden_model
from .recording import Observations, call, hidden_check, returned

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


# --- hidden inputs ------------------------------------------------------------------------------------------


def _frozen_conv() -> nn.Conv2d:
    conv = nn.Conv2d(5, 7, 3)
    conv.weight.requires_grad_(False)
    return conv


def _frozen_backbone_model() -> nn.Module:
    model = hidden_model(width=1 / 16)
    model.backbone.requires_grad_(False)  # fine-tuning set-up: only the head trains
    return model


def _shared_layer_model() -> nn.Sequential:
    shared = nn.Linear(8, 8)
    return nn.Sequential(shared, nn.ReLU(), shared)


def _modules() -> list[tuple[str, Callable[[], nn.Module]]]:
    """``(description, factory)``: modules the student never counted."""
    return [
        ("the course model at width 1/16", lambda: hidden_model(width=1 / 16)),
        ("the seed's VGG-11 at width 1/8 with 10 classes", lambda: VGG11Classification(num_classes=10, width=1 / 8)),
        ("a Conv2d layer with a frozen weight (requires_grad=False)", _frozen_conv),
        ("a model whose backbone is frozen", _frozen_backbone_model),
        ("a Conv2d layer without bias", lambda: nn.Conv2d(4, 6, 5, bias=False)),
        ("a BatchNorm2d layer (running statistics are buffers, not parameters)", lambda: nn.BatchNorm2d(12)),
        ("a model that uses one Linear layer twice", _shared_layer_model),
        ("a module without parameters", nn.ReLU),
    ]


def _built(factory: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED)
        return factory()


def _integer_facts(value: object) -> tuple[str, bool, int | None]:
    """Probe side: a returned count as plain data: its type's name, whether it is a bool or a float (rejected
    even when integral), and its integer value where it has one (``operator.index``: ints, numpy integers,
    one-element integer tensors)."""
    try:
        index = operator.index(value)
    except (TypeError, ValueError, RuntimeError):
        index = None
    return type(value).__name__, isinstance(value, (bool, float)), index


def _count(student: Callable, *args: object, **kwargs: object) -> dict[str, object]:
    """Probe side: :func:`~grader_tests.recording.call` of the student's function, its result as
    :func:`_integer_facts`."""
    return call(lambda: _integer_facts(student(*args, **kwargs)))


def _as_int(outcome: dict[str, object], what: str) -> int:
    type_name, bool_or_float, index = returned(outcome, what)
    if bool_or_float or index is None:
        raise AssertionError(f"{what} should return an integer, got {type_name}")
    return index


# --- checks -------------------------------------------------------------------------------------------------


def _probe_get_module_params_num(student: Callable) -> Observations:
    return {"counts": [_count(student, _built(factory)) for _, factory in _modules()]}


@hidden_check(_probe_get_module_params_num)
def check_get_module_params_num(observations: Observations) -> None:
    """Counts of unseen modules: other widths, frozen and shared parameters, BatchNorm buffers, no parameters."""
    for (description, factory), outcome in zip(_modules(), observations["counts"], strict=True):
        what = f"get_module_params_num on {description}"
        if _as_int(outcome, what) != get_module_params_num(_built(factory)):
            raise AssertionError(f"{what} gives a wrong count")


_CONV_CASES = [
    (3, 64, 3, True), (64, 128, 3, True), (5, 7, 1, False), (16, 8, 5, True), (1, 1, 7, False), (12, 20, 3, False)
]
_LINEAR_CASES = [
    (512 * 7 * 7, 4096, True), (4096, 1000, True), (64, 6, True), (10, 3, False), (1, 1, True), (7, 13, False)
]


def _probe_conv2d_params(student: Callable) -> Observations:
    return {"counts": [_count(student, c_in, c_out, k, bias=bias) for c_in, c_out, k, bias in _CONV_CASES]}


@hidden_check(_probe_conv2d_params)
def check_conv2d_params(observations: Observations) -> None:
    """The formula on unseen channel counts, kernel sizes and with/without bias."""
    for case, outcome in zip(_CONV_CASES, observations["counts"], strict=True):
        in_channels, out_channels, kernel_size, bias = case
        what = f"conv2d_params({in_channels}, {out_channels}, {kernel_size}, bias={bias})"
        if _as_int(outcome, what) != conv2d_params(in_channels, out_channels, kernel_size, bias):
            raise AssertionError(f"{what} gives a wrong count")


def _probe_linear_params(student: Callable) -> Observations:
    return {"counts": [_count(student, n_in, n_out, bias=bias) for n_in, n_out, bias in _LINEAR_CASES]}


@hidden_check(_probe_linear_params)
def check_linear_params(observations: Observations) -> None:
    """The formula on unseen widths and with/without bias."""
    for (in_features, out_features, bias), outcome in zip(_LINEAR_CASES, observations["counts"], strict=True):
        what = f"linear_params({in_features}, {out_features}, bias={bias})"
        if _as_int(outcome, what) != linear_params(in_features, out_features, bias):
            raise AssertionError(f"{what} gives a wrong count")
