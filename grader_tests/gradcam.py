"""Reference implementations of the graded methods. Instructor-only: never shipped to students.

Conventions (stated once, used by the hidden checks): targets are logits, never softmax; Grad-CAM weights are
the spatial mean of ``d s_c / d A``; maps are upsampled bilinearly with ``align_corners=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from helpers.hooks import capture_activations
from helpers.inference import evaluating


def _targets(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    if target is None:
        return logits.argmax(1)
    target = torch.as_tensor(target, device=logits.device).long().expand(logits.shape[0])
    return target


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    target: int | torch.Tensor | None = None,
    *,
    relu: bool = True,
    upsample: bool = True,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ``(N, 3, H, W) -> (N, H, W)`` (or ``(N, h, w)`` without upsampling).

    ``A = layer output (N, K, h, w)``, ``alpha_k = mean_ij d s_c / d A_kij`` (logit ``s_c``; ``c`` = the top
    class unless ``target`` is given), ``map = ReLU(sum_k alpha_k A_k)``. One backward for the whole batch,
    through ``torch.autograd.grad``: no ``.grad`` is written anywhere; the model's modes are restored.
    """
    with evaluating(model), torch.enable_grad(), capture_activations(model, [layer], detach=False) as saved:
        logits = model(images)
        activation = saved[layer]
        classes = _targets(logits, target)
        score = logits.gather(1, classes[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, activation)
    alpha = gradient.mean(dim=(2, 3), keepdim=True)
    cam = (alpha * activation.detach()).sum(1)
    if relu:
        cam = cam.clamp_min(0)
    if upsample:
        cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam
