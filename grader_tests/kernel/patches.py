"""Probes of ``07_patches``: the student's ``receptive_fields`` on layer lists of architectures it never saw (other
kernel sizes, strides, paddings, dilation, average pooling, layers given as pairs) and ``top_patches`` on activation
maps and images it never saw (non-square, float64, fields larger than the image, peaks at the border, one image
with two strong units). They record what each call returned, as plain data, and the inputs afterwards. Judged in
:mod:`grader_tests.judges.patches`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .inputs import HIDDEN_SEED, hidden_images, hidden_model
from .record import Observations, call, probe

# --- hidden inputs: layer lists -------------------------------------------------------------------------------


def _alexnet_like() -> list[tuple[str, nn.Module]]:
    """AlexNet's feature extractor (torchvision's), narrow: an 11x11 stride-4 conv, overlapping 3x3 stride-2 pools."""
    return [
        ("conv1", nn.Conv2d(3, 4, kernel_size=11, stride=4, padding=2)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(kernel_size=3, stride=2)),
        ("conv2", nn.Conv2d(4, 4, kernel_size=5, padding=2)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(kernel_size=3, stride=2)),
        ("conv3", nn.Conv2d(4, 4, kernel_size=3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(4, 4, kernel_size=3, padding=1)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(4, 4, kernel_size=3, padding=1)), ("relu5", nn.ReLU()),
        ("pool5", nn.MaxPool2d(kernel_size=3, stride=2)),
    ]


def _resnet_stem_dilated() -> list[tuple[str, nn.Module]]:
    """A ResNet stem (7x7 stride-2 conv, 3x3 stride-2 max-pool given as pairs), two dilated convs, a 2x2 average pool."""
    return [
        ("stem", nn.Conv2d(3, 4, kernel_size=7, stride=2, padding=3, bias=False)), ("stem_bn", nn.BatchNorm2d(4)),
        ("stem_relu", nn.ReLU()),
        ("maxpool", nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))),
        ("dilated2", nn.Conv2d(4, 4, kernel_size=3, padding=2, dilation=2)), ("relu_a", nn.ReLU()),
        ("dilated4", nn.Conv2d(4, 4, kernel_size=3, padding=4, dilation=4)), ("relu_b", nn.ReLU()),
        ("avgpool", nn.AvgPool2d(kernel_size=2)),
    ]


def _unpadded() -> list[tuple[str, nn.Module]]:
    """Convs without padding, a stride-2 conv, a dilated max-pool, a padded stride-1 average pool, a 1x1 conv,
    dropout, and a stride-3 conv."""
    return [
        ("valid5", nn.Conv2d(3, 4, kernel_size=5)), ("drop", nn.Dropout2d(0.1)),
        ("strided", nn.Conv2d(4, 4, kernel_size=3, stride=2)),
        ("dilated_pool", nn.MaxPool2d(kernel_size=3, stride=1, dilation=2)),
        ("smooth", nn.AvgPool2d(kernel_size=3, stride=1, padding=1)), ("identity", nn.Identity()),
        ("pointwise", nn.Conv2d(4, 4, kernel_size=1)),
        ("stride3", nn.Conv2d(4, 4, kernel_size=(3, 3), stride=(3, 3), padding=(1, 1))),
    ]


def _course_model() -> list[tuple[str, nn.Module]]:
    return list(hidden_model(width=1 / 16).backbone.named_children())


LAYER_LISTS: tuple[tuple[str, Callable[[], list[tuple[str, nn.Module]]]], ...] = (
    ("an AlexNet-like stack (11x11 stride-4 conv, overlapping 3x3 stride-2 max-pools)", _alexnet_like),
    ("a ResNet stem with dilated convs and an average pool", _resnet_stem_dilated),
    ("a stack of unpadded, strided and dilated layers", _unpadded),
    ("the course model's backbone (width 1/16)", _course_model),
)
"""``(description, factory)``: layer lists whose receptive fields the student never derived."""


def layer_lists() -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """``(description, [(name, module), ...])``, built fresh."""
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED)
        return [(description, factory()) for description, factory in LAYER_LISTS]


# --- hidden inputs: activation maps and images ----------------------------------------------------------------


def _maps(n: int, h: int, w: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(n, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def patch_cases() -> list[dict[str, Any]]:
    """``{"what", "activations" (N, h, w), "images" (N, C, H, W), "field" (size, jump, start), "k"}``, built fresh.

    The first case plants units: image 2 holds the two strongest units of all (so a top-k over every position
    repeats it), images 0 and 1 peak in a corner and on the bottom row (their fields hang over the border).
    """
    first = _maps(5, 16, 16, HIDDEN_SEED + 10, torch.float32)
    first[2, 5, 5], first[2, 9, 3], first[0, 0, 0], first[1, 15, 7] = 10.0, 9.5, 8.0, 7.0
    tall = hidden_images(3, 32, dtype=torch.float32)[..., 4:28]  # (3, 3, 32, 24)
    small64 = hidden_images(3, 32, dtype=torch.float64)
    unpadded_images = torch.randn(4, 3, 20, 20, generator=torch.Generator().manual_seed(HIDDEN_SEED + 12))
    return [
        {"what": "5 images of 64x64, the field of conv3_1 (18, 4, -7)", "activations": first,
         "images": hidden_images(5, 64, dtype=torch.float32), "field": (18, 4, -7), "k": 4},
        {"what": "3 non-square images of 32x24, field (10, 4, -3), k = N", "activations": _maps(3, 8, 6, HIDDEN_SEED + 13, torch.float32),
         "images": tall.clone(), "field": (10, 4, -3), "k": 3},
        {"what": "3 float64 images of 32x32 and a field larger than the image (46, 8, -19)",
         "activations": _maps(3, 4, 4, HIDDEN_SEED + 14, torch.float64), "images": small64, "field": (46, 8, -19), "k": 2},
        {"what": "4 images of 20x20 and an unpadded field (5, 2, 0)", "activations": _maps(4, 8, 8, HIDDEN_SEED + 15, torch.float32),
         "images": unpadded_images, "field": (5, 2, 0), "k": 3},
    ]


# --- what the probes write down -------------------------------------------------------------------------------


def _plain(value: object) -> tuple[str, object]:
    """A name or number of a row as plain data (tuples survive the record): ``("str", text)``, ``("int", value)``
    for an integer (int, numpy or one-element tensor), ``("not_int", type name)`` for a bool or float, ``("type",
    type name)`` for anything else."""
    if isinstance(value, str):
        return ("str", str(value))
    if isinstance(value, (bool, float)):
        return ("not_int", type(value).__name__)
    try:
        return ("int", operator.index(value))
    except (TypeError, ValueError, RuntimeError):
        return ("type", type(value).__name__)


def _rows(value: object) -> tuple[str, object]:
    """A returned list of ``(name, size, jump, start)`` rows as plain data: ``("rows", [row, ...])`` with each row a
    list of :func:`_plain` items (or ``("type", name)`` where a row is not a sequence), or ``("not_a_list", type
    name)``."""
    if not isinstance(value, (list, tuple)):
        return ("not_a_list", type(value).__name__)
    rows: list[object] = []
    for row in value:
        if isinstance(row, (list, tuple)):
            rows.append([_plain(item) for item in row])
        else:
            rows.append(("type", type(row).__name__))
    return ("rows", rows)


def _call_on_cases(student: Callable[..., Any]) -> list[dict[str, Any]]:
    observed = []
    for case in patch_cases():
        activations, images = case["activations"], case["images"]
        outcome = call(student, activations, images, case["field"], case["k"])
        observed.append({"call": outcome, "activations": activations.detach().clone(), "images": images.detach().clone()})
    return observed


# --- probes ---------------------------------------------------------------------------------------------------


@probe
def check_receptive_fields(student: Callable[..., Any]) -> Observations:
    """``receptive_fields`` on layer lists it never saw: the rows each call returned."""
    return {"lists": [call(lambda layers=layers: _rows(student(layers))) for _, layers in layer_lists()]}


@probe
def check_top_patches(student: Callable[..., Any]) -> Observations:
    """``top_patches`` on activation maps and images it never saw: what it returned (its scores and positions are
    judged), and its inputs afterwards."""
    return {"cases": _call_on_cases(student)}


@probe
def check_top_patches_crops(student: Callable[..., Any]) -> Observations:
    """``top_patches`` on the same hidden inputs: what it returned (its patches are judged), and its inputs
    afterwards."""
    return {"cases": _call_on_cases(student)}
