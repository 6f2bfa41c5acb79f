"""Figures of the course: filter grids, activation grids, heatmap overlays. Each function returns its Figure."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from .images import image_tensor_to_numpy


def normalize_map(values: torch.Tensor, dims: Sequence[int] | None = None) -> torch.Tensor:
    """Min-max scale to [0, 1] over ``dims`` (all dims by default); a constant slice (all zeros included)
    maps to zeros instead of NaN."""
    values = values.detach().float()
    dims = tuple(range(values.dim())) if dims is None else tuple(dims)
    low = values.amin(dim=dims, keepdim=True)
    span = values.amax(dim=dims, keepdim=True) - low
    return torch.where(span > 0, (values - low) / span.clamp_min(torch.finfo(values.dtype).tiny), torch.zeros_like(values))


def _grid(n: int, ncols: int, cell: float = 1.4, title: str | None = None) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + (0.4 if title else 0)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig, axes.flat


def plot_filters(weights: torch.Tensor, title: str | None = None, *, per_filter: bool = True, ncols: int = 8) -> Figure:
    """Show first-layer filters ``(K, 3, kh, kw)`` as RGB images, upsampled with nearest neighbours.

    ``per_filter=True`` stretches each filter to [0, 1] on its own (shows every filter's pattern, amplifies
    weak ones); ``False`` uses one min-max for all filters (keeps their relative strength).
    """
    if weights.dim() != 4 or weights.shape[1] != 3:
        raise ValueError(f"expected RGB filters (K, 3, kh, kw), got {tuple(weights.shape)}; only conv1 reads RGB")
    scaled = normalize_map(weights, dims=(1, 2, 3) if per_filter else None)
    fig, axes = _grid(len(scaled), ncols, title=title)
    for ax, kernel in zip(axes, scaled):
        ax.imshow(kernel.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
    return fig


def plot_activations(activation: torch.Tensor, title: str | None = None, *, max_channels: int = 32, ncols: int = 8) -> Figure:
    """Show the channels of one image's activation ``(C, H, W)`` or ``(1, C, H, W)``, each min-max scaled."""
    if activation.dim() == 4:
        activation = activation[0]
    if activation.dim() != 3:
        raise ValueError(f"expected an activation (C, H, W) or (1, C, H, W), got {tuple(activation.shape)}")
    channels = normalize_map(activation[:max_channels], dims=(1, 2))
    fig, axes = _grid(len(channels), ncols, title=title)
    for index, (ax, channel) in enumerate(zip(axes, channels)):
        ax.imshow(channel.cpu().numpy(), cmap="viridis")
        ax.set_title(f"ch {index}", fontsize=7)
    return fig


def overlay_heatmap(
    image: torch.Tensor, heatmap: torch.Tensor, *, alpha: float = 0.5, cmap: str = "jet", ax: plt.Axes | None = None, title: str | None = None
) -> plt.Axes:
    """Draw a normalised ``image (3, H, W)`` with ``heatmap (h, w)`` on top: bilinearly upsampled to
    ``(H, W)`` if smaller, min-max scaled, in ``cmap`` at opacity ``alpha``. Returns the Axes."""
    if heatmap.dim() != 2:
        raise ValueError(f"expected one heatmap (h, w), got {tuple(heatmap.shape)}")
    heatmap = heatmap.detach().float()
    if heatmap.shape != image.shape[-2:]:
        heatmap = F.interpolate(heatmap[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(image_tensor_to_numpy(image))
    ax.imshow(normalize_map(heatmap).cpu().numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, *, ncols: int = 6) -> Figure:
    """Show normalised images ``(N, 3, H, W)`` side by side."""
    fig, axes = _grid(len(images), ncols, cell=2.2)
    for index, (ax, image) in enumerate(zip(axes, images)):
        ax.imshow(image_tensor_to_numpy(image))
        if titles is not None:
            ax.set_title(titles[index], fontsize=9)
    return fig
