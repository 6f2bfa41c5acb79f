"""Reference implementations of notebook ``08_dissection`` and the judges of its hidden checks. Instructor-only: never
released.

Conventions (stated in the notebook; Bau et al., *Network Dissection*, CVPR 2017, and NetDissect-Lite):

* ``unit_thresholds(activations, q)``: ``(N, K, h, w) -> (K,)``. ``T_k`` is the ``q`` quantile of unit ``k``'s
  activations over all ``N`` images and all ``h * w`` positions together, at the feature map's resolution, so that
  a share ``1 - q`` of them lies above it (0.5% for the paper's ``q = 0.995``). Any usual quantile definition is
  accepted (linear interpolation, ``kthvalue``, a sorted index, the smallest of the top ``(1 - q) N h w``): the
  judge accepts a threshold within two order statistics of the right place.
* ``dissection_iou(activations, thresholds, masks)``: ``(N, K, h, w), (K,), (N, C, H, W) bool -> (K, C)``. Each
  map is upsampled to the masks' size ``(H, W)`` bilinearly (``align_corners=False``), the unit's mask is
  ``M_k = S_k > T_k`` in the notebook (the paper's code; ``>=`` here, the same on the hidden inputs), and
  ``IoU_{k,c} = sum_n |M_k ∩ L_c| / sum_n |M_k ∪ L_c|``: sums over the whole dataset
  first, one ratio (not a mean of per-image IoUs). The hidden thresholds equal no activation, so ``>`` and ``>=``
  agree. Inputs are not changed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from grader_tests.kernel.dissection import iou_cases, threshold_cases, upsampled_bytes
from grader_tests.kernel.record import Observations

from . import judge, reference
from .records import Foreign, Recorded, returned

# --- references -------------------------------------------------------------------------------------------------


def unit_thresholds(activations: torch.Tensor, q: float = 0.995) -> torch.Tensor:
    """``(N, K, h, w) -> (K,)``: each unit's ``q`` quantile over all images and positions (linear interpolation)."""
    return torch.quantile(activations.transpose(0, 1).flatten(1).double(), q, dim=1).to(activations.dtype)


def unit_masks(activations: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int], mode: str = "bilinear",
               align_corners: bool | None = False) -> torch.Tensor:
    """``(N, K, h, w) -> (N, K, H, W)`` bool: the upsampled maps ``>=`` their unit's threshold."""
    x = activations.double()
    if mode == "nearest":
        upsampled = F.interpolate(x, size=size, mode="nearest")
    else:
        upsampled = F.interpolate(x, size=size, mode=mode, align_corners=align_corners)
    return upsampled >= thresholds.double().view(1, -1, 1, 1)


