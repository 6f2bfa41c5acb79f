"""Probes of ``11_occlusion``: the student's ``occlusion_drops`` and ``occlusion_map`` on hidden models, images and
drop grids. They record what the functions return, the size of every batch the model was called with, the modes
and the caller's image. Judged in :mod:`grader_tests.judges.occlusion`, whose reference agrees with captum's
``Occlusion`` (``tests/test_occlusion_checks.py``).

Cases cover windows that tile the image exactly, windows clipped at the border (the last position is
``ceil((H - window) / stride) * stride``), non-square images, fill values other than 0 and float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .facts import BatchRecorder, call_in_train_mode, input_state
from .inputs import HIDDEN_SEED, cached_hidden_images, calibrated_hidden_model
from .record import Observations, call, probe

DROP_CASES: tuple[tuple[int, int, int, float, int, int, torch.dtype], ...] = (
    # (image, class, window, fill, stride, batch_size, dtype) on 64 x 64 hidden images, or 96 x 64 for image 2
    (0, 0, 16, 0.0, 8, 64, torch.float32),  # tiles exactly: 7 x 7 positions
    (1, 3, 12, 0.5, 10, 16, torch.float32),  # clipped at the border: 7 x 7 positions, the last 4 px wide
    (2, 5, 20, -1.0, 12, 7, torch.float32),  # non-square (96 x 64): 8 x 5 positions, clipped
    (1, 2, 24, 0.0, 24, 3, torch.float64),  # no overlap, clipped: 3 x 3 positions
)
"""Cases of the value check of ``occlusion_drops``."""

MAP_CASES: tuple[tuple[int, int, int, int, torch.dtype], ...] = (
    # (window, stride, height, width, dtype)
    (16, 8, 64, 64, torch.float32),
    (12, 10, 64, 64, torch.float32),
    (20, 12, 96, 64, torch.float64),
    (7, 7, 30, 44, torch.float64),  # no overlap, clipped
    (5, 2, 9, 9, torch.float64),
    (8, 3, 8, 20, torch.float32),  # one row of windows
)
"""Cases of the value check of ``occlusion_map``."""


def positions(length: int, window: int, stride: int) -> int:
    """How many window positions fit along an axis of ``length`` pixels: ``ceil((length - window) / stride) + 1``
    (captum's rule: the last window may stick out of the image and is clipped)."""
    return -(-(length - window) // stride) + 1


def images(dtype: torch.dtype) -> list[torch.Tensor]:
    """Three hidden images ``(3, H, W)``: two 64 x 64, one 96 x 64."""
    square = cached_hidden_images(2, 64, dtype=dtype)
    tall = cached_hidden_images(1, 96, seed=7, dtype=dtype)[..., :, 16:80]
    return [square[0], square[1], tall[0]]


def drop_case(index: int) -> tuple[nn.Module, torch.Tensor, int, int, int, float, int]:
    """``(model, image, class_idx, window, stride, fill, batch_size)`` of :data:`DROP_CASES` ``[index]``."""
    image, class_idx, window, fill, stride, batch_size, dtype = DROP_CASES[index]
    return calibrated_hidden_model(dtype), images(dtype)[image].clone(), class_idx, window, stride, fill, batch_size


def drop_grid(index: int) -> tuple[torch.Tensor, int, int, tuple[int, int]]:
    """``(drops, window, stride, (height, width))`` of :data:`MAP_CASES` ``[index]``: random drops of both signs."""
    window, stride, height, width, dtype = MAP_CASES[index]
    generator = torch.Generator().manual_seed(HIDDEN_SEED + 110 + index)
    shape = (positions(height, window, stride), positions(width, window, stride))
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype), window, stride, (height, width)


@probe
def check_occlusion_drops(student: Callable[..., Any]) -> Observations:
    """Values of ``occlusion_drops`` on hidden models and images (clipped windows, non-square, fills, float64),
    and the caller's image after each call."""
    drops, inputs = [], []
    for index in range(len(DROP_CASES)):
        model, image, class_idx, window, stride, fill, batch_size = drop_case(index)
        drops.append(call(student, model, image, class_idx, window, stride, fill, batch_size))
        inputs.append(input_state(image))
    return {"drops": drops, "inputs": inputs}


@probe
def check_occlusion_drops_batched(student: Callable[..., Any]) -> Observations:
    """``occlusion_drops`` on a model in train mode: the batch sizes it called the model (or a copy of it) with,
    the modes; then its result on a fresh copy of the model in eval mode (what it must reproduce)."""
    model, image, class_idx, window, stride, fill, batch_size = drop_case(1)
    return call_in_train_mode(student, BatchRecorder(model), image, class_idx, window, stride, fill, batch_size)


@probe
def check_occlusion_map(student: Callable[..., Any]) -> Observations:
    """Values of ``occlusion_map(drops, window, stride, size)`` on hidden drop grids and sizes."""
    maps = []
    for index in range(len(MAP_CASES)):
        drops, window, stride, size = drop_grid(index)
        maps.append(call(student, drops.clone(), window, stride, size))
    return {"maps": maps}
