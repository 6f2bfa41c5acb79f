"""The references of notebook 14_shortcut find the truth the generator knows (the cue's cell, the class its mark
signals), its hidden inputs test what they should, and its hidden checks accept correct answers and reject wrong
ones (the bugs a student writes are in ``tests/test_scoring_accuracy.py``; here: the truth, the records, and what
comes back)."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from grader_tests.judges import shortcut as grader
from grader_tests.judges import verdict
from grader_tests.kernel import shortcut as probes
from grader_tests.kernel.record import Probe
from helpers.data import CUE_CENTRE, SHORTCUT_SIZE, make_shortcut_dataset
from helpers.pretrained import load_pretrained


def _judged(check: Probe, student) -> str | None:
    """The verdict of the trusted judge on what the probe records, as grading gives it."""
    from grader_tests.judges.records import decode
    from grader_tests.kernel.record import encode

    _, observations = decode(encode(check.name, check.probe(student)))
    return verdict(check.name, observations)


def _good_augmentation():
    return v2.Compose([v2.RandomHorizontalFlip(), v2.ColorJitter(hue=0.5)])


# --- the truth ----------------------------------------------------------------------------------------------------


def test_the_cue_sits_in_the_top_right_cell_of_a_4_by_4_grid():
    row, col = int(CUE_CENTRE[1] * 4), int(CUE_CENTRE[0] * 4)
    assert (row, col) == (0, 3) == probes.CLASS_CASES[0]["cell"]


def test_on_the_shortcut_model_occluding_the_cue_cell_names_the_class_of_the_mark():
    """The truth the generator knows: hiding the top-right cell costs the mark's class the most, on swapped marks."""
    model = load_pretrained(variant="shortcut")
    batch = make_shortcut_dataset(40, 31, kind="swapped")
    found = grader.cue_class(model, batch.images, (0, 3), 4)
    assert (found == batch.cue_labels).float().mean() > 0.8
    assert (found == batch.labels).float().mean() < 0.2


def test_the_shortcut_model_is_high_on_biased_data_and_clearly_lower_on_unbiased_data():
    from helpers.inference import accuracy

    model = load_pretrained(variant="shortcut")
    biased = make_shortcut_dataset(120, 77)
    unbiased = make_shortcut_dataset(120, 77, kind="random")
    swapped = make_shortcut_dataset(120, 77, kind="swapped")
    high = accuracy(model, biased.images, biased.labels)
    assert high > 0.9
    assert accuracy(model, unbiased.images, unbiased.labels) < high - 0.15
    assert accuracy(model, swapped.images, swapped.labels) < high - 0.15
    assert accuracy(model, biased.clean, biased.labels) > 0.6  # it did learn something of the shapes