def _counts(units: torch.Tensor, masks: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersections and unions of every unit mask with every concept mask, summed over ``dims`` of ``(N, K, C, H,
    W)``."""
    m, c = units.unsqueeze(2), masks.unsqueeze(1)
    return (m & c).sum(dims).double(), (m | c).sum(dims).double()


def dissection_iou(activations: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(N, K, h, w), (K,), (N, C, H, W) -> (K, C)`` dataset-wide IoU (see the module's docstring), float64."""
    intersection, union = _counts(unit_masks(activations, thresholds, tuple(masks.shape[-2:])), masks.bool(), (0, 3, 4))
    return intersection / union.clamp_min(1)


def _per_image_mean(activations: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    intersection, union = _counts(unit_masks(activations, thresholds, tuple(masks.shape[-2:])), masks.bool(), (3, 4))
    return (intersection / union.clamp_min(1)).mean(0)


def _variant(activations: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor, **upsampling: Any) -> torch.Tensor:
    intersection, union = _counts(unit_masks(activations, thresholds, tuple(masks.shape[-2:]), **upsampling), masks.bool(),
                                  (0, 3, 4))
    return intersection / union.clamp_min(1)


def _at_map_resolution(activations: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The concept masks brought down to the maps (a cell is on where most of its pixels are), no upsampling."""
    small = F.adaptive_avg_pool2d(masks.double(), tuple(activations.shape[-2:])) >= 0.5
    units = activations.double() >= thresholds.double().view(1, -1, 1, 1)
    intersection, union = _counts(units, small, (0, 3, 4))
    return intersection / union.clamp_min(1)


def _dice(activations: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    iou = dissection_iou(activations, thresholds, masks)
    return 2 * iou / (1 + iou)


def _union_without_overlap(activations: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    units = unit_masks(activations, thresholds, tuple(masks.shape[-2:]))
    intersection, _ = _counts(units, masks.bool(), (0, 3, 4))
    total = units.sum((0, 2, 3)).double().view(-1, 1) + masks.sum((0, 2, 3)).double().view(1, -1)
    return intersection / total.clamp_min(1)


IOU_MISTAKES = (
    (_per_image_mean, ("is the mean of per-image IoUs: sum the intersections and the unions over the whole dataset "
                       "first, then divide once")),
    (lambda a, t, m: _variant(a, t, m, mode="nearest"),
     "upsamples with nearest-neighbour interpolation: upsample bilinearly (mode='bilinear', align_corners=False)"),
    (lambda a, t, m: _variant(a, t, m, mode="bilinear", align_corners=True),
     "upsamples with align_corners=True: use bilinear upsampling with align_corners=False"),
    (lambda a, t, m: _variant(a, t, m, mode="bicubic", align_corners=False),
     "upsamples bicubically: upsample bilinearly (mode='bilinear', align_corners=False)"),
    (_at_map_resolution, "compares at the maps' resolution: upsample each map to the masks' size (H, W) first"),
    (_dice, "is a Dice coefficient 2|M ∩ L| / (|M| + |L|): the IoU divides by the union |M ∪ L|"),
    (_union_without_overlap, ("divides by |M| + |L|: the union counts the pixels of the intersection once, "
                              "|M ∪ L| = |M| + |L| - |M ∩ L|")),
)
"""``(variant, what the student's result then is)``: mistakes the judge can name."""


# --- judges: unit_thresholds ------------------------------------------------------------------------------------


def _tensor(value: Any) -> torch.Tensor | None:
    return value.tensor if isinstance(value, Recorded) else None


def _name(value: Any) -> str:
    if isinstance(value, Recorded):
        return f"a tensor of shape {tuple(value.tensor.shape)}"
    return value.type_name if isinstance(value, Foreign) else type(value).__name__


def threshold_accepted(activations: torch.Tensor, q: float, thresholds: torch.Tensor, slack: int = 2) -> torch.Tensor:
    """``(K,)`` bool: whether each threshold lies where a ``q`` quantile can lie, within ``slack`` order statistics:
    at most ``(1 - q) M + slack`` of the unit's ``M`` activations lie above it and at least ``(1 - q) M - slack`` lie
    at or above it."""
    values = activations.transpose(0, 1).flatten(1).double()
    t = thresholds.double().view(-1, 1)
    expected = (1 - q) * values.shape[1]
    above, at_or_above = (values > t).sum(1), (values >= t).sum(1)
    return (above <= expected + slack) & (at_or_above >= expected - slack)


def _assert_unchanged(seen: dict[str, Any], case: dict[str, Any], names: tuple[str, ...], what: str) -> None:
    for name in names:
        if not torch.equal(seen[name], case[name]):
            raise AssertionError(f"{what} changes the {name} it was given: work on copies")


@reference()
def _threshold_cases() -> tuple[dict[str, Any], ...]:
    """:func:`threshold_cases`, built once per process, as they are the hidden case alone (callers only read them)."""
    return tuple(threshold_cases())


@judge
def check_unit_thresholds(observations: Observations) -> None:
    """One threshold per unit over the whole dataset, the ``q`` quantile (within two order statistics), inputs
    unchanged."""
    for case, seen in zip(_threshold_cases(), observations["cases"], strict=True):
        what = f"unit_thresholds on {case['what']}"
        value = returned(seen["call"], what)
        _assert_unchanged(seen, case, ("activations",), what)
        activations, q = case["activations"], case["q"]
        n, k = activations.shape[:2]
        thresholds = _tensor(value)
        if thresholds is None or not (thresholds.is_floating_point()):
            raise AssertionError(f"{what} should return a float tensor of shape ({k},), got {_name(value)}")
        if thresholds.shape != (k,):
            if thresholds.shape in ((n, k), (k, n)):
                raise AssertionError(
                    f"{what} returns a threshold per image and unit, shape {tuple(thresholds.shape)}: one threshold "
                    f"per unit, over all images and positions together, shape ({k},)"
                )
            raise AssertionError(f"{what} should return one threshold per unit, shape ({k},), got {_name(value)}")
        thresholds = thresholds.detach()
        if torch.isnan(thresholds).any():
            raise AssertionError(f"{what} returns NaN")
        if threshold_accepted(activations, q, thresholds).all():
            continue
        if threshold_accepted(activations, 1 - q, thresholds).all():
            raise AssertionError(
                f"{what} takes the wrong end: T_k is exceeded by a share 1 - q of the activations (the top 0.5% "
                "for q = 0.995), not by a share q"
            )
        per_image = torch.quantile(activations.flatten(2).double(), q, dim=2)  # (N, K)
        for summary in (per_image.mean(0), per_image.median(0).values, per_image.amax(0)):
            if torch.allclose(thresholds.double(), summary, rtol=1e-4, atol=1e-6):
                raise AssertionError(
                    f"{what} combines thresholds computed per image: take the quantile over all images and positions "
                    "of a unit together"
                )
        overall = torch.quantile(activations.flatten().double()[:16_000_000], q)
        if torch.allclose(thresholds.double(), overall.expand(k), rtol=1e-4, atol=1e-6):
            raise AssertionError(f"{what} uses one threshold for all units: each unit k gets its own T_k")
        raise AssertionError(
            f"{what}: the thresholds are not the q quantiles of each unit's activations (a share 1 - q of a unit's "
            "activations over all images and positions should lie above its T_k)"
        )


# --- judges: dissection_iou -------------------------------------------------------------------------------------


@reference()
def _iou_references() -> tuple[tuple[dict[str, Any], torch.Tensor], ...]:
    """Each case of :func:`iou_cases` with its reference IoU: computed once per process, as they depend only on the
    hidden cases (callers only read them)."""
    return tuple((case, dissection_iou(case["activations"], case["thresholds"], case["masks"])) for case in iou_cases())


@judge
def check_dissection_iou(observations: Observations) -> None:
    """The dataset-wide IoU of each unit's thresholded, bilinearly upsampled maps with each concept, inputs
    unchanged, a known mistake named; and no tensor over a quarter of all the upsampled maps of a larger dataset
    (the text: chunks of a few images, never all of the upsampled maps at once)."""
    for (case, expected), seen in zip(_iou_references(), observations["cases"], strict=True):
        what = f"dissection_iou on {case['what']}"
        value = returned(seen["call"], what)
        _assert_unchanged(seen, case, ("activations", "thresholds", "masks"), what)
        activations, thresholds, masks = case["activations"], case["thresholds"], case["masks"]
        k, c = activations.shape[1], masks.shape[1]
        iou = _tensor(value)
        if iou is None or not iou.is_floating_point() or iou.shape != (k, c):
            got = _name(value)
            hint = " (units first, then concepts)" if iou is not None and iou.shape == (c, k) else ""
            raise AssertionError(f"{what} should return a float tensor of shape ({k}, {c}){hint}, got {got}")
        iou = iou.detach().double()
        if torch.isnan(iou).any():
            raise AssertionError(f"{what} returns NaN: a concept or a unit with no pixels still has a union")
        if torch.allclose(iou, expected, rtol=0, atol=1e-3):
            continue
        for variant, message in IOU_MISTAKES:
            if torch.allclose(iou, variant(activations, thresholds, masks), rtol=0, atol=1e-3):
                raise AssertionError(f"{what}: the IoU {message}")
        raise AssertionError(
            f"{what}: wrong IoU (upsample each map bilinearly to the masks' size, threshold it at the unit's T_k, and "
            "divide the intersections summed over the dataset by the unions summed over the dataset)"
        )
    memory = observations.get("memory", {})
    if not memory.get("ran"):
        raise AssertionError("dissection_iou fails on a dataset of 96 images (64 units, masks of 64x64)")
    bound = upsampled_bytes() / 4
    if memory["largest"] > bound:
        raise AssertionError(
            f"dissection_iou holds {memory['largest'] / 2**20:.0f} MB in one tensor on 96 images whose upsampled "
            f"maps take {upsampled_bytes() / 2**20:.0f} MB in all: work through the images in chunks of a few, never "
            f"all of the upsampled maps at once (at most {bound / 2**20:.0f} MB in one tensor here)"
        )
