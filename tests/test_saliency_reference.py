"""The saliency reference of ``05_saliency`` against captum and the softmax identity; its hidden checks accept
correct variants of the graded functions and reject wrong ones with an AssertionError."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from grader_tests.judges import saliency as S
from grader_tests.kernel import facts, inputs
from grader_tests.kernel import saliency as probes
from grader_tests.kernel.inputs import hidden_images
from helpers.data import load_demo
from helpers.inference import evaluating


@pytest.fixture(scope="module")
def demo():
    return load_demo()


# --- the reference on the embedded model ---------------------------------------------------------------------


def test_reference_matches_captum_saliency(pretrained, demo):
    from captum.attr import Saliency

    ours = S.saliency(pretrained, demo.images, demo.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum warns that the input did not require grad
        theirs = Saliency(pretrained).attribute(demo.images.clone(), target=demo.labels, abs=True).amax(1)
    assert ours.shape == (6, 224, 224)
    assert ours.min() >= 0 and ours.amax((1, 2)).min() > 0
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_single_image_signature_equals_batched_reference(pretrained, demo):
    for index in (0, 4):
        single = S.saliency_map(pretrained, demo.images[index], int(demo.labels[index]))
        batched = S.saliency(pretrained, demo.images, demo.labels)[index]
        torch.testing.assert_close(single, batched, rtol=1e-5, atol=1e-6)


def test_gradient_score_is_the_input_gradient_of_the_logit(pretrained, demo):
    x = demo.images[2:3].clone().requires_grad_()
    ours = S.gradient_score(pretrained(x)[0], x, 1)
    assert ours.shape == (3, 224, 224) and x.grad is None  # autograd.grad writes no .grad
    y = demo.images[2:3].clone().requires_grad_()
    pretrained(y)[0, 1].backward()
    pretrained.zero_grad(set_to_none=True)
    torch.testing.assert_close(ours, y.grad[0], rtol=0, atol=0)


def test_saliency_is_the_max_not_the_sum_over_channels(pretrained, demo):
    x = demo.images[:1].clone().requires_grad_()
    gradient = S.gradient_score(pretrained(x)[0], x, int(demo.labels[0]))
    map_ = S.saliency_map(pretrained, demo.images[0], int(demo.labels[0]))
    torch.testing.assert_close(map_, gradient.abs().amax(0))
    assert not torch.allclose(map_, gradient.abs().sum(0))


def _logit_jacobian(model, image):
    """``J (classes, 3*H*W)`` of the logits and the logits, in the model's dtype."""
    x = image[None].clone().requires_grad_()
    logits = model(x)[0]
    rows = [torch.autograd.grad(logits[c], x, retain_graph=True)[0].flatten() for c in range(len(logits))]
    return torch.stack(rows), logits.detach()


def test_softmax_gradient_identity_float64(pretrained, demo):
    """d p_c / d x = p_c (d s_c / d x - sum_j p_j d s_j / d x), to 1e-10 in float64."""
    model = copy.deepcopy(pretrained).double()
    image = demo.images[3].double()
    jacobian, logits = _logit_jacobian(model, image)
    p = logits.softmax(0)
    for c in (int(demo.labels[3]), 0):
        x = image[None].clone().requires_grad_()
        (direct,) = torch.autograd.grad(model(x)[0].softmax(0)[c], x)
        identity = p[c] * (jacobian[c] - p @ jacobian)
        scale = float(direct.abs().max())
        assert scale > 0
        torch.testing.assert_close(direct.flatten(), identity, rtol=0, atol=1e-10 * max(scale, 1e-12))
        assert not torch.allclose(direct.flatten(), jacobian[c], atol=1e-3 * float(jacobian[c].abs().max()))


