"""The references of notebook 10_class_visualization follow their stated rules, its hidden inputs test what they
should, and its hidden checks accept correct answers and reject wrong ones (the bugs a student writes are in
``tests/test_scoring_accuracy.py``; here: the references against independent implementations, the hidden cases,
and what comes back)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from grader_tests.judges import class_visualization as grader
from grader_tests.judges import verdict
from grader_tests.kernel import class_visualization as probes
from grader_tests.kernel.record import Probe
from helpers.images import MEAN, STD


def _judged(check: Probe, student) -> str | None:
    """The verdict of the trusted judge on what the probe records, as grading gives it."""
    from grader_tests.judges.records import decode
    from grader_tests.kernel.record import encode

    _, observations = decode(encode(check.name, check.probe(student)))
    return verdict(check.name, observations)


# --- the references against independent implementations ----------------------------------------------------------


class _Linear(torch.nn.Module):
    """A linear "model": ``s = W x + b``, whose input gradient is a known constant ``W_c``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.flatten(1).T


def _numpy_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """torchvision's gaussian_blur, kernel 5, reflect padding, separable, in numpy/scipy."""
    offsets = np.arange(5) - 2
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    x = correlate1d(x, kernel, axis=-1, mode="mirror")
    return correlate1d(x, kernel, axis=-2, mode="mirror")


def test_class_visualization_is_the_stated_rule_on_a_linear_model():
    """With a linear model ``G_n = W_{c_n} - 2 l2 x_n``: the whole update, written in numpy from the task's text."""
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(4, 3, 10, 12, generator=generator, dtype=torch.float64) * 0.3
    model = _Linear(weight)
    start = torch.randn(2, 3, 10, 12, generator=generator, dtype=torch.float64)
    classes = torch.tensor([2, 0])
    steps, lr, l2, jitter, every, sigma = 5, 4.0, 0.05, 3, 2, 0.7
    actual = grader.class_visualization(model, start, classes, steps, lr, l2, jitter, every, sigma,
                                        torch.Generator().manual_seed(9))
    offsets = torch.Generator().manual_seed(9)
    x = start.numpy().copy()
    low = ((0 - np.array(MEAN)) / np.array(STD)).reshape(3, 1, 1)
    high = ((1 - np.array(MEAN)) / np.array(STD)).reshape(3, 1, 1)
    w = weight.numpy()[classes.numpy()]
    for t in range(1, steps + 1):
        dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=offsets).tolist()
        rolled = np.roll(x, (dy, dx), axis=(2, 3))
        g = w - 2 * l2 * rolled
        rolled = rolled + lr * g / np.linalg.norm(g.reshape(2, -1), axis=1).reshape(2, 1, 1, 1)
        x = np.clip(np.roll(rolled, (-dy, -dx), axis=(2, 3)), low, high)
        if t % every == 0:
            x = _numpy_blur(x, sigma)
    np.testing.assert_allclose(actual.numpy(), x, rtol=1e-10, atol=1e-10)
    assert all(p.grad is None for p in model.parameters())


def test_fool_is_the_stated_rule_on_a_linear_model():
    """A linear model: each step adds ``step * W_t / ||W_t||``; the count is the first n with the target on top."""
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(3, 3, 6, 6, generator=generator, dtype=torch.float64)
    image = 0.3 * torch.randn(3, 6, 6, generator=generator, dtype=torch.float64)
    model = _Linear(weight)
    target = int(model(image[None])[0].argmin())
    fooled, n = grader.fool(model, image, target, 0.2, 100)
    x, expected = image.numpy().copy(), None
    low = ((0 - np.array(MEAN)) / np.array(STD)).reshape(3, 1, 1)
    high = ((1 - np.array(MEAN)) / np.array(STD)).reshape(3, 1, 1)
    w = weight.numpy()
    for k in range(101):
        if int(np.argmax(w.reshape(3, -1) @ x.reshape(-1))) == target:
            expected = k
            break
        x = np.clip(x + 0.2 * w[target] / np.linalg.norm(w[target]), low, high)
    assert n == expected and 0 < n < 100
    np.testing.assert_allclose(fooled.numpy(), x, rtol=1e-12, atol=1e-12)


