"""The CAM / Grad-CAM references of ``06_gradcam`` against captum, pytorch-grad-cam and the CAM identities; their
hidden checks accept correct variants of the graded functions and reject wrong ones with an AssertionError."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader_tests.judges import gradcam as G
from grader_tests.kernel import gradcam as probes
from grader_tests.kernel.facts import hook_count
from grader_tests.kernel.inputs import calibrated_hidden_model, hidden_images
from helpers.data import load_demo
from helpers.hooks import capture_activations
from helpers.inference import evaluating, predict


@pytest.fixture(scope="module")
def demo():
    return load_demo()


@pytest.fixture(scope="module")
def pretrained64(pretrained):
    return copy.deepcopy(pretrained).double()


def _upsample(maps: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[:, 0]


# --- the references on the embedded model ---------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["backbone.bn5_2", "backbone.relu5_2"])
def test_grad_cam_matches_captum_layer_grad_cam(pretrained, demo, layer):
    from captum.attr import LayerGradCam

    ours = G.grad_cam(pretrained, demo.images, layer, demo.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = LayerGradCam(pretrained, pretrained.get_submodule(layer)).attribute(
            demo.images.clone(), target=demo.labels, relu_attributions=True
        )
    assert raw.shape == (6, 1, 14, 14)
    theirs = _upsample(raw, demo.images.shape[-2:])
    assert ours.shape == (6, 224, 224) and ours.amax((1, 2)).min() > 0
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_vis_gradcam_reference_is_grad_cam_at_bn5_2_for_the_top_class(pretrained, demo):
    top = predict(pretrained, demo.images).argmax(1)
    batch = G.grad_cam(pretrained, demo.images, "backbone.bn5_2", top)
    for index in (0, 5):
        torch.testing.assert_close(G.vis_gradcam(pretrained, demo.images[index]), batch[index], rtol=1e-5, atol=1e-6)


def test_cam_identity_mean_plus_bias_is_the_logit(pretrained, pretrained64, demo):
    for model, atol in ((pretrained, 1e-5), (pretrained64, 1e-12)):
        images = demo.images.to(model.fc.weight.dtype)
        logits = predict(model, images)
        for target in (demo.labels, (demo.labels + 1) % 6):
            maps = G.cam(model, images, target)
            assert maps.shape == (6, 14, 14)
            expected = logits.gather(1, target[:, None])[:, 0]
            torch.testing.assert_close(maps.mean((1, 2)) + model.fc.bias.detach()[target], expected, rtol=0, atol=atol)
            assert not torch.allclose(maps.mean((1, 2)), expected, atol=1e-3)  # the bias matters


def test_grad_cam_at_the_gap_input_is_relu_cam_over_hw_float64(pretrained64, demo):
    images = demo.images.double()
    for target in (demo.labels, torch.zeros(6, dtype=torch.long)):
        cam = G.cam(pretrained64, images, target)
        z = cam.shape[-2] * cam.shape[-1]
        signed = G.grad_cam(pretrained64, images, "backbone.relu5_2", target, relu=False, upsample=False)
        torch.testing.assert_close(signed, cam / z, rtol=0, atol=1e-13)
        relu = G.grad_cam(pretrained64, images, "backbone.relu5_2", target, upsample=False)
        torch.testing.assert_close(relu, cam.clamp_min(0) / z, rtol=0, atol=1e-13)
        assert (cam < 0).any() and (cam > 0).any()  # the ReLU does something on these maps


def test_grad_cam_at_bn5_2_is_a_masked_cam_float64(pretrained64, demo):
    """relu5_2 feeds GAP, so d s_c / d B = (w_c / Z) [B > 0] at bn5_2: a forward-only formula the notebook uses."""
    images = demo.images.double()
    with torch.no_grad(), capture_activations(pretrained64, ["backbone.bn5_2"]) as saved:
        pretrained64(images)
    b = saved["backbone.bn5_2"]
    z = b.shape[-2] * b.shape[-1]
    w = pretrained64.fc.weight.detach()[demo.labels]
    alpha = w / z * (b > 0).double().mean((2, 3))
    expected = torch.einsum("nk,nkhw->nhw", alpha, b).clamp_min(0)
    ours = G.grad_cam(pretrained64, images, "backbone.bn5_2", demo.labels, upsample=False)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-13)
    at_relu = G.grad_cam(pretrained64, images, "backbone.relu5_2", demo.labels, upsample=False)
    assert not torch.allclose(ours, at_relu, atol=1e-3 * float(at_relu.abs().max()))


def test_grad_cam_matches_pytorch_grad_cam_after_its_min_max_pipeline(pretrained, demo):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(pretrained)  # the library leaves .grad on the parameters
    with GradCAM(model=model, target_layers=[model.backbone.bn5_2]) as method:
        theirs = method(input_tensor=demo.images.clone(), targets=[ClassifierOutputTarget(int(c)) for c in demo.labels])
    raw = G.grad_cam(pretrained, demo.images, "backbone.bn5_2", demo.labels, upsample=False)
    # its pipeline: ReLU, per-image min-max, cv2 bilinear resize, min-max again
    pipeline = scale_cam_image(scale_cam_image(raw.numpy(), (224, 224)))
    np.testing.assert_allclose(theirs, pipeline, rtol=0, atol=1e-5)
    # the same as min-max of our bilinearly upsampled map: resizing commutes with an affine rescaling
    ours = G.grad_cam(pretrained, demo.images, "backbone.bn5_2", demo.labels)
    lo, hi = ours.amin((1, 2), keepdim=True), ours.amax((1, 2), keepdim=True)
    np.testing.assert_allclose(theirs, ((ours - lo) / (hi - lo)).numpy(), rtol=0, atol=1e-4)


def test_references_leave_the_model_as_they_found_it(pretrained, demo):
    model = copy.deepcopy(pretrained).train()
    G.grad_cam(model, demo.images[:2], "backbone.bn5_2")
    G.cam(model, demo.images[:2])
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert hook_count(model) == 0


# --- alternatives a check must accept -------------------------------------------------------------------------


def _restore(model, modes):
    for module, mode in zip(model.modules(), modes):
        module.training = mode


def vis_gradcam_like_the_seed(vgg, img):
    """Forward hook + tensor hook + backward, with the seed's Upsample(scale_factor), made safe."""
    save_feat, save_grad = [], []

    def hook_feat(module, input, output):
        save_feat.append(output)
        output.register_hook(save_grad.append)

    modes = [m.training for m in vgg.modules()]
    handle = vgg.backbone.bn5_2.register_forward_hook(hook_feat)
    vgg.eval()
    try:
        s = vgg(img.unsqueeze(0))
        y = torch.argmax(s)
        s[0, y].backward()
    finally:
        handle.remove()
        _restore(vgg, modes)
        vgg.zero_grad(set_to_none=True)
    alpha = save_grad[0].mean(dim=(2, 3), keepdim=True)
    grad_cam = torch.relu((alpha * save_feat[0]).sum(1, keepdim=True))
    upscale = nn.Upsample(scale_factor=img.shape[-1] / grad_cam.shape[-1], mode="bilinear")
    return upscale(grad_cam).squeeze().detach()