def test_softmax_gradient_saturates_as_the_class_becomes_certain(pretrained, demo):
    """Scaling the head by t scales the logit gradient by t, but drives the top class's p_c -> 1 and the
    softmax gradient d p_c / d x -> 0 (relative to the logit gradient)."""
    image = demo.images[1]
    ratios, probabilities = [], []
    for t in (0.25, 32.0):
        model = copy.deepcopy(pretrained)
        with torch.no_grad():
            model.fc.weight.mul_(t)
            model.fc.bias.mul_(t)
        x = image[None].clone().requires_grad_()
        logits = model(x)[0]
        top = int(logits.argmax())
        (grad_logit,) = torch.autograd.grad(logits[top], x, retain_graph=True)
        (grad_prob,) = torch.autograd.grad(logits.softmax(0)[top], x)
        probabilities.append(float(logits.detach().softmax(0)[top]))
        ratios.append(float(grad_prob.norm() / grad_logit.norm()))
    assert probabilities[0] < 0.9 < 0.999 < probabilities[1]
    assert ratios[0] > 0.05
    assert ratios[1] < 1e-3 * ratios[0]


# --- alternatives a check must accept -------------------------------------------------------------------------


def gradient_with_autograd(scores, image, class_idx):
    (gradient,) = torch.autograd.grad(scores[class_idx], image)
    return gradient[0]


def gradient_like_the_seed(scores, image, class_idx):
    """The seed's code without its 224-only assert: backward() and image.grad."""
    scores[class_idx].backward()
    return image.grad[0]


def gradient_with_backward_done_safely(scores, image, class_idx):
    image.grad = None
    scores[class_idx].backward()
    gradient = image.grad[0].clone()
    image.grad = None
    return gradient


def gradient_with_one_hot(scores, image, class_idx):
    one_hot = F.one_hot(torch.tensor(class_idx), len(scores)).to(scores)
    (gradient,) = torch.autograd.grad(scores, image, grad_outputs=one_hot)
    return gradient.squeeze(0)


def saliency_with_autograd(model, image, class_idx):
    with evaluating(model):
        x = image.unsqueeze(0).detach().clone().requires_grad_()
        gradient = gradient_with_autograd(model(x)[0], x, class_idx)
    return gradient.abs().max(dim=0).values


def saliency_with_backward_and_cleanup(model, image, class_idx):
    modes = [m.training for m in model.modules()]
    model.eval()
    try:
        x = image[None].clone().requires_grad_()
        model(x)[0, class_idx].backward()
        return x.grad[0].abs().amax(0)
    finally:
        for module, mode in zip(model.modules(), modes):
            module.training = mode
        model.zero_grad(set_to_none=True)


def saliency_with_captum(model, image, class_idx):
    from captum.attr import Saliency

    with evaluating(model):
        return Saliency(model).attribute(image[None].clone(), target=class_idx, abs=True).amax(1)[0]


# --- wrong answers a check must reject -------------------------------------------------------------------------


def stub(*args):
    raise NotImplementedError()


def gradient_of_softmax(scores, image, class_idx):
    (gradient,) = torch.autograd.grad(scores.softmax(0)[class_idx], image)
    return gradient[0]


def gradient_of_all_scores(scores, image, class_idx):
    (gradient,) = torch.autograd.grad(scores.sum(), image)
    return gradient[0]


def gradient_with_batch_dim(scores, image, class_idx):
    (gradient,) = torch.autograd.grad(scores[class_idx], image)
    return gradient


def gradient_like_the_seed_with_its_assert(scores, image, class_idx):
    scores[class_idx].backward()
    grad = image.grad
    assert tuple(grad.shape) == (1, 3, 224, 224)
    return grad[0]


def _saliency_from(reduce, target=lambda logits, c: logits[c]):
    def saliency(model, image, class_idx):
        with evaluating(model):
            x = image[None].clone().requires_grad_()
            (gradient,) = torch.autograd.grad(target(model(x)[0], class_idx), x)
        return reduce(gradient[0])

    return saliency


saliency_sum_over_channels = _saliency_from(lambda g: g.abs().sum(0))
saliency_mean_over_channels = _saliency_from(lambda g: g.abs().mean(0))
saliency_without_abs = _saliency_from(lambda g: g.amax(0))
saliency_l2_over_channels = _saliency_from(lambda g: g.norm(dim=0))
saliency_of_softmax = _saliency_from(lambda g: g.abs().amax(0), target=lambda logits, c: logits.softmax(0)[c])


def saliency_leaving_grads(model, image, class_idx):
    with evaluating(model):
        x = image[None].clone().requires_grad_()
        model(x)[0, class_idx].backward()
    return x.grad[0].abs().amax(0)


def saliency_switching_to_eval(model, image, class_idx):
    model.eval()
    return saliency_with_autograd(model, image, class_idx)


def saliency_in_whatever_mode(model, image, class_idx):
    x = image[None].clone().requires_grad_()
    return gradient_with_autograd(model(x)[0], x, class_idx).abs().amax(0)


def saliency_on_the_callers_image(model, image, class_idx):
    with evaluating(model):
        image.requires_grad_()
        (gradient,) = torch.autograd.grad(model(image[None])[0, class_idx], image)
    return gradient.abs().amax(0)


# --- the checks ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "student",
    [gradient_with_autograd, gradient_like_the_seed, gradient_with_backward_done_safely, gradient_with_one_hot],
)
def test_gradient_check_accepts_correct_variants(student):
    probes.check_compute_gradient_score(student)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (stub, "not implemented"),
        (gradient_of_softmax, "wrong values"),
        (gradient_of_all_scores, "wrong values"),
        (gradient_with_batch_dim, r"has shape \(1, 3, 64, 64\)"),
        (gradient_like_the_seed_with_its_assert, "raised AssertionError"),
        (lambda scores, image, class_idx: torch.zeros_like(image[0]), "wrong values"),
    ],
)
def test_gradient_check_rejects_wrong_answers(student, message):
    with pytest.raises(AssertionError, match=message):
        probes.check_compute_gradient_score(student)


@pytest.mark.parametrize("student", [gradient_with_autograd, gradient_with_backward_done_safely, gradient_with_one_hot])
def test_accumulation_check_accepts_gradients_that_do_not_accumulate(student):
    probes.check_compute_gradient_score_no_accumulation(student)


def test_accumulation_check_rejects_the_seeds_backward():
    with pytest.raises(AssertionError, match="sum of both gradients"):
        probes.check_compute_gradient_score_no_accumulation(gradient_like_the_seed)


def test_accumulation_check_rejects_a_view_of_grad():
    def zeroes_grad_but_returns_a_view(scores, image, class_idx):
        if image.grad is not None:
            image.grad.zero_()
        scores[class_idx].backward()
        return image.grad[0]

    with pytest.raises(AssertionError, match="shares memory"):
        probes.check_compute_gradient_score_no_accumulation(zeroes_grad_but_returns_a_view)


@pytest.mark.parametrize(
    "student", [S.saliency_map, saliency_with_autograd, saliency_with_backward_and_cleanup, saliency_with_captum]
)
def test_saliency_checks_accept_correct_variants(student):
    probes.check_saliency_map(student)
    probes.check_saliency_map_side_effects(student)


@pytest.mark.parametrize(
    "student",
    [
        stub, saliency_sum_over_channels, saliency_mean_over_channels, saliency_without_abs, saliency_l2_over_channels,
        saliency_of_softmax,
    ],
)
def test_saliency_check_rejects_wrong_maps(student):
    with pytest.raises(AssertionError):
        probes.check_saliency_map(student)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (saliency_leaving_grads, r"\.grad of \d+ model parameter"),
        (saliency_switching_to_eval, "changes the model's train/eval mode"),
        (saliency_in_whatever_mode, "compute in eval mode"),
        (saliency_on_the_callers_image, "caller's image"),
    ],
)
def test_side_effect_check_rejects_side_effects_that_the_value_check_accepts(student, message):
    probes.check_saliency_map(student)  # right values on an eval-mode model ...
    with pytest.raises(AssertionError, match=message):  # ... and a side effect caught separately
        probes.check_saliency_map_side_effects(student)


# --- each bug costs its own cell: the side-effect checks judge the student's results against each other -------


VALUE_BUGS_OF_THE_GRADIENT = {
    "softmax instead of the logit": gradient_of_softmax,
    "all scores": gradient_of_all_scores,
    "wrong sign": lambda scores, image, class_idx: -gradient_with_autograd(scores, image, class_idx),
    "batch dim kept (a shape error)": gradient_with_batch_dim,
    "zeros": lambda scores, image, class_idx: torch.zeros_like(image[0]),
}


