"""The shortcut world of notebook 14 and its model: the same scenes with and without the mark, the mark's mask, the
recipe and the packaged checkpoint (its hash, its size and what it learned)."""

from __future__ import annotations

import pytest
import torch
from script_loader import load_script

from helpers.data import (
    CLASSES,
    CUE_COLOURS,
    SHORTCUT_SIZE,
    make_dataset,
    make_shortcut_dataset,
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



def test_the_notebooks_fix_works_because_of_the_hue_and_a_flip_alone_does_not():
    """What notebook 14 tells its readers, on 300 scenes it never shows: retraining the last layer on biased scenes
    through a flip and a random hue lifts the unbiased accuracy and stops the model following a wrong class's disc;
    the same retraining with the flip only (its control) does neither. And the shortcut model reads the disc at its
    place: with the image flipped left-right (the disc in the top-left corner) it follows a wrong class's disc less
    than half as often."""
    from helpers.pretrained import load_pretrained

    script = load_script("shortcut_fix")  # runs notebook 14's own fine-tune, prints the README's table
    nets = script.models()
    assert torch.equal(nets["the shortcut model"].fc.weight, load_pretrained(variant="shortcut").fc.weight)
    rows = script.scores(nets, 300, 1403)
    unbiased, follows = script.COLUMNS.index("unbiased"), script.COLUMNS.index("follows that disc")
    before, control, fixed = rows.values()
    assert fixed[unbiased] > before[unbiased] + 0.08 and fixed[follows] < before[follows] / 2, (before, fixed)
    assert control[unbiased] < before[unbiased] + 0.03 and control[follows] > before[follows] / 2, (before, control)
    flipped = script.COLUMNS.index("follows it, image flipped")  # docs/models.md: the model reads the disc at its place
    assert before[flipped] < before[follows] / 2, before
