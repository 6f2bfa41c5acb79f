"""The shortcut world of notebook 14 and its model: the same scenes with and without the mark, the mark's mask, the
recipe and the packaged checkpoint (its hash, its size and what it learned)."""

from __future__ import annotations

import pytest
import torch

from helpers.data import (
    CLASSES, CUE_COLOURS, SHORTCUT_SIZE, make_dataset, make_shortcut_dataset,
)
from helpers.images import denormalize


def test_the_clean_scenes_are_those_of_make_dataset_bit_for_bit():
    batch = make_shortcut_dataset(10, 5, 64, start=3)
    plain = make_dataset(10, 5, 64, start=3)
    assert torch.equal(batch.clean, plain.images)
    assert torch.equal(batch.labels, plain.labels) and torch.equal(batch.masks, plain.masks)
    assert batch.images.shape == (10, 3, 64, 64) and batch.cue_masks.dtype == torch.bool
    assert make_shortcut_dataset(4, 0).images.shape[-1] == SHORTCUT_SIZE == 128


def test_the_mark_changes_exactly_the_pixels_of_its_mask_in_the_colour_of_its_class():
    batch = make_shortcut_dataset(24, 8, 96, noise=0.0, kind="random")
    changed = (batch.images - batch.clean).abs().amax(1) > 0
    assert torch.equal(changed, batch.cue_masks)
    assert batch.cue_masks.flatten(1).any(1).float().mean() > 0.8  # the object hides the mark now and then
    for image, mask, cue in zip(denormalize(batch.images), batch.cue_masks, batch.cue_labels):
        if mask.any():
            assert torch.allclose(image[:, mask], CUE_COLOURS[cue].view(3, 1), atol=1e-5)


def test_the_mark_never_covers_the_object_and_sits_near_the_top_right_corner():
    batch = make_shortcut_dataset(32, 9, 128, kind="random")
    assert not (batch.cue_masks & batch.masks).any()
    rows, cols = batch.cue_masks.any(0).nonzero().unbind(1)
    assert rows.max() < 32 and cols.min() >= 96  # the top-right cell of a 4 x 4 grid


def test_the_kinds_of_marks():
    labels = make_shortcut_dataset(600, 2, 16, kind="biased", cue_rate=0.9)
    own = (labels.cue_labels == labels.labels).float().mean()
    assert 0.86 < own < 0.94
    assert (make_shortcut_dataset(60, 2, 16, kind="swapped").cue_labels != labels.labels[:60]).all()
    random = make_shortcut_dataset(600, 2, 16, kind="random")
    assert set(random.cue_labels.tolist()) == set(range(len(CLASSES)))
    assert (random.cue_labels == random.labels).float().mean() < 0.25
    assert torch.equal(make_shortcut_dataset(60, 2, 16, cue_rate=1.0).cue_labels, labels.labels[:60])
    assert torch.equal(make_shortcut_dataset(8, 2, 16, kind="random").clean, labels.clean[:8])  # same scenes


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="kind"):
        make_shortcut_dataset(2, 0, kind="none")
    with pytest.raises(ValueError, match="cue_rate"):
        make_shortcut_dataset(2, 0, cue_rate=1.5)


def _notebook_fine_tune():
    """``fine_tune_last_layer`` as the solved notebook 14 defines it (its own cell, run here), not a copy."""
    import copy
    import time
    from pathlib import Path

    import nbformat
    import torch.nn.functional as F
    from torchvision import tv_tensors

    import helpers

    path = Path(__file__).parents[1] / "solutions" / "14_shortcut" / "shortcut.ipynb"
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if "def fine_tune_last_layer(" in c.source]
    assert len(cells) == 1, "one cell of notebook 14 defines fine_tune_last_layer"
    namespace = {"copy": copy, "time": time, "torch": torch, "F": F, "tv_tensors": tv_tensors, "helpers": helpers}
    exec(cells[0], namespace)  # noqa: S102 - the course's own solution cell
    return namespace["fine_tune_last_layer"]


def test_the_notebooks_fix_works_because_of_the_hue_and_a_flip_alone_does_not():
    """What notebook 14 tells its readers, on 300 scenes it never shows: retraining the last layer on biased scenes
    through a flip and a random hue lifts the unbiased accuracy and stops the model following a wrong class's disc;
    the same retraining with the flip only (its control) does neither."""
    from torchvision.transforms import v2

    from helpers.inference import predict
    from helpers.pretrained import load_pretrained

    fine_tune = _notebook_fine_tune()
    model = load_pretrained(variant="shortcut")
    fixed, _ = fine_tune(model, v2.Compose([v2.RandomHorizontalFlip(), v2.ColorJitter(hue=0.5)]))
    control, _ = fine_tune(model, v2.RandomHorizontalFlip())
    assert torch.equal(model.fc.weight, load_pretrained(variant="shortcut").fc.weight), "the model itself is unchanged"
    unbiased = make_shortcut_dataset(300, 1403, kind="random")
    other = unbiased.cue_labels != unbiased.labels

    def scores(net):
        predicted = predict(net, unbiased.images).argmax(1)
        return (predicted == unbiased.labels).float().mean(), (predicted == unbiased.cue_labels)[other].float().mean()

    (before, follows_before), (after, follows_after), (flip, follows_flip) = map(scores, (model, fixed, control))
    assert after > before + 0.08 and follows_after < follows_before / 2, (before, after, follows_before, follows_after)
    assert flip < before + 0.03 and follows_flip > follows_before / 2, (before, flip, follows_before, follows_flip)
