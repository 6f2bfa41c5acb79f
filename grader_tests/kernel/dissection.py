"""Probes of ``08_dissection``: the student's ``unit_thresholds`` and ``dissection_iou`` on activations, thresholds
and concept masks it never saw (other layer sizes, non-square maps, float64, upsampling by 2, 4 and 16, units of very
different scales, images with very different concept areas, a concept that is a unit's own mask, an empty concept).
They record what each call returned and the inputs afterwards; they compare nothing. Judged in
:mod:`grader_tests.judges.dissection`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from helpers.data import make_concept_dataset

from .inputs import HIDDEN_SEED, calibrated_hidden_model
from .record import Observations, call, probe

# --- hidden inputs: activations for the thresholds -------------------------------------------------------------


def _generator(offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(HIDDEN_SEED + 200 + offset)


def _smooth(n: int, k: int, h: int, w: int, offset: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, k, h, w)`` random maps with some spatial structure (noise upsampled from a coarser grid, plus noise)."""
    g = _generator(offset)
    coarse = torch.randn(n, k, max(2, h // 2), max(2, w // 2), generator=g, dtype=torch.float64)
    maps = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    return (maps + 0.3 * torch.randn(n, k, h, w, generator=g, dtype=torch.float64)).to(dtype)


def layer_case() -> tuple[torch.Tensor, torch.Tensor]:
    """A real layer: ``relu4_1`` (rectified, the layers the notebook dissects) of the calibrated hidden model (32
    units at width 1/16) on 6 hidden scenes of 64x64, ``(6, 32, 8, 8)``, and the scenes' concept masks
    ``(6, 9, 64, 64)``."""
    scenes = make_concept_dataset(6, HIDDEN_SEED + 7, 64)
    model, saved = calibrated_hidden_model(), {}
    handle = model.backbone.relu4_1.register_forward_hook(lambda module, inputs, output: saved.update(maps=output.detach()))
    try:
        with torch.no_grad():
            model(scenes.images)
    finally:
        handle.remove()
    return saved["maps"].clone(), scenes.concepts


def threshold_cases() -> list[dict[str, Any]]:
    """``{"what", "activations" (N, K, h, w), "q"}``, built fresh. Units have different scales and offsets (one
    threshold for all units is wrong), images have different offsets (a threshold per image is wrong)."""
    first = _smooth(40, 5, 9, 9, 1)
    first = first * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0]).view(1, -1, 1, 1) + torch.tensor([0.0, 1.0, -2.0, 0.5, 4.0]).view(1, -1, 1, 1)
    first = first + torch.linspace(-1.5, 1.5, 40).view(-1, 1, 1, 1)              # images differ in level
    relu = _smooth(30, 4, 12, 12, 2).clamp_min(0)                                 # about half exact zeros
    wide = _smooth(25, 3, 6, 14, 3, torch.float64) * torch.tensor([1.0, 0.2, 5.0], dtype=torch.float64).view(1, -1, 1, 1)
    skewed = _smooth(60, 6, 7, 7, 4).exp()                                         # heavy right tails
    return [
        {"what": "40 maps of 9x9 from 5 units of different scales, q = 0.995", "activations": first, "q": 0.995},
        {"what": "30 ReLU maps of 12x12 (many exact zeros), 4 units, q = 0.99", "activations": relu, "q": 0.99},
        {"what": "25 float64 maps of 6x14, 3 units, q = 0.95", "activations": wide, "q": 0.95},
        {"what": "60 maps of 7x7 with heavy tails, 6 units, q = 0.995", "activations": skewed, "q": 0.995},
        {"what": "relu4_1 of another model on 6 scenes (32 units, maps of 8x8), q = 0.98", "activations": layer_case()[0],
         "q": 0.98},
    ]


# --- hidden inputs: activations, thresholds and concept masks for the IoU --------------------------------------


def _blobs(n: int, c: int, height: int, width: int, offset: int, share: float) -> torch.Tensor:
    """``(n, c, H, W)`` bool: smooth random regions covering about ``share`` of each image, of varying size."""
    g = _generator(offset)
    field = F.interpolate(torch.randn(n, c, 4, 4, generator=g, dtype=torch.float64), size=(height, width), mode="bicubic",
                          align_corners=False)
    shares = (share * (0.3 + 1.4 * torch.rand(n, c, generator=g, dtype=torch.float64))).clamp(0.01, 0.9)  # areas differ
    flat = field.flatten(2)
    cut = torch.stack([torch.quantile(flat[i, j], 1 - shares[i, j]) for i in range(n) for j in range(c)])
    return field >= cut.view(n, c, 1, 1)


def _thresholds(activations: torch.Tensor, q: float, offset: int) -> torch.Tensor:
    """A threshold per unit near its ``q`` quantile, nudged so that it equals no activation (``>`` and ``>=`` agree)."""
    values = activations.transpose(0, 1).flatten(1).double()
    thresholds = torch.quantile(values, q, dim=1)
    nudge = 1e-3 * values.std(dim=1) * (1 + torch.rand(len(thresholds), generator=_generator(offset), dtype=torch.float64))
    return (thresholds + nudge).to(activations.dtype)


