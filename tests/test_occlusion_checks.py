"""The references of notebook 11_occlusion agree with captum's ``Occlusion`` and with the definition (a drop is
``F(x) - F(x occluded)``), its hidden inputs test what they should, and its hidden checks accept correct answers
and reject wrong ones (the bugs a student writes are in ``tests/test_scoring_accuracy.py``; here: the batching
rule, the records, and what comes back)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Occlusion

from grader_tests.judges import occlusion as grader
from grader_tests.judges import verdict
from grader_tests.kernel import occlusion as probes
from grader_tests.kernel.record import Probe


def _judged(check: Probe, student) -> str | None:
    """The verdict of the trusted judge on what the probe records, as grading gives it."""
    from grader_tests.judges.records import decode
    from grader_tests.kernel.record import encode

    _, observations = decode(encode(check.name, check.probe(student)))
    return verdict(check.name, observations)


def _captum(model, image, class_idx, window, stride, fill):
    attribution = Occlusion(model).attribute(
        image[None], target=class_idx, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=fill,
    )
    assert torch.equal(attribution[0, 0], attribution[0, 1]) and torch.equal(attribution[0, 0], attribution[0, 2])
    return attribution[0, 0]


# --- the reference is captum's Occlusion, and its definition -------------------------------------------------


@pytest.mark.parametrize("index", range(len(probes.DROP_CASES)))
def test_reference_map_of_the_reference_drops_is_captums_occlusion(index):
    model, image, class_idx, window, stride, fill, batch_size = probes.drop_case(index)
    drops = grader.occlusion_drops(model, image, class_idx, window, stride, fill, batch_size)
    ours = grader.occlusion_map(drops, window, stride, tuple(image.shape[-2:]))
    expected = _captum(model.eval(), image, class_idx, window, stride, fill)
    scale = float(drops.abs().max())
    assert scale > 1e-3, "the hidden model's drops are not degenerate"
    torch.testing.assert_close(ours, expected.to(ours.dtype), rtol=0, atol=1e-5 * scale)


def test_on_the_course_model_at_224_the_course_settings_agree_with_captum_within_1e_5(pretrained):
    from helpers.data import load_demo

    demo = load_demo()
    image, label = demo.images[3], int(demo.labels[3])
    drops = grader.occlusion_drops(pretrained, image, label, 32, 16, 0.0, 64)
    ours = grader.occlusion_map(drops, 32, 16, (224, 224))
    torch.testing.assert_close(ours, _captum(pretrained, image, label, 32, 16, 0.0), rtol=0, atol=1e-5)


def test_a_drop_is_the_score_lost_when_the_window_is_filled(pretrained):
    """The identity, by hand: one position, one forward pass of the occluded image."""
    image = torch.randn(3, 42, 50, generator=torch.Generator().manual_seed(3))
    drops = grader.occlusion_drops(pretrained, image, 2, 16, 12, 0.25, 5)
    assert drops.shape == (probes.positions(42, 16, 12), probes.positions(50, 16, 12)) == (4, 4)
    for r, c in ((0, 0), (2, 1), (3, 3)):  # (3, 3): clipped in both directions
        occluded = image.clone()
        occluded[:, 12 * r : 12 * r + 16, 12 * c : 12 * c + 16] = 0.25
        with torch.no_grad():
            expected = pretrained(image[None])[0, 2] - pretrained(occluded[None])[0, 2]
        torch.testing.assert_close(drops[r, c], expected, rtol=0, atol=1e-5)


def test_reference_map_is_the_mean_over_the_covering_windows():
    drops = torch.tensor([[1.0, 2.0, 4.0]])
    # width 10, window 4, stride 3: windows at 0, 3, 6 cover columns 0-3, 3-6, 6-9
    expected = torch.tensor([1, 1, 1, 1.5, 2, 2, 3, 4, 4, 4.0]).expand(4, 10)
    torch.testing.assert_close(grader.occlusion_map(drops, 4, 3, (4, 10)), expected)
    assert probes.positions(11, 4, 3) == 4 and probes.positions(10, 4, 3) == 3 and probes.positions(4, 4, 3) == 1


# --- the hidden inputs -------------------------------------------------------------------------------------------


def test_the_hidden_cases_cover_clipped_windows_and_non_square_images():
    clipped = [(H - w) % s != 0 for _, _, w, _, s, _, _ in probes.DROP_CASES for H in (64,)]
    assert any(clipped) and not all(clipped)
    shapes = {tuple(probes.drop_case(i)[1].shape) for i in range(len(probes.DROP_CASES))}
    assert (3, 96, 64) in shapes and (3, 64, 64) in shapes
    assert {d for *_, d in probes.MAP_CASES} == {torch.float32, torch.float64}
    for index in range(len(probes.MAP_CASES)):
        drops = probes.drop_grid(index)[0]
        assert (drops > 0).any() and (drops < 0).any()


# --- the hidden checks -------------------------------------------------------------------------------------------


def test_the_reference_passes_every_hidden_check():
    assert _judged(probes.check_occlusion_drops, grader.occlusion_drops) is None
    assert _judged(probes.check_occlusion_drops_batched, grader.occlusion_drops) is None
    assert _judged(probes.check_occlusion_map, grader.occlusion_map) is None


def test_one_forward_per_copy_fails_the_batching_check_only():
    def one_at_a_time(model, image, class_idx, window, stride, fill=0.0, batch_size=32):
        return grader.occlusion_drops(model, image, class_idx, window, stride, fill, batch_size=1)

    assert _judged(probes.check_occlusion_drops, one_at_a_time) is None
    reason = _judged(probes.check_occlusion_drops_batched, one_at_a_time)
    assert reason is not None and "calls" in reason and "batch_size" in reason


def test_batches_larger_than_batch_size_fail_the_batching_check():
    def all_at_once(model, image, class_idx, window, stride, fill=0.0, batch_size=32):
        return grader.occlusion_drops(model, image, class_idx, window, stride, fill, batch_size=10_000)

    reason = _judged(probes.check_occlusion_drops_batched, all_at_once)
    assert reason is not None and "images at once" in reason


def test_a_wrong_shape_or_a_numpy_array_is_named():
    reason = _judged(probes.check_occlusion_map, lambda drops, window, stride, size: grader.occlusion_map(
        drops, window, stride, size).T)
    assert reason is not None and "shape" in reason
    reason = _judged(probes.check_occlusion_map, lambda drops, window, stride, size: grader.occlusion_map(
        drops, window, stride, size).numpy())
    assert reason is not None and "torch.Tensor" in reason


def test_a_deep_copy_of_the_model_in_eval_mode_passes_and_in_place_occlusion_costs_the_value_cell_only():
    import copy

    def on_a_copy(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
        return grader.occlusion_drops(copy.deepcopy(model).eval(), image, class_idx, window, stride, fill, batch_size)

    assert _judged(probes.check_occlusion_drops_batched, on_a_copy) is None
    assert _judged(probes.check_occlusion_drops, on_a_copy) is None

    def in_place(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
        drops = grader.occlusion_drops(model, image, class_idx, window, stride, fill, batch_size)
        image[:, :window, :window] = fill
        return drops

    assert "caller's image" in _judged(probes.check_occlusion_drops, in_place)
    assert _judged(probes.check_occlusion_drops_batched, in_place) is None