def vis_gradcam_with_autograd(vgg, img):
    saved = {}

    def hook(module, inputs, output):
        saved["A"] = output

    handle = vgg.backbone.bn5_2.register_forward_hook(hook)
    try:
        with evaluating(vgg):
            scores = vgg(img[None])
            (grad,) = torch.autograd.grad(scores[0, scores[0].argmax()], saved["A"])
    finally:
        handle.remove()
    cam = F.relu((grad.mean((2, 3), keepdim=True) * saved["A"]).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def vis_gradcam_with_a_pre_hook_on_relu5_2(vgg, img):
    """The input of relu5_2 is the output of bn5_2: the same tensor, reached another way."""
    saved = {}
    handle = vgg.backbone.relu5_2.register_forward_pre_hook(lambda module, inputs: saved.setdefault("A", inputs[0]))
    try:
        with evaluating(vgg):
            scores = vgg(img.unsqueeze(0))[0]
            (grad,) = torch.autograd.grad(scores.max(), saved["A"])
    finally:
        handle.remove()
    cam = (grad.mean((2, 3))[:, :, None, None] * saved["A"]).sum(1).clamp(min=0).detach()
    return F.interpolate(cam[None], size=tuple(img.shape[-2:]), mode="bilinear")[0, 0]


def vis_gradcam_with_capture_activations(vgg, img):
    with evaluating(vgg), capture_activations(vgg, ["backbone.bn5_2"], detach=False) as saved:
        scores = vgg(img[None])
        (grad,) = torch.autograd.grad(scores[0].max(), saved["backbone.bn5_2"])
    a = saved["backbone.bn5_2"].detach()
    cam = torch.relu(torch.einsum("k,khw->hw", grad[0].mean((1, 2)), a[0]))
    return F.interpolate(cam[None, None], size=img.shape[1:], mode="bilinear", align_corners=False)[0, 0]


def cam_with_capture_activations(model, img, class_idx):
    with evaluating(model), torch.no_grad(), capture_activations(model, ["backbone.relu5_2"]) as saved:
        model(img[None])
    return torch.einsum("k,khw->hw", model.fc.weight[class_idx].detach(), saved["backbone.relu5_2"][0])


def cam_from_the_backbone(model, img, class_idx):
    """No pool5: the backbone's output is relu5_2's output."""
    with evaluating(model), torch.no_grad():
        a = model.backbone(img.unsqueeze(0))[0]
        return (model.fc.weight[class_idx][:, None, None] * a).sum(0)


def cam_with_a_hook(model, img, class_idx):
    saved = []
    handle = model.backbone.relu5_2.register_forward_hook(lambda m, i, o: saved.append(o.detach().clone()))
    try:
        with evaluating(model), torch.no_grad():
            model(img[None])
    finally:
        handle.remove()
    return torch.tensordot(model.fc.weight.detach()[class_idx], saved[0][0], dims=1)


# --- wrong answers a check must reject -------------------------------------------------------------------------


def stub(*args):
    raise NotImplementedError()


def _gradcam(
    layer="backbone.bn5_2", score=lambda s: s[0, s[0].argmax()], relu=True, mode="bilinear", align_corners=False
):
    def vis_gradcam(vgg, img):
        with evaluating(vgg), capture_activations(vgg, [layer], detach=False) as saved:
            scores = vgg(img[None])
            (grad,) = torch.autograd.grad(score(scores), saved[layer])
        cam = (grad.mean((2, 3), keepdim=True) * saved[layer].detach()).sum(1, keepdim=True)
        cam = cam.clamp_min(0) if relu else cam
        options = {"align_corners": align_corners} if mode == "bilinear" else {}
        return F.interpolate(cam, size=img.shape[-2:], mode=mode, **options)[0, 0]

    return vis_gradcam


WRONG_GRADCAMS = {
    "softmax target": _gradcam(score=lambda s: s.softmax(1)[0, s[0].argmax()]),
    "no ReLU": _gradcam(relu=False),
    "hook on conv5_2": _gradcam(layer="backbone.conv5_2"),
    "hook on relu5_2's output": _gradcam(layer="backbone.relu5_2"),
    "nearest upsampling": _gradcam(mode="nearest"),
    "align_corners=True": _gradcam(align_corners=True),
    "lowest class": _gradcam(score=lambda s: s[0, s[0].argmin()]),
    "stub": stub,
}


def vis_gradcam_leaving_hooks(vgg, img):
    saved = {}
    vgg.backbone.bn5_2.register_forward_hook(lambda m, i, o: saved.__setitem__("A", o))
    with evaluating(vgg):
        scores = vgg(img[None])
        (grad,) = torch.autograd.grad(scores[0].max(), saved["A"])
    cam = F.relu((grad.mean((2, 3), keepdim=True) * saved["A"]).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def vis_gradcam_removing_hooks_without_finally(vgg, img):
    saved = {}
    handle = vgg.backbone.bn5_2.register_forward_hook(lambda m, i, o: saved.__setitem__("A", o))
    with evaluating(vgg):
        scores = vgg(img[None])
        (grad,) = torch.autograd.grad(scores[0].max(), saved["A"])
    handle.remove()
    cam = F.relu((grad.mean((2, 3), keepdim=True) * saved["A"]).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def vis_gradcam_leaving_grads(vgg, img):
    saved, grads = {}, {}

    def hook(module, inputs, output):
        saved["A"] = output
        output.register_hook(lambda grad: grads.__setitem__("dA", grad))

    handle = vgg.backbone.bn5_2.register_forward_hook(hook)
    try:
        with evaluating(vgg):
            scores = vgg(img[None])
            scores[0].max().backward()
    finally:
        handle.remove()
    cam = F.relu((grads["dA"].mean((2, 3), keepdim=True) * saved["A"]).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def vis_gradcam_switching_to_eval(vgg, img):
    vgg.eval()
    return vis_gradcam_with_autograd(vgg, img)


def vis_gradcam_in_whatever_mode(vgg, img):
    with capture_activations(vgg, ["backbone.bn5_2"], detach=False) as saved:
        scores = vgg(img[None])
        (grad,) = torch.autograd.grad(scores[0].max(), saved["backbone.bn5_2"])
    cam = F.relu((grad.mean((2, 3), keepdim=True) * saved["backbone.bn5_2"]).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def _cam(layer="backbone.relu5_2", transform=lambda m, model, c: m):
    def class_activation_map(model, img, class_idx):
        with evaluating(model), torch.no_grad(), capture_activations(model, [layer]) as saved:
            model(img[None])
        m = torch.einsum("k,khw->hw", model.fc.weight[class_idx].detach(), saved[layer][0])
        return transform(m, model, class_idx)

    return class_activation_map


WRONG_CAMS = {
    "bn5_2 features": _cam(layer="backbone.bn5_2"),
    "bias added": _cam(transform=lambda m, model, c: m + model.fc.bias[c].detach()),
    "ReLU applied": _cam(transform=lambda m, model, c: m.clamp_min(0)),
    "divided by h*w": _cam(transform=lambda m, model, c: m / m.numel()),
    "upsampled": _cam(
        transform=lambda m, model, c: F.interpolate(m[None, None], scale_factor=16, mode="bilinear")[0, 0]
    ),
    "stub": stub,
}


def cam_leaving_hooks(model, img, class_idx):
    saved = []
    model.backbone.relu5_2.register_forward_hook(lambda m, i, o: saved.append(o.detach().clone()))
    with evaluating(model), torch.no_grad():
        model(img[None])
    return torch.tensordot(model.fc.weight.detach()[class_idx], saved[-1][0], dims=1)


def cam_switching_to_eval(model, img, class_idx):
    model.eval()
    return cam_from_the_backbone(model, img, class_idx)


# --- the checks ---------------------------------------------------------------------------------------------------

CORRECT_GRADCAMS = [
    G.vis_gradcam,
    vis_gradcam_like_the_seed,
    vis_gradcam_with_autograd,
    vis_gradcam_with_a_pre_hook_on_relu5_2,
    vis_gradcam_with_capture_activations,
]


@pytest.mark.parametrize("student", CORRECT_GRADCAMS)
def test_vis_gradcam_checks_accept_correct_variants(student):
    probes.check_vis_gradcam(student)
    probes.check_vis_gradcam_hooks(student)
    probes.check_vis_gradcam_no_grads(student)
    probes.check_vis_gradcam_mode(student)


@pytest.mark.parametrize("name", list(WRONG_GRADCAMS))
def test_vis_gradcam_check_rejects_wrong_maps(name):
    with pytest.raises(AssertionError, match="not implemented" if name == "stub" else "wrong values"):
        probes.check_vis_gradcam(WRONG_GRADCAMS[name])


@pytest.mark.parametrize(
    ("student", "check", "message"),
    [
        (vis_gradcam_leaving_hooks, probes.check_vis_gradcam_hooks, "leaves 1 hook"),
        (vis_gradcam_removing_hooks_without_finally, probes.check_vis_gradcam_hooks, "finally"),
        (vis_gradcam_leaving_grads, probes.check_vis_gradcam_no_grads, r"\.grad of \d+ model parameter"),
        (vis_gradcam_switching_to_eval, probes.check_vis_gradcam_mode, "changes the model's train/eval mode"),
        (vis_gradcam_in_whatever_mode, probes.check_vis_gradcam_mode, "compute in eval mode"),
    ],
)
def test_vis_gradcam_side_effect_checks_are_separate(student, check, message):
    probes.check_vis_gradcam(student)  # right values: full credit for the map ...
    with pytest.raises(AssertionError, match=message):  # ... and this one side effect costs its own point
        check(student)


@pytest.mark.parametrize(
    "student", [G.class_activation_map, cam_with_capture_activations, cam_from_the_backbone, cam_with_a_hook]
)
def test_cam_checks_accept_correct_variants(student):
    probes.check_class_activation_map(student)
    probes.check_class_activation_map_side_effects(student)


@pytest.mark.parametrize("name", list(WRONG_CAMS))
def test_cam_check_rejects_wrong_maps(name):
    with pytest.raises(AssertionError):
        probes.check_class_activation_map(WRONG_CAMS[name])


@pytest.mark.parametrize(
    ("student", "message"), [(cam_leaving_hooks, "leaves 1 hook"), (cam_switching_to_eval, "train/eval mode")]
)
def test_cam_side_effect_check_rejects_side_effects(student, message):
    probes.check_class_activation_map(student)
    with pytest.raises(AssertionError, match=message):
        probes.check_class_activation_map_side_effects(student)


# --- each bug costs its own cell: the side-effect checks judge the student's results against each other -------

GRADCAM_SIDE_EFFECT_CHECKS = [probes.check_vis_gradcam_hooks, probes.check_vis_gradcam_no_grads, probes.check_vis_gradcam_mode]


@pytest.mark.parametrize("name", [name for name in WRONG_GRADCAMS if name != "stub"])
def test_a_value_bug_of_vis_gradcam_costs_the_value_cell_only(name):
    with pytest.raises(AssertionError, match="wrong values"):
        probes.check_vis_gradcam(WRONG_GRADCAMS[name])
    for check in GRADCAM_SIDE_EFFECT_CHECKS:
        check(WRONG_GRADCAMS[name])  # no second point lost


def vis_gradcam_with_channels_left(vgg, img):
    """A shape error: the (K, H, W) weighted features, not their sum."""
    with evaluating(vgg), capture_activations(vgg, ["backbone.bn5_2"], detach=False) as saved:
        scores = vgg(img[None])
        (grad,) = torch.autograd.grad(scores[0].max(), saved["backbone.bn5_2"])
    weighted = (grad.mean((2, 3), keepdim=True) * saved["backbone.bn5_2"].detach()).clamp_min(0)
    return F.interpolate(weighted, size=img.shape[-2:], mode="bilinear", align_corners=False)[0]


def test_a_shape_error_of_vis_gradcam_is_not_called_an_eval_mode_problem():
    with pytest.raises(AssertionError, match="has shape"):
        probes.check_vis_gradcam(vis_gradcam_with_channels_left)
    for check in GRADCAM_SIDE_EFFECT_CHECKS:
        check(vis_gradcam_with_channels_left)


def vis_gradcam_without_relu_in_whatever_mode(vgg, img):
    with capture_activations(vgg, ["backbone.bn5_2"], detach=False) as saved:
        scores = vgg(img[None])
        (grad,) = torch.autograd.grad(scores[0].max(), saved["backbone.bn5_2"])
    cam = (grad.mean((2, 3), keepdim=True) * saved["backbone.bn5_2"]).sum(1, keepdim=True).detach()
    return F.interpolate(cam, size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def test_a_value_bug_and_a_mode_bug_cost_one_cell_each():
    with pytest.raises(AssertionError, match="wrong values"):
        probes.check_vis_gradcam(vis_gradcam_without_relu_in_whatever_mode)
    with pytest.raises(AssertionError, match="compute in eval mode"):
        probes.check_vis_gradcam_mode(vis_gradcam_without_relu_in_whatever_mode)
    probes.check_vis_gradcam_hooks(vis_gradcam_without_relu_in_whatever_mode)
    probes.check_vis_gradcam_no_grads(vis_gradcam_without_relu_in_whatever_mode)


@pytest.mark.parametrize("check", GRADCAM_SIDE_EFFECT_CHECKS + [probes.check_class_activation_map_side_effects])
def test_side_effect_checks_say_when_the_function_raised(check):
    with pytest.raises(AssertionError, match="not implemented yet"):
        check(stub)


@pytest.mark.parametrize("name", [name for name in WRONG_CAMS if name != "stub"])
def test_a_value_bug_of_class_activation_map_costs_the_value_cell_only(name):
    with pytest.raises(AssertionError):
        probes.check_class_activation_map(WRONG_CAMS[name])
    probes.check_class_activation_map_side_effects(WRONG_CAMS[name])  # no second point lost


def cam_in_whatever_mode(model, img, class_idx):
    with torch.no_grad(), capture_activations(model, ["backbone.relu5_2"]) as saved:
        model(img[None])
    return torch.einsum("k,khw->hw", model.fc.weight[class_idx].detach(), saved["backbone.relu5_2"][0])


def test_cam_side_effect_check_rejects_a_map_computed_in_train_mode():
    probes.check_class_activation_map(cam_in_whatever_mode)  # right values on a model in eval mode ...
    with pytest.raises(AssertionError, match="compute in eval mode"):  # ... but not in train mode
        probes.check_class_activation_map_side_effects(cam_in_whatever_mode)


def test_hidden_cases_make_the_wrong_variants_distinguishable():
    """On the hidden inputs the Grad-CAM maps change sign (so the ReLU matters) and are not constant."""
    model = calibrated_hidden_model()
    for img in hidden_images(2, 64):
        signed = G.grad_cam(model, img[None], "backbone.bn5_2", relu=False, upsample=False)
        assert (signed < 0).any() and (signed > 0).any()