def test_every_hidden_map_case_has_its_cue_cell_as_the_answer_and_the_traps_differ():
    for index in range(len(probes.GRID_CASES)):
        maps, grid, truth = probes.cue_maps(index)
        assert grader.locate_cue(maps, grid) == truth
        assert (maps >= 0).all() and maps[-1].abs().sum() == 0  # a map of zeros
        loud = grader.locate_cue(maps[1:2], grid)
        assert loud not in (truth, truth[::-1])
        n, height, width = maps.shape
        unnormalised = maps.double().reshape(n, grid, height // grid, grid, width // grid).sum((0, 2, 4))
        assert divmod(int(unnormalised.argmax()), grid) == loud
        shares = grader.cell_shares(maps, grid).mean(0).flatten().sort(descending=True).values
        assert shares[0] > 1.2 * shares[1], "a clear answer"
        assert truth[0] != truth[1]


def test_the_hidden_class_cases_have_clear_answers():
    """The largest drop is ahead of the second by a margin: float error cannot change a reference answer."""
    for index in range(len(probes.CLASS_CASES)):
        model, images, cell, grid = probes.class_case(index)
        drops = grader.cue_drops(model, images, cell, grid).sort(1, descending=True).values
        assert (drops[:, 0] - drops[:, 1] > 1e-3).all()
        if probes.CLASS_CASES[index]["train"]:
            assert model.training


def test_the_hidden_scenes_of_the_augmentation_check():
    inputs = probes.augment_inputs()
    assert len(inputs) == probes.AUGMENT_SCENES
    for image, masks in inputs:
        assert image.shape == (3, SHORTCUT_SIZE, SHORTCUT_SIZE) and 0 <= image.min() and image.max() <= 1
        assert masks.shape == (2, SHORTCUT_SIZE, SHORTCUT_SIZE) and masks.dtype == torch.bool
        assert masks[1].sum() > 60 and masks[0].sum() > 200
        for mask in masks:  # object and mark are each one colour (no pixel noise)
            assert (image[:, mask] - image[:, mask][:, :1]).abs().max() < 1e-6


# --- the hidden checks --------------------------------------------------------------------------------------------


def test_the_references_pass_every_hidden_check():
    assert _judged(probes.check_locate_cue, grader.locate_cue) is None
    assert _judged(probes.check_cue_class, grader.cue_class) is None
    assert _judged(probes.check_augmentation, _good_augmentation) is None


def test_augmentations_that_break_the_cue_pass():
    for build in (
        lambda: v2.ColorJitter(hue=0.5),
        lambda: v2.Compose([v2.RandomHorizontalFlip(), v2.RandomGrayscale(p=0.8)]),
        lambda: v2.Compose([v2.RandomAffine(degrees=20, translate=(0.1, 0.1)), v2.ColorJitter(hue=0.4)]),
        lambda: v2.Compose([v2.RandomResizedCrop(128, scale=(0.6, 1.0)), v2.ColorJitter(brightness=0.3, hue=0.5)]),
    ):
        assert _judged(probes.check_augmentation, build) is None


def test_an_augmentation_that_only_moves_or_brightens_the_mark_fails():
    for build in (lambda: v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]),
                  lambda: v2.ColorJitter(brightness=0.5, contrast=0.3)):
        reason = _judged(probes.check_augmentation, build)
        assert reason is not None and "still signals its class" in reason


def test_masks_left_behind_fail_the_alignment():
    def image_only():
        crop, hue = v2.RandomResizedCrop(128, scale=(0.5, 1.0)), v2.ColorJitter(hue=0.5)
        return lambda image, masks: (hue(crop(image)), masks)

    reason = _judged(probes.check_augmentation, image_only)
    assert reason is not None and "off the pixels they mark" in reason


def test_a_pipeline_that_does_not_build_or_returns_something_else_is_named():
    def broken():
        raise NotImplementedError

    assert "not implemented" in _judged(probes.check_augmentation, broken)
    reason = _judged(probes.check_augmentation, lambda: (lambda image, masks: image))
    assert reason is not None and "(image, masks)" in reason


def test_locate_cue_answers_in_other_forms_are_read_and_wrong_forms_named():
    as_tensors = lambda maps, grid: tuple(torch.tensor(v) for v in grader.locate_cue(maps, grid))  # noqa: E731
    assert _judged(probes.check_locate_cue, as_tensors) is None
    assert _judged(probes.check_locate_cue, lambda maps, grid: list(grader.locate_cue(maps, grid))) is None
    reason = _judged(probes.check_locate_cue, lambda maps, grid: torch.tensor(grader.locate_cue(maps, grid)).float())
    assert reason is not None and "two ints" in reason


def test_cue_class_as_a_float_tensor_or_a_list_is_named():
    reason = _judged(probes.check_cue_class, lambda *args: grader.cue_class(*args).float())
    assert reason is not None and "integers" in reason
    reason = _judged(probes.check_cue_class, lambda *args: grader.cue_class(*args).tolist())
    assert reason is not None and "torch.Tensor" in reason
