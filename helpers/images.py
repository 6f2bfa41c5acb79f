"""Image conventions: tensors are ``(3, H, W)`` or ``(N, 3, H, W)`` floats, normalised per channel with the
ImageNet mean and std (what the model expects); numpy images are ``(H, W, 3)`` in [0, 1] for matplotlib."""

from __future__ import annotations

import numpy as np
import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _channel_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected an image of shape (3, H, W) or (N, 3, H, W), got {tuple(image.shape)}")
    shape = (3, 1, 1)
    mean = torch.tensor(MEAN, dtype=image.dtype, device=image.device).view(shape)
    std = torch.tensor(STD, dtype=image.dtype, device=image.device).view(shape)
    return mean, std


def normalize(image: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` pixels -> model input: ``(x - mean) / std`` per channel. Shapes ``(3, H, W)`` or ``(N, 3, H, W)``."""
    mean, std = _channel_stats(image)
    return (image - mean) / std


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Model input -> ``[0, 1]`` pixels (clamped): the inverse of :func:`normalize`."""
    mean, std = _channel_stats(image)
    return (image * std + mean).clamp(0, 1)


def image_tensor_to_numpy(image: torch.Tensor) -> np.ndarray:
    """A normalised ``(3, H, W)`` or ``(1, 3, H, W)`` tensor -> an ``(H, W, 3)`` float array in [0, 1].

    Detaches and moves to the CPU, so it accepts tensors that require grad or live on a GPU.
    """
    image = image.detach()
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {image.shape[0]}; index it first")
        image = image[0]
    return denormalize(image).permute(1, 2, 0).cpu().numpy()


def numpy_to_image_tensor(array: np.ndarray) -> torch.Tensor:
    """An ``(H, W, 3)`` array in [0, 1] (or uint8 in [0, 255]) -> a normalised ``(3, H, W)`` float32 tensor."""
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {array.shape}")
    image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    image = image.float() / 255 if array.dtype == np.uint8 else image.float()
    return normalize(image)


def gaussian_blur(images: torch.Tensor, sigma: float, kernel_size: int = 5) -> torch.Tensor:
    """Blur every channel of ``(N, C, H, W)`` or ``(C, H, W)`` images with a normalised ``kernel_size`` x ``kernel_size``
    Gaussian of standard deviation ``sigma`` (in pixels), reflecting at the borders: what torchvision's
    ``transforms.functional.gaussian_blur(images, kernel_size, sigma)`` computes, without importing torchvision
    (160 MB of a notebook's memory). A weighted mean of each pixel's neighbours: values stay within their range.
    """
    if kernel_size % 2 != 1 or kernel_size < 1 or sigma <= 0:
        raise ValueError(f"kernel_size must be odd and positive and sigma positive, got {kernel_size} and {sigma}")
    batch = images if images.dim() == 4 else images[None]
    offsets = torch.linspace(-(kernel_size // 2), kernel_size // 2, kernel_size, dtype=batch.dtype, device=batch.device)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    kernel = (weights[:, None] * weights[None, :]).expand(batch.shape[1], 1, kernel_size, kernel_size)
    half = kernel_size // 2
    padded = torch.nn.functional.pad(batch, (half, half, half, half), mode="reflect")
    blurred = torch.nn.functional.conv2d(padded, kernel, groups=batch.shape[1])
    return blurred if images.dim() == 4 else blurred[0]
