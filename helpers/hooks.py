"""Capture what named layers output during a forward pass, and always remove the hooks afterwards."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def capture_activations(
    model: nn.Module, layer_names: Sequence[str], *, detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``model``'s submodules named ``layer_names`` (e.g. ``"backbone.bn4_1"``).

    Yields a dict that each forward pass inside the ``with`` block fills with ``{name: output}``; a later
    pass overwrites an earlier one. Outputs are **clones**: a later in-place op (``ReLU(inplace=True)``)
    cannot change what was saved. With ``detach=False`` the forward pass continues from the saved clone
    (the hook returns it), so ``torch.autograd.grad(score, saved[name])`` gives ``d score / d activation``.

    The hooks are removed when the block exits, also when it raises::

        with capture_activations(model, ["backbone.conv1"]) as saved:
            model(images)
        saved["backbone.conv1"].shape  # (N, C, H, W)
    """
    if isinstance(layer_names, str):
        raise TypeError("layer_names must be a sequence of names, e.g. ['backbone.conv1'], not one string")
    modules = dict(model.named_modules())
    missing = [name for name in layer_names if name not in modules]
    if missing:
        known = ", ".join(name for name in modules if name)
        raise ValueError(f"model has no layer named {missing}; known layers: {known}")

    saved: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if detach:
            saved[name] = output.detach().clone()
            return None
        saved[name] = output.clone()
        return saved[name]  # the rest of the forward uses the clone, so gradients reach it

    try:
        for name in layer_names:
            handles.append(modules[name].register_forward_hook(lambda m, i, o, name=name: hook(name, m, i, o)))
        yield saved
    finally:
        for handle in handles:
            handle.remove()
