"""The references of notebook 12_attributions agree with captum (``NoiseTunnel(Saliency)`` with the same seed,
``IntegratedGradients`` with ``method="riemann_middle"``) and with their identities (IG completeness, SmoothGrad
with no noise is the gradient), and the hidden checks accept the references and name what they reject."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

from grader_tests.judges import attributions as grader
from grader_tests.judges import verdict
from grader_tests.kernel import attributions as probes
from grader_tests.kernel.record import Probe


def _judged(check: Probe, student) -> str | None:
    from grader_tests.judges.records import decode
    from grader_tests.kernel.record import encode

    _, observations = decode(encode(check.name, check.probe(student)))
    return verdict(check.name, observations)


# --- against captum ------------------------------------------------------------------------------------------


FLOAT32_SMOOTHGRAD = [i for i, case in enumerate(probes.SMOOTHGRAD_CASES) if case[-1] == torch.float32]


@pytest.mark.parametrize("index", FLOAT32_SMOOTHGRAD)
def test_reference_smoothgrad_is_captums_noise_tunnel_with_the_same_seed(index):
    """captum draws float32 noise whatever the input's dtype, so the float64 case has other noise."""
    model, image, class_idx, samples, sigma, seed = probes.smoothgrad_case(index)
    ours = grader.smoothgrad(model, image, class_idx, samples, sigma, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    theirs = NoiseTunnel(Saliency(model.eval())).attribute(
        image[None], nt_type="smoothgrad", nt_samples=samples, stdevs=sigma, target=class_idx, abs=False
    )[0]
    torch.testing.assert_close(ours, theirs.to(ours.dtype), **grader._tolerance(ours))


@pytest.mark.parametrize("index", range(len(probes.IG_CASES)))
def test_reference_integrated_gradients_is_captums_riemann_middle(index):
    model, image, class_idx, base, steps = probes.ig_case(index)
    ours = grader.integrated_gradients(model, image, class_idx, base, steps)
    theirs = IntegratedGradients(model.eval()).attribute(
        image[None], baselines=base[None], target=class_idx, n_steps=steps, method="riemann_middle"
    )[0]
    torch.testing.assert_close(ours, theirs.to(ours.dtype), **grader._tolerance(ours))


# --- identities ----------------------------------------------------------------------------------------------


def test_integrated_gradients_are_complete_on_the_course_model_within_1_percent(pretrained):
    """sum IG = s_y(x) - s_y(x'), up to the Riemann sum's error: within 1% at 32 steps on the demo images."""
    from helpers.data import load_demo

    demo = load_demo()
    for image, label in zip(demo.images[:3], demo.labels[:3].tolist()):
        attribution = grader.integrated_gradients(pretrained, image, label, torch.zeros_like(image), 32)
        with torch.no_grad():
            gap = pretrained(image[None])[0, label] - pretrained(torch.zeros_like(image)[None])[0, label]
        assert abs(attribution.sum() - gap) <= 0.01 * abs(gap), (float(attribution.sum()), float(gap))


def test_smoothgrad_without_noise_is_the_gradient_and_ig_with_one_step_is_gradient_times_input():
    model, image, class_idx, *_ = probes.smoothgrad_case(3)  # float64
    gradient = grader.class_gradients(model, image[None], class_idx)[0]
    torch.testing.assert_close(grader.smoothgrad(model, image, class_idx, 3, 0.0, torch.Generator()), gradient)
    half = grader.class_gradients(model, 0.5 * image[None], class_idx)[0]
    torch.testing.assert_close(grader.integrated_gradients(model, image, class_idx, torch.zeros_like(image), 1),
                               image * half)


# --- the hidden checks ---------------------------------------------------------------------------------------


def test_the_references_pass_every_hidden_check():
    assert _judged(probes.check_smoothgrad, grader.smoothgrad) is None
    assert _judged(probes.check_smoothgrad_side_effects, grader.smoothgrad) is None
    assert _judged(probes.check_integrated_gradients, grader.integrated_gradients) is None
    assert _judged(probes.check_integrated_gradients_side_effects, grader.integrated_gradients) is None


def test_noise_drawn_one_sample_at_a_time_in_the_same_order_is_accepted():
    """torch's generator gives the same stream drawn at once or sample by sample (checked here for the hidden
    sizes), so a loop over the samples is a correct alternative."""

    def one_by_one(model, image, class_idx, samples, sigma, generator):
        noises = [sigma * torch.randn(image.shape, generator=generator, dtype=image.dtype) for _ in range(samples)]
        return torch.stack([grader.class_gradients(model, (image + n)[None], class_idx)[0] for n in noises]).mean(0)

    assert _judged(probes.check_smoothgrad, one_by_one) is None


def test_noise_from_the_global_generator_is_rejected():
    def global_noise(model, image, class_idx, samples, sigma, generator):
        noise = sigma * torch.randn((samples, *image.shape), dtype=image.dtype)
        return grader.class_gradients(model, image + noise, class_idx).mean(0)

    reason = _judged(probes.check_smoothgrad, global_noise)
    assert reason is not None and "draw the noise from the generator" in reason
    assert _judged(probes.check_smoothgrad_side_effects, global_noise) is None  # one mistake, one cell
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    probes.check_smoothgrad.probe(grader.smoothgrad)
    assert torch.equal(torch.random.get_rng_state(), state), "the probe leaves the kernel's global generator as it was"


def test_ig_left_riemann_sum_and_a_missing_input_difference_are_rejected():
    def left(model, image, class_idx, baseline, steps):
        alphas = torch.arange(steps, dtype=image.dtype) / steps
        path = baseline + alphas.view(-1, 1, 1, 1) * (image - baseline)
        return (image - baseline) * grader.class_gradients(model, path, class_idx).mean(0)

    def no_difference(model, image, class_idx, baseline, steps):
        alphas = (torch.arange(steps, dtype=image.dtype) + 0.5) / steps
        path = baseline + alphas.view(-1, 1, 1, 1) * (image - baseline)
        return grader.class_gradients(model, path, class_idx).mean(0)

    for wrong in (left, no_difference):
        reason = _judged(probes.check_integrated_gradients, wrong)
        assert reason is not None and "wrong values" in reason