def test_jitter_is_undone_and_blur_keeps_the_range():
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    assert torch.equal(torch.roll(torch.roll(x, (3, -2), (2, 3)), (-3, 2), (2, 3)), x)
    clamped = grader.clamp_to_pixels(x * 10 - 5)
    low, high = grader.pixel_bounds(x)
    blurred = torch.from_numpy(_numpy_blur(clamped.numpy(), 0.8))
    assert (blurred >= low - 1e-12).all() and (blurred <= high + 1e-12).all()


# --- the hidden cases test what they should -------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(probes.VIS_CASES)))
def test_hidden_class_visualization_cases_move_the_images(index):
    model, args = probes.vis_arguments(index)
    out = grader.class_visualization(model, *args)
    start = args[0]
    assert (out - start).abs().max() > 0.5, "the ascent changes the images by far more than the tolerance"
    low, high = grader.pixel_bounds(out)
    assert (out >= low - 1e-6).all() and (out <= high + 1e-6).all()


@pytest.mark.parametrize("index", range(len(probes.FOOL_CASES)))
def test_hidden_fool_cases_are_far_from_ties(index):
    """At every step the target's margin over the best other class is far from 0, so float error cannot move the
    stopping step; the cases cover 0 steps, several steps and a budget that does not suffice."""
    model, image, target, step, max_steps = probes.fool_case(index)
    x = image.clone()
    for n in range(max_steps + 1):
        with torch.no_grad():
            scores = model(x[None])[0].double()
        others = torch.cat([scores[:target], scores[target + 1:]])
        assert abs(scores[target] - others.max()) > 5e-3
        if scores.argmax() == target:
            break
        x, _ = grader.fool(model, image, target, step, n + 1)
    _, steps = grader.fool(model, image, target, step, max_steps)
    expected = {0: (1, 40), 1: (2, 2), 2: (1, 40), 3: (0, 0)}[index]
    assert expected[0] <= steps <= expected[1]
    if index == 1:
        fooled, _ = grader.fool(model, image, target, step, max_steps)
        with torch.no_grad():
            assert int(model(fooled[None]).argmax()) != target, "the budget does not suffice"


# --- the judges ------------------------------------------------------------------------------------------------------


def test_the_references_pass_their_own_checks():
    assert _judged(probes.check_class_visualization, grader.class_visualization) is None
    assert _judged(probes.check_class_visualization_side_effects, grader.class_visualization) is None
    assert _judged(probes.check_fool, grader.fool) is None
    assert _judged(probes.check_fool_side_effects, grader.fool) is None


def test_what_comes_back_is_named():
    message = _judged(probes.check_fool, lambda *args: grader.fool(*args)[0])
    assert "pair (image, steps)" in message
    message = _judged(probes.check_fool, lambda *args: (grader.fool(*args)[0], float(grader.fool(*args)[1])))
    assert "should be an int" in message
    message = _judged(probes.check_class_visualization, lambda model, start, *rest: start.numpy())
    assert "torch.Tensor" in message


def test_a_stub_is_not_implemented():
    def stub(*args):
        raise NotImplementedError

    assert "not implemented" in _judged(probes.check_class_visualization, stub)
    assert "raised" in _judged(probes.check_fool_side_effects, stub) or "not implemented" in _judged(
        probes.check_fool_side_effects, stub)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_helpers_gaussian_blur_is_torchvisions(dtype):
    from torchvision.transforms.functional import gaussian_blur

    from helpers.images import gaussian_blur as ours

    x = torch.randn(2, 3, 17, 13, generator=torch.Generator().manual_seed(0), dtype=dtype)
    for sigma in (0.5, 0.8, 1.7):
        torch.testing.assert_close(ours(x, sigma), gaussian_blur(x, kernel_size=5, sigma=sigma), rtol=0, atol=1e-12)
        torch.testing.assert_close(ours(x[0], sigma, 3), gaussian_blur(x[0], kernel_size=3, sigma=sigma), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        ours(x, 0.5, kernel_size=4)