@pytest.mark.parametrize("student", VALUE_BUGS_OF_THE_GRADIENT.values(), ids=VALUE_BUGS_OF_THE_GRADIENT.keys())
def test_a_value_bug_of_the_gradient_costs_the_value_cell_only(student):
    with pytest.raises(AssertionError, match="wrong values|has shape"):
        probes.check_compute_gradient_score(student)
    probes.check_compute_gradient_score_no_accumulation(student)  # no second point lost


def test_accumulation_check_says_when_the_function_raised():
    with pytest.raises(AssertionError, match="not implemented yet"):
        probes.check_compute_gradient_score_no_accumulation(stub)

    def fails_on_the_second_call(scores, image, class_idx):
        if image.grad is not None:
            raise RuntimeError("image.grad is already set")
        scores[class_idx].backward()
        return image.grad[0].clone()

    with pytest.raises(AssertionError, match="raised RuntimeError"):
        probes.check_compute_gradient_score_no_accumulation(fails_on_the_second_call)


def test_accumulation_check_rejects_a_second_result_that_depends_on_the_first():
    """Not the sum, but still not independent: a running mean of the gradients stored on the image tensor."""

    def running_mean(scores, image, class_idx):
        (gradient,) = torch.autograd.grad(scores[class_idx], image)
        calls = getattr(image, "calls", [])
        image.calls = [*calls, gradient[0]]
        return torch.stack(image.calls).mean(0)

    with pytest.raises(AssertionError, match="differs from what the same call returns on a fresh image tensor"):
        probes.check_compute_gradient_score_no_accumulation(running_mean)


saliency_of_the_wrong_sign_gradient = _saliency_from(lambda g: (-g).amax(0))
saliency_with_channels_left = _saliency_from(lambda g: g.abs())


VALUE_BUGS_OF_THE_MAP = {
    "sum over channels": saliency_sum_over_channels,
    "mean over channels": saliency_mean_over_channels,
    "no abs": saliency_without_abs,
    "softmax": saliency_of_softmax,
    "wrong sign, no abs": saliency_of_the_wrong_sign_gradient,
    "channels kept (a shape error)": saliency_with_channels_left,
}


@pytest.mark.parametrize("student", VALUE_BUGS_OF_THE_MAP.values(), ids=VALUE_BUGS_OF_THE_MAP.keys())
def test_a_value_bug_of_the_map_costs_the_value_cell_only(student):
    with pytest.raises(AssertionError, match="wrong values|has shape"):
        probes.check_saliency_map(student)
    probes.check_saliency_map_side_effects(student)  # computed in eval mode, no side effect: no second point lost


def test_side_effect_check_says_when_the_map_raised():
    with pytest.raises(AssertionError, match="not implemented yet"):
        probes.check_saliency_map_side_effects(stub)


def test_a_shape_error_in_train_mode_is_not_called_an_eval_mode_problem():
    """Computed in train mode *and* with the channels kept: the message is about eval mode, and only because the
    mode changes the result; the same shape error in eval mode passes the side-effect cell."""

    def channels_kept_in_whatever_mode(model, image, class_idx):
        x = image[None].clone().requires_grad_()
        return gradient_with_autograd(model(x)[0], x, class_idx).abs()

    with pytest.raises(AssertionError, match="compute in eval mode"):
        probes.check_saliency_map_side_effects(channels_kept_in_whatever_mode)
    probes.check_saliency_map_side_effects(saliency_with_channels_left)


def test_calibrated_hidden_model_discriminates():
    """The hidden model's logits depend on the image and its saliency is far from constant."""
    model = inputs.calibrated_hidden_model()
    images = hidden_images(4, 64)
    logits = model(images)
    assert logits.std(0).min() > 0.1 and (logits.amax(1) - logits.amin(1)).min() > 1
    map_ = S.saliency_map(model, images[0], 0)
    assert map_.std() > 0.1 * map_.mean()
    assert facts.hook_count(model) == 0 and not model.training


def test_hook_count_sees_module_and_global_hooks():
    model = inputs.calibrated_hidden_model()
    handles = [
        model.backbone.bn5_2.register_forward_hook(lambda *a: None),
        model.fc.register_forward_pre_hook(lambda *a: None),
        torch.nn.modules.module.register_module_forward_hook(lambda *a: None),
    ]
    try:
        assert facts.hook_count(model) == 3
    finally:
        for handle in handles:
            handle.remove()
    assert facts.hook_count(model) == 0
