"""Probes of ``02_parameters``: the student's ``get_module_params_num``, ``conv2d_params`` and ``linear_params``
on modules and layer shapes the student never counted. They record each returned count as plain facts (its
type's name, whether it is a bool or a float, its integer value). Judged in :mod:`grader_tests.judges.parameters`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import nn

from helpers.models import VGG11Classification

from .inputs import HIDDEN_SEED, hidden_model
from .record import Observations, call, probe

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


def modules() -> list[tuple[str, Callable[[], nn.Module]]]:
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


def built(factory: Callable[[], nn.Module]) -> nn.Module:
    """The module ``factory`` builds, from the hidden seed."""
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED)
        return factory()


CONV_CASES = [
    (3, 64, 3, True), (64, 128, 3, True), (5, 7, 1, False), (16, 8, 5, True), (1, 1, 7, False), (12, 20, 3, False)
]
LINEAR_CASES = [
    (512 * 7 * 7, 4096, True), (4096, 1000, True), (64, 6, True), (10, 3, False), (1, 1, True), (7, 13, False)
]

# --- what the probes write down -----------------------------------------------------------------------------


def _integer_facts(value: object) -> tuple[str, bool, int | None]:
    """A returned count as plain data: its type's name, whether it is a bool or a float (rejected even when
    integral), and its integer value where it has one (``operator.index``: ints, numpy integers, one-element
    integer tensors)."""
    try:
        index = operator.index(value)
    except (TypeError, ValueError, RuntimeError):
        index = None
    return type(value).__name__, isinstance(value, (bool, float)), index


def _count(student: Callable, *args: object, **kwargs: object) -> dict[str, object]:
    """:func:`~grader_tests.kernel.record.call` of the student's function, its result as :func:`_integer_facts`."""
    return call(lambda: _integer_facts(student(*args, **kwargs)))


# --- probes -------------------------------------------------------------------------------------------------


@probe
def check_get_module_params_num(student: Callable) -> Observations:
    """``get_module_params_num`` on unseen modules: other widths, frozen and shared parameters, BatchNorm
    buffers, no parameters."""
    return {"counts": [_count(student, built(factory)) for _, factory in modules()]}


@probe
def check_conv2d_params(student: Callable) -> Observations:
    """``conv2d_params`` on unseen channel counts, kernel sizes and with/without bias."""
    return {"counts": [_count(student, c_in, c_out, k, bias=bias) for c_in, c_out, k, bias in CONV_CASES]}


@probe
def check_linear_params(student: Callable) -> Observations:
    """``linear_params`` on unseen widths and with/without bias."""
    return {"counts": [_count(student, n_in, n_out, bias=bias) for n_in, n_out, bias in LINEAR_CASES]}
