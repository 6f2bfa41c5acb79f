"""Reference implementations of notebook ``07_patches`` and the judges of its hidden checks. Instructor-only: never
released.

Conventions (stated in the notebook):

* ``receptive_fields(layers)`` walks ``[(name, module), ...]`` and returns one row ``(name, size, jump, start)``
  per ``nn.Conv2d``, ``nn.MaxPool2d`` and ``nn.AvgPool2d``, in order; other layers are pointwise and skipped. Along
  one axis, unit ``i`` of a layer depends on the input pixels ``start + i * jump ... start + i * jump + size - 1``
  (``start`` is the first pixel of unit 0's field, negative where it hangs over the border into the padding).
  With kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` (square layers; an int or a pair)::

      k' = d (k - 1) + 1,   size += (k' - 1) * jump,   start -= p * jump,   jump *= s      (from 1, 1, 0)

* ``top_patches(activations, images, field, k)``: each image's strongest unit (the maximum of its map
  ``(h, w)``), the ``k`` images whose maximum is largest, largest first, at most one patch per image; returns
  ``(patches (k, C, size, size), scores (k,), positions (k, 3))`` with positions ``(image, row, column)`` in the
  map's grid. A patch is the field of its unit, rows ``start + row * jump ...`` and columns ``start + column * jump
  ...``; where the field leaves the image the patch holds 0 (the normalised mean colour). Inputs are not changed.

The scores and positions are one check, the patches another: a patch is judged against the field of the
student's *own* position (or the right one), so a wrong choice of units costs the first check only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from grader_tests.kernel.patches import layer_lists, patch_cases
from grader_tests.kernel.record import Observations

from . import judge, reference
from .records import Foreign, Recorded, returned

# --- references -------------------------------------------------------------------------------------------------

KERNEL_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
"""The layers with a window; every other layer (BatchNorm, ReLU, dropout, ...) keeps the geometry."""


def _first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


def receptive_fields(layers: list[tuple[str, nn.Module]]) -> list[tuple[str, int, int, int]]:
    """``(name, size, jump, start)`` after each conv / pool layer of ``layers`` (see the module's docstring)."""
    size, jump, start = 1, 1, 0
    rows = []
    for name, module in layers:
        if not isinstance(module, KERNEL_LAYERS):
            continue
        kernel = _first(getattr(module, "dilation", 1)) * (_first(module.kernel_size) - 1) + 1
        start -= _first(module.padding) * jump
        size += (kernel - 1) * jump
        jump *= _first(module.stride)
        rows.append((name, size, jump, start))
    return rows


def crop(images: torch.Tensor, index: int, row: int, column: int, field: tuple[int, int, int]) -> torch.Tensor:
    """The field of unit ``(row, column)`` in image ``index``: ``(C, size, size)``, 0 outside the image."""
    size, jump, start = field
    top, left = start + row * jump, start + column * jump
    height, width = images.shape[-2:]
    patch = images.new_zeros(images.shape[1], size, size)
    r0, r1, c0, c1 = max(top, 0), min(top + size, height), max(left, 0), min(left + size, width)
    if r0 < r1 and c0 < c1:
        patch[:, r0 - top : r1 - top, c0 - left : c1 - left] = images[index, :, r0:r1, c0:c1]
    return patch


def top_patches(
    activations: torch.Tensor, images: torch.Tensor, field: tuple[int, int, int], k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, h, w), (N, C, H, W) -> (k, C, size, size), (k,), (k, 3)`` (see the module's docstring)."""
    width = activations.shape[-1]
    peaks, flat = activations.flatten(1).max(dim=1)
    scores, order = peaks.topk(k)
    rows, columns = flat[order] // width, flat[order] % width
    positions = torch.stack([order, rows, columns], dim=1)
    patches = torch.stack([crop(images, *map(int, position), field) for position in positions])
    return patches, scores, positions


# --- judges: receptive_fields -----------------------------------------------------------------------------------


def _first_difference(actual: list[Any], expected: Sequence[tuple[str, int, int, int]], column: int) -> str | None:
    for got, want in zip(actual, expected):
        if got[column] != want[column]:
            return want[0]
    return None


@reference()
def _receptive_field_references() -> tuple[tuple[str, tuple[tuple[str, int, int, int], ...]], ...]:
    """``(description, rows)`` of each hidden layer list: computed once per process, as they depend only on the
    hidden layers."""
    return tuple((what, tuple(receptive_fields(layers))) for what, layers in layer_lists())


@judge
def check_receptive_fields(observations: Observations) -> None:
    """Rows of layer lists the student never saw: the layers listed, then sizes, jumps and starts."""
    for (what, expected), outcome in zip(_receptive_field_references(), observations["lists"], strict=True):
        call = f"receptive_fields on {what}"
        kind, seen = returned(outcome, call)
        if kind != "rows":
            raise AssertionError(f"{call} should return a list of (name, size, jump, start) tuples, got {seen}")
        if any(not isinstance(row, list) or len(row) != 4 for row in seen):
            raise AssertionError(f"{call}: every row should be a tuple (name, size, jump, start)")
        names = [row[0][1] if row[0][0] == "str" else None for row in seen]
        if names != [name for name, *_ in expected]:
            raise AssertionError(
                f"{call} lists the wrong layers: one row per nn.Conv2d, nn.MaxPool2d and nn.AvgPool2d, in order, "
                "named as in the list (other layers keep the geometry and get no row)"
            )
        numbers = []
        for name, *items in seen:
            for item_kind, item in items:
                if item_kind != "int":
                    raise AssertionError(f"{call}: size, jump and start should be integers, got {item}")
            numbers.append((name[1], *(item for _, item in items)))
        for column, part, hint in (
            (1, "sizes", "size grows by (k' - 1) * jump, with k' = d (k - 1) + 1 for dilation d"),
            (2, "jumps", "jump is the product of the strides so far"),
            (3, "starts", "start moves by -padding * jump (the jump before the layer)"),
        ):
            layer = _first_difference(numbers, expected, column)
            if layer is not None:
                raise AssertionError(f"{call}: the {part} are wrong from layer {layer!r} on ({hint})")


# --- judges: top_patches ----------------------------------------------------------------------------------------


def _tensor(value: Any) -> torch.Tensor | None:
    return value.tensor if isinstance(value, Recorded) else None


def _triple(outcome: dict[str, Any], what: str) -> tuple[Any, Any, Any]:
    value = returned(outcome, what)
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        name = value.type_name if isinstance(value, Foreign) else type(value).__name__
        raise AssertionError(f"{what} should return (patches, scores, positions), got {name}")
    return value


def _assert_inputs_untouched(seen: dict[str, Any], case: dict[str, Any], what: str) -> None:
    for name in ("activations", "images"):
        if not torch.equal(seen[name], case[name]):
            raise AssertionError(f"{what} changes the {name} it was given: work on copies")


def _positions(value: Any, k: int, case: dict[str, Any], what: str) -> torch.Tensor:
    positions = _tensor(value)
    if positions is None or positions.shape != (k, 3) or positions.is_floating_point() or positions.is_complex():
        raise AssertionError(f"{what}: positions should be an integer tensor of shape ({k}, 3): (image, row, column)")
    n, h, w = case["activations"].shape
    bounds = torch.tensor([n, h, w])
    if ((positions < 0) | (positions >= bounds)).any():
        raise AssertionError(
            f"{what}: positions should be (image, row, column) in the grid of the activation maps, some lie outside it"
        )
    return positions.long()


@judge
def check_top_patches(observations: Observations) -> None:
    """Scores and positions on maps and images the student never saw: each image's strongest unit, the k strongest
    images, largest first, one per image; inputs unchanged."""
    for case, seen in zip(patch_cases(), observations["cases"], strict=True):
        what = f"top_patches on {case['what']}"
        _, scores_value, positions_value = _triple(seen["call"], what)
        _assert_inputs_untouched(seen, case, what)
        activations, k = case["activations"], case["k"]
        scores = _tensor(scores_value)
        if scores is None or scores.shape != (k,) or not scores.is_floating_point():
            raise AssertionError(f"{what}: scores should be a float tensor of shape ({k},)")
        positions = _positions(positions_value, k, case, what)
        scores = scores.detach().to(activations.dtype)
        at_positions = activations[positions[:, 0], positions[:, 1], positions[:, 2]]
        if not torch.allclose(at_positions, scores, rtol=1e-5, atol=1e-6):
            raise AssertionError(f"{what}: a score is not the activation at its position (image, row, column)")
        if len(set(positions[:, 0].tolist())) < k:
            raise AssertionError(
                f"{what}: several patches come from one image: take at most one unit per image, its strongest"
            )
        peaks = activations.flatten(1).amax(dim=1)
        if not torch.allclose(scores, peaks[positions[:, 0]], rtol=1e-5, atol=1e-6):
            raise AssertionError(f"{what}: a position is not its image's strongest unit (the maximum of its map)")
        expected = peaks.topk(k).values
        if torch.allclose(scores.sort(descending=True).values, expected, rtol=1e-5, atol=1e-6):
            if not (scores[:-1] >= scores[1:]).all():
                raise AssertionError(f"{what}: sort the patches by score, largest first")
            continue
        raise AssertionError(f"{what}: these are not the {k} images whose strongest unit is largest")


@judge
def check_top_patches_crops(observations: Observations) -> None:
    """Patches on maps and images the student never saw: the field of each returned position (or of the right
    one), ``size x size``, 0 outside the image. The inputs left unchanged are :func:`check_top_patches`'s
    business (its visible check asserts it): one mistake, one cell."""
    for case, seen in zip(patch_cases(), observations["cases"], strict=True):
        what = f"top_patches on {case['what']}"
        patches_value, _, positions_value = _triple(seen["call"], what)
        images, field, k = case["images"], case["field"], case["k"]
        size = field[0]
        patches = _tensor(patches_value)
        shape = (k, images.shape[1], size, size)
        if patches is None or tuple(patches.shape) != shape or not patches.is_floating_point():
            got = "no tensor" if patches is None else f"shape {tuple(patches.shape)}"
            raise AssertionError(
                f"{what}: patches should be a float tensor of shape {shape}, got {got}: every patch is the whole "
                "size x size field, with 0 where it leaves the image"
            )
        patches = patches.detach().to(images.dtype)
        _, _, right = top_patches(case["activations"], images, field, k)
        candidates = [right]
        try:
            candidates.append(_positions(positions_value, k, case, what))
        except AssertionError:
            pass  # wrong positions are the other check's business: compare with the right ones only
        for positions in candidates:
            expected = torch.stack([crop(images, *map(int, position), field) for position in positions])
            if torch.allclose(patches, expected, rtol=1e-6, atol=1e-6):
                break
        else:
            raise AssertionError(
                f"{what}: the patches are not the receptive fields of their units (rows start + row * jump ... "
                "+ size - 1, columns alike, 0 outside the image)"
            )
