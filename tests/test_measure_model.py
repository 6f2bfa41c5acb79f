"""The figures of ``scripts/measure_model.py`` (the README's model table) and the metric behind the saliency ratio."""

from __future__ import annotations

import pytest
import torch

from helpers.data import make_dataset
from helpers.metrics import dilate, energy_in_mask, on_object_ratio, pointing_game


@pytest.fixture(scope="module")
def data():
    return make_dataset(12, seed=5)


def test_on_object_ratio_is_one_for_maps_that_ignore_the_object_and_area_inverse_for_perfect_ones(data):
    uniform = torch.ones(data.masks.shape)
    torch.testing.assert_close(on_object_ratio(uniform, data.masks), torch.ones(12))
    area = data.masks.flatten(1).float().mean(1)
    torch.testing.assert_close(on_object_ratio(data.masks.float(), data.masks), 1 / area)
    noise = torch.rand(data.masks.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(on_object_ratio(noise, data.masks), energy_in_mask(noise, data.masks) / area)
    assert (on_object_ratio(noise, data.masks) - 1).abs().max() < 0.1  # random heat lands at chance
    with pytest.raises(ValueError, match="at least one pixel"):
        on_object_ratio(uniform[:1], torch.zeros(1, *data.masks.shape[1:], dtype=torch.bool))


def test_baselines_are_what_maps_ignoring_the_image_reach(measure_model, data):
    base = measure_model.baselines(data)
    prior = measure_model.centre_prior(1, 224)[0]
    assert prior.min() == 0 and int(prior.argmax()) in {111 * 224 + 111, 111 * 224 + 112, 112 * 224 + 111}
    assert 0 < base["random_pointing"] < base["centre_pointing"] < 1  # objects are near the middle more often
    assert 1 < base["centre_ratio"] < 2 and base["uniform_ratio"] == 1


def test_measure_gives_the_four_figures_and_agrees_with_a_direct_computation(measure_model, data, pretrained):
    from grader_tests.judges.saliency import saliency

    figures = measure_model.measure(pretrained, data, chunk=5)  # chunks must not change the result
    assert list(figures._fields) == list(measure_model.TARGETS)
    maps = saliency(pretrained, data.images, data.labels)
    assert figures.saliency_ratio == pytest.approx(on_object_ratio(maps, data.masks).mean().item(), rel=1e-5)
    hits = pointing_game(maps, dilate(data.masks, measure_model.STRIDE)).float().mean().item()
    assert figures.saliency_pointing == pytest.approx(hits)
    assert all(0 <= getattr(figures, f) <= 1 for f in ("accuracy", "gradcam_pointing", "saliency_pointing"))