def iou_cases() -> list[dict[str, Any]]:
    """``{"what", "activations" (N, K, h, w), "thresholds" (K,), "masks" (N, C, H, W) bool}``, built fresh.

    The first case plants answers: concept 0 is unit 0's own mask (IoU 1), concept 1 is unit 1's mask in the first
    two images only, concept 3 is empty (IoU 0). Concept areas differ from image to image, so the mean of per-image
    IoUs differs from the dataset-wide IoU."""
    acts = _smooth(6, 3, 7, 7, 10)
    thresholds = _thresholds(acts, 0.8, 10)
    upsampled = F.interpolate(acts.double(), size=(28, 28), mode="bilinear", align_corners=False)
    own = upsampled >= thresholds.double().view(1, -1, 1, 1)
    partial = own[:, 1].clone()
    partial[2:] = False
    planted = torch.stack([own[:, 0], partial, _blobs(6, 1, 28, 28, 11, 0.2)[:, 0], torch.zeros_like(own[:, 0])], dim=1)

    wide_acts = _smooth(5, 4, 5, 7, 12, torch.float64)
    conv5_like = _smooth(4, 5, 4, 4, 14)
    pairs = _smooth(8, 3, 12, 12, 16)
    layer, scene_concepts = layer_case()
    return [
        {"what": "6 maps of 7x7 from 3 units, masks of 28x28 (a concept that is unit 0's own mask, an empty one)",
         "activations": acts, "thresholds": thresholds, "masks": planted},
        {"what": "5 float64 maps of 5x7, 4 units, 6 concepts of 20x28", "activations": wide_acts,
         "thresholds": _thresholds(wide_acts, 0.9, 12), "masks": _blobs(5, 6, 20, 28, 13, 0.15)},
        {"what": "4 maps of 4x4 from 5 units, 3 concepts of 64x64 (upsampled 16 times, like conv5)",
         "activations": conv5_like, "thresholds": _thresholds(conv5_like, 0.9, 14), "masks": _blobs(4, 3, 64, 64, 15, 0.1)},
        {"what": "8 maps of 12x12 from 3 units, 5 concepts of 24x24", "activations": pairs,
         "thresholds": _thresholds(pairs, 0.95, 16), "masks": _blobs(8, 5, 24, 24, 17, 0.1)},
        {"what": "relu4_1 of another model on 6 scenes (32 units, maps of 8x8) and their 9 concepts (64x64)",
         "activations": layer, "thresholds": _thresholds(layer, 0.95, 18), "masks": scene_concepts},
    ]


MEMORY_CASE = (96, 64, 4, 2, 64)
"""``(images, units, map side, concepts, mask side)`` of the memory check: all the upsampled maps at once would
take ``96 * 64 * 64 * 64`` float32 values, 100 MB; one image's, 1 MB."""


def memory_case() -> dict[str, Any]:
    """``{"activations", "thresholds", "masks"}`` of :data:`MEMORY_CASE`, built fresh."""
    n, k, side, c, size = MEMORY_CASE
    activations = _smooth(n, k, side, side, 20)
    return {"activations": activations, "thresholds": _thresholds(activations, 0.95, 20),
            "masks": _blobs(n, c, size, size, 21, 0.1)}


def upsampled_bytes() -> int:
    """What all the upsampled maps of :func:`memory_case` take in float32."""
    n, k, _, _, size = MEMORY_CASE
    return n * k * size * size * 4


class LargestTensor(TorchFunctionMode):
    """Notes the largest storage any torch function or tensor method returns while it is active (views count
    their base): ``F.interpolate``'s output however it is reached (``nn.Upsample``, torchvision's ``resize``).
    A function mode, not a dispatch mode: it costs nothing to start (a dispatch mode imports torch._dynamo)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        out = func(*args, **(kwargs or {}))
        for value in tree_leaves(out):
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.untyped_storage().nbytes())
        return out


# --- probes ----------------------------------------------------------------------------------------------------


@probe
def check_unit_thresholds(student: Callable[..., Any]) -> Observations:
    """``unit_thresholds`` on activations it never saw: what it returned, and the activations afterwards."""
    observed = []
    for case in threshold_cases():
        activations = case["activations"]
        outcome = call(student, activations, case["q"])
        observed.append({"call": outcome, "activations": activations.detach().clone()})
    return {"cases": observed}


@probe
def check_dissection_iou(student: Callable[..., Any]) -> Observations:
    """``dissection_iou`` on activations, thresholds and masks it never saw: what it returned, and the inputs
    afterwards; then on :func:`memory_case`, the largest tensor it made."""
    observed = []
    for case in iou_cases():
        activations, thresholds, masks = case["activations"], case["thresholds"], case["masks"]
        outcome = call(student, activations, thresholds, masks)
        observed.append({"call": outcome, "activations": activations.detach().clone(),
                         "thresholds": thresholds.detach().clone(), "masks": masks.detach().clone()})
    case, largest = memory_case(), LargestTensor()
    with largest:
        outcome = call(student, case["activations"], case["thresholds"], case["masks"])
    return {"cases": observed, "memory": {"ran": "value" in outcome, "largest": largest.largest}}
