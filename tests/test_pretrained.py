import copy
import shutil

import pytest
import torch

from helpers.data import CLASSES, make_dataset
from helpers.inference import accuracy
from helpers.pretrained import CHECKPOINT, STANDARD_CHECKPOINT, VARIANTS, load_pretrained, save_checkpoint, sha256


@pytest.fixture(scope="module")
def held_out():
    """Images of a seed training never used (training renders seed 0 only)."""
    return make_dataset(100, seed=7)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_packaged_checkpoints_are_small_and_match_their_hashes(variant):
    path, expected = VARIANTS[variant]
    assert path.parent == CHECKPOINT.parent and path.stat().st_size <= 5 * 2**20
    assert sha256(path) == expected
    assert VARIANTS["robust"][0] == CHECKPOINT and VARIANTS["standard"][0] == STANDARD_CHECKPOINT


def test_the_two_variants_are_different_models_and_the_course_model_is_the_default(pretrained):
    standard = load_pretrained(variant="standard")
    assert not any(m.training for m in standard.modules())
    assert not torch.equal(standard.fc.weight, pretrained.fc.weight)
    assert torch.equal(load_pretrained(variant="robust").fc.weight, pretrained.fc.weight)
    with pytest.raises(ValueError, match="unknown variant"):
        load_pretrained(variant="imagenet")
    with pytest.raises(ValueError, match="SHA-256"):  # one variant's file against the other's hash
        load_pretrained(STANDARD_CHECKPOINT, variant="robust")


def test_the_course_model_reaches_all_four_targets_on_held_out_images(pretrained, measure_model, held_out):
    """The targets on 100 images (the README's figures use 2,000: scripts/measure_model.py)."""
    figures = measure_model.measure(pretrained, held_out)
    for name, target in measure_model.TARGETS.items():
        assert getattr(figures, name) >= target, f"{name} = {getattr(figures, name):.3f}, target {target}"


def test_the_standard_model_classifies_and_localises_but_its_saliency_is_at_chance(measure_model, held_out):
    """What 05_saliency shows: as accurate, Grad-CAM as good, saliency maps that ignore where the object is."""
    figures = measure_model.measure(load_pretrained(variant="standard"), held_out)
    assert figures.accuracy >= 0.98 and figures.gradcam_pointing >= 0.9
    assert figures.saliency_ratio < 1.5
    assert figures.saliency_pointing < measure_model.baselines(held_out)["centre_pointing"]


def test_loads_in_eval_mode_with_the_course_classes(pretrained):
    assert not any(m.training for m in pretrained.modules())
    assert pretrained.fc.out_features == len(CLASSES)


def test_accuracy_on_images_never_used_in_training(pretrained):
    """Training renders seed 0 only; the target is 98%."""
    images, labels, _ = make_dataset(300, seed=7)
    assert accuracy(pretrained, images, labels) >= 0.98


def test_a_corrupt_or_missing_checkpoint_is_refused(tmp_path):
    corrupt = tmp_path / "model.pt"
    shutil.copy(CHECKPOINT, corrupt)
    with corrupt.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="SHA-256"):
        load_pretrained(corrupt)
    with pytest.raises(FileNotFoundError, match="helpers.train"):
        load_pretrained(tmp_path / "missing.pt")


def test_save_and_load_round_trip(tmp_path, small_model):
    path = tmp_path / "mine.pt"
    digest = save_checkpoint(small_model, path, note="test")
    loaded = load_pretrained(path, expected_sha256=digest)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), small_model(x))
    assert save_checkpoint(small_model, tmp_path / "other_name.pt", note="test") == digest  # bytes: weights only


def test_a_file_is_read_on_every_load_though_its_checkpoint_is_unpickled_once(tmp_path, small_model):
    """Each load hashes the file's bytes again: a file corrupted or replaced after a load is refused or read
    anew. Models built from the same kept checkpoint share no tensor."""
    path, model = tmp_path / "mine.pt", copy.deepcopy(small_model)
    digest = save_checkpoint(model, path)
    first, second = load_pretrained(path, expected_sha256=digest), load_pretrained(path, expected_sha256=digest)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name
    with torch.no_grad():
        first.fc.bias.add_(1.0)  # a change to one model reaches neither the other nor the next load
    assert torch.equal(load_pretrained(path, expected_sha256=digest).fc.bias, second.fc.bias)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_pretrained(path, expected_sha256=digest)
    with torch.no_grad():
        model.fc.bias.zero_()
    changed = save_checkpoint(model, path)
    assert not load_pretrained(path, expected_sha256=changed).fc.bias.any()  # the new file's weights
