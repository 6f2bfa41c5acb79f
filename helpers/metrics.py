"""Does a heatmap point at the object? Scores against the ground-truth masks of the shapes world."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow boolean ``masks (N, H, W)`` by ``radius`` pixels (a square structuring element)."""
    if radius <= 0:
        return masks
    grown = masks[:, None].float()
    size = 2 * radius + 1  # a square is a row pass then a column pass: two cheap 1-D max-pools
    grown = F.max_pool2d(grown, kernel_size=(1, size), stride=1, padding=(0, radius))
    grown = F.max_pool2d(grown, kernel_size=(size, 1), stride=1, padding=(radius, 0))
    return grown[:, 0] > 0


def pointing_game(heatmaps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Hits ``(N,)`` bool: the map's maximum lies on the object mask grown by ``tolerance`` pixels.

    ``heatmaps (N, H, W)`` at image resolution; ``masks (N, H, W)`` bool. A map with several maxima hits
    when its first maximum (in row-major order) does; a constant map points at pixel (0, 0).
    (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016.)
    """
    if heatmaps.shape != masks.shape:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} and masks {tuple(masks.shape)} must have the same shape")
    peaks = heatmaps.flatten(1).argmax(1)
    return dilate(masks, tolerance).flatten(1).gather(1, peaks[:, None])[:, 0]


def energy_in_mask(heatmaps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share ``(N,)`` of each non-negative map's total inside the mask (energy-based pointing game)."""
    heatmaps = heatmaps.clamp_min(0)
    total = heatmaps.flatten(1).sum(1)
    inside = (heatmaps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(heatmaps.dtype).tiny), torch.zeros_like(total))


def on_object_ratio(heatmaps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(N,)``: each map's share on the object (:func:`energy_in_mask`) over the object's share of the image.

    1 is chance: a uniform map, or one that ignores where the object is, puts on the object the share of the
    image the object covers. Above 1 the map concentrates on the object; the largest possible value is
    ``H * W / mask pixels`` (every bit of the map on the object). ``masks (N, H, W)`` must not be empty.
    """
    area = masks.flatten(1).float().mean(1)
    if (area == 0).any():
        raise ValueError("every mask must hold at least one pixel: the ratio divides by the object's area")
    return energy_in_mask(heatmaps, masks) / area.to(heatmaps.dtype)
