import shutil

import pytest
import torch

from helpers.data import CLASSES, make_dataset
from helpers.inference import accuracy
from helpers.pretrained import CHECKPOINT, CHECKPOINT_SHA256, load_pretrained, save_checkpoint, sha256


def test_packaged_checkpoint_is_small_and_matches_its_hash():
    assert CHECKPOINT.stat().st_size <= 5 * 2**20
    assert sha256(CHECKPOINT) == CHECKPOINT_SHA256


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
