"""Run a model for inspection without changing it: scoped eval mode, no parameter gradients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``model`` in eval mode for the block, then restore each module's own flag.

    Eval mode matters for every visualization: in train mode BatchNorm mixes the images of a batch (one
    image's map depends on its batch-mates) and dropout makes maps random.
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        yield model.eval()
    finally:
        for module, training in flags:
            module.training = training


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Logits ``(N, classes)`` of ``images (N, 3, H, W)``, in eval mode, in batches; ``model`` is unchanged.

    Batches of 16 keep the activations of the course model at 224 px near 50 MB (a notebook kernel's budget
    is 1 GB); larger batches are barely faster on a CPU.
    """
    if images.dim() != 4:
        raise ValueError(f"expected a batch (N, 3, H, W), got shape {tuple(images.shape)}; use images[None]")
    with evaluating(model):
        return torch.cat([model(chunk) for chunk in images.split(batch_size)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` whose top logit is the label."""
    return (predict(model, images).argmax(1) == labels).float().mean().item()
