"""Reference implementations of the graded methods of ``06_gradcam`` and the judges of its hidden checks.
Instructor-only: never shipped to students.

Conventions (stated once, used by the hidden checks): targets are logits, never softmax; Grad-CAM weights are
the spatial mean of ``d s_c / d A``; maps are upsampled bilinearly with ``align_corners=False``; CAM is
``sum_k w_ck A_k`` at ``relu5_2`` (the tensor GAP consumes), without bias, ReLU or upsampling.

The hidden checks of ``06_gradcam`` (``check_vis_gradcam*``, ``check_class_activation_map*``): the probes of
:mod:`grader_tests.kernel.gradcam` run the student's function on a hidden model and hidden images
(:func:`~grader_tests.kernel.inputs.calibrated_hidden_model`, sizes other than 224, float64 too) and record what
happened; the value judges here compare with the references. The side effects (hooks left, ``.grad`` left, train
mode changed) are separate checks, so each costs its own point; they judge the student's results against each
other (train mode against the student's own eval-mode result), never against a reference, so that a wrong value
costs its value cell only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grader_tests.kernel.gradcam import DTYPES, cases
from grader_tests.kernel.record import Observations
from helpers.hooks import capture_activations
from helpers.inference import evaluating

from . import judge, reference
from .common import (
    assert_computed_in_eval_mode,
    assert_input_untouched,
    assert_no_parameter_grads,
    assert_tensor_close,
    tolerance,
)
from .records import returned


def _targets(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    if target is None:
        return logits.argmax(1)
    return torch.as_tensor(target, device=logits.device).long().expand(logits.shape[0])


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


def cam(
    model: nn.Module, images: torch.Tensor, target: int | torch.Tensor | None = None, *, layer: str = "backbone.relu5_2"
) -> torch.Tensor:
    """CAM (Zhou et al. 2016) of a GAP + linear head: ``(N, 3, H, W) -> (N, h, w)``, no ReLU, no upsampling.

    ``M_c = sum_k w_ck A_k`` with ``A = layer output`` (the tensor GAP consumes: ``relu5_2``) and
    ``w = model.fc.weight``; the bias is not part of the map. Hence ``mean_xy M_c + b_c = s_c`` exactly, and
    Grad-CAM at the same layer is ``ReLU(M_c) / (h w)``. Forward only: no gradient, no ``.grad``.
    """
    with evaluating(model), torch.no_grad(), capture_activations(model, [layer]) as saved:
        logits = model(images)
    weights = model.fc.weight.detach()[_targets(logits, target)]  # (N, K)
    return torch.einsum("nk,nkhw->nhw", weights, saved[layer])


def class_activation_map(model: nn.Module, img: torch.Tensor, class_idx: int) -> torch.Tensor:
    """The graded signature: one normalised ``img (3, H, W)`` -> the ``(h, w)`` CAM of ``class_idx``."""
    return cam(model, img[None], class_idx)[0]


def vis_gradcam(vgg: nn.Module, img: torch.Tensor) -> torch.Tensor:
    """The graded signature: Grad-CAM at ``backbone.bn5_2`` for the top class of ``img (3, H, W)``, bilinearly
    upsampled to ``(H, W)``."""
    return grad_cam(vgg, img[None], "backbone.bn5_2")[0]


# --- judges -----------------------------------------------------------------------------------------------


@reference()
def _vis_gradcam_references() -> tuple[tuple[str, torch.Tensor], ...]:
    """``(what, expected)`` of each case of ``vis_gradcam``: computed once per process, as they depend only on
    the hidden cases (callers only read them)."""
    references = []
    for model, img, _ in (case for dtype in DTYPES for case in cases(dtype)):
        what = f"vis_gradcam(vgg, img) on an image of shape {tuple(img.shape)} ({img.dtype})"
        references.append((what, vis_gradcam(model, img)))
    return tuple(references)


@judge
def check_vis_gradcam(observations: Observations) -> None:
    """Values of ``vis_gradcam(vgg, img)`` on hidden models and images (other sizes, non-square, float64)."""
    for (what, expected), outcome in zip(_vis_gradcam_references(), observations["maps"], strict=True):
        assert_tensor_close(returned(outcome, what), expected, what, **tolerance(expected))


@judge
def check_vis_gradcam_hooks(observations: Observations) -> None:
    """``vis_gradcam`` removes every hook it registers, after a normal call and after a forward that fails."""
    returned(observations["call"], "vis_gradcam")
    if (left := observations["left"]) > 0:
        raise AssertionError(
            f"vis_gradcam leaves {left} hook(s) registered on the model: remove every handle it creates"
        )
    if (left := observations["left_after_failure"]) > 0:
        raise AssertionError(
            f"vis_gradcam leaves {left} hook(s) registered when the forward pass raises: remove them in a "
            "`finally:` block"
        )


@reference()
def _no_grads_image() -> torch.Tensor:
    """The caller's image of ``check_vis_gradcam_no_grads`` as it was: built once per process, as it is the hidden
    case alone (callers only read it)."""
    return cases(torch.float32)[1][1].clone()


@judge
def check_vis_gradcam_no_grads(observations: Observations) -> None:
    """``vis_gradcam`` leaves no ``.grad`` on the parameters and does not touch the caller's image."""
    img = _no_grads_image()
    returned(observations["call"], "vis_gradcam")
    assert_no_parameter_grads(observations["grads"], "vis_gradcam")
    assert_input_untouched(observations["input"], img, "vis_gradcam")


@judge
def check_vis_gradcam_mode(observations: Observations) -> None:
    """``vis_gradcam`` computes in eval mode (its map on a model in train mode is its own map in eval mode) and
    gives each module its mode back. No reference: wrong values are the cell of ``check_vis_gradcam``."""
    assert_computed_in_eval_mode(observations, "vis_gradcam")


@reference()
def _cam_references() -> tuple[tuple[str, torch.Tensor], ...]:
    """``(what, expected)`` of each case of ``class_activation_map``: computed once per process, as they depend only
    on the hidden cases (callers only read them)."""
    references = []
    for model, img, class_idx in (case for dtype in DTYPES for case in cases(dtype)):
        shape = tuple(img.shape)
        what = f"class_activation_map(model, img, {class_idx}) on an image of shape {shape} ({img.dtype})"
        references.append((what, class_activation_map(model, img, class_idx)))
    return tuple(references)


@judge
def check_class_activation_map(observations: Observations) -> None:
    """Values of ``class_activation_map(model, img, class_idx)`` on hidden models and images (float64 too)."""
    for (what, expected), outcome in zip(_cam_references(), observations["maps"], strict=True):
        assert_tensor_close(returned(outcome, what), expected, what, **tolerance(expected))


@judge
def check_class_activation_map_side_effects(observations: Observations) -> None:
    """``class_activation_map`` removes its hooks (also when the forward fails), computes in eval mode (its map
    on a model in train mode is its own map in eval mode) and restores each module's mode. No reference: wrong
    values are the cell of ``check_class_activation_map``."""
    returned(observations["call"], "class_activation_map on a model in train mode")
    if (left := observations["hooks_left"]) > 0:
        raise AssertionError(f"class_activation_map leaves {left} hook(s) registered on the model")
    assert_computed_in_eval_mode(observations, "class_activation_map")
    if (left := observations["left_after_failure"]) > 0:
        raise AssertionError(
            f"class_activation_map leaves {left} hook(s) registered when the forward pass raises: remove them in a "
            "`finally:` block"
        )
