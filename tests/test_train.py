import dataclasses

import pytest
import torch

from helpers.models import VGG11GAP
from helpers.train import PERTURBATION_FIELDS, SHORTCUT_FIELDS, STANDARD, VARIANTS, TrainConfig, perturb, train

TINY = TrainConfig(width=1 / 32, crop_images=64, crop_epochs=1, full_images=16, full_epochs=1, perturbed_epochs=1,
                   frozen_epochs=1)
"""The course recipe, shrunk: its last epoch (the full-size one) is perturbed."""

SMALLER = dataclasses.replace(TINY, crop_images=32, full_images=8)  # one batch an epoch
SMALLER_STANDARD = dataclasses.replace(SMALLER, noise_std=0.0, fgsm_eps=0.0, perturbed_epochs=0, frozen_epochs=0)


def _assert_same_weights(first, second):
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), f"{name} differs between the two runs"


def test_training_is_seeded_and_returns_an_eval_model():
    first, second = train(TINY, progress=False), train(TINY, progress=False)
    assert not first.training
    _assert_same_weights(first, second)


def test_training_changes_the_weights():
    torch.manual_seed(TINY.seed)
    untrained = VGG11GAP(6, width=TINY.width)
    trained = train(TINY, progress=False)
    assert not torch.equal(untrained.fc.weight, trained.fc.weight)


def test_fgsm_and_noise_training_is_seeded_too():
    config = dataclasses.replace(SMALLER, fgsm_eps=0.03, perturbed_epochs=2)
    _assert_same_weights(train(config, progress=False), train(config, progress=False))


def test_perturbations_change_the_result_and_a_recipe_without_them_is_the_standard_one():
    """The standard recipe is untouched by the perturbation code: a config whose perturbations never come into
    play (no perturbed epoch, or neither noise nor an FGSM step) trains exactly the standard model, BatchNorm and
    all."""
    noisy, clean = train(SMALLER, progress=False), train(SMALLER_STANDARD, progress=False)
    assert not torch.equal(noisy.fc.weight, clean.fc.weight)
    _assert_same_weights(clean, train(dataclasses.replace(SMALLER, perturbed_epochs=0), progress=False))
    _assert_same_weights(clean, train(dataclasses.replace(SMALLER, noise_std=0.0, fgsm_eps=0.0), progress=False))


def test_only_the_last_epochs_are_perturbed_and_the_last_of_those_frozen(monkeypatch):
    import helpers.train as T

    seen = []  # (image size, model in train mode) of every perturbed batch
    monkeypatch.setattr(T, "perturb", lambda model, images, *rest: seen.append((images.shape[-1], model.training))
                        or images)
    quick = dataclasses.replace(SMALLER, width=1 / 64)
    train(quick, progress=False)  # 1 crop epoch, then 1 full epoch: perturbed and frozen
    assert seen == [(224, False)]
    seen.clear()
    train(dataclasses.replace(quick, perturbed_epochs=5, frozen_epochs=1), progress=False)  # more than there are
    assert seen == [(128, True), (224, False)]
    seen.clear()
    train(dataclasses.replace(quick, perturbed_epochs=2, frozen_epochs=0), progress=False)
    assert seen == [(128, True), (224, True)]


def test_frozen_epochs_leave_the_batchnorm_statistics_alone():
    quick = dataclasses.replace(SMALLER, width=1 / 64, crop_epochs=0, full_images=64, perturbed_epochs=1)  # 2 steps
    frozen = train(dataclasses.replace(quick, frozen_epochs=1), progress=False)
    moving = train(dataclasses.replace(quick, frozen_epochs=0), progress=False)
    assert torch.equal(frozen.backbone.bn1.running_mean, torch.zeros_like(frozen.backbone.bn1.running_mean))
    assert not torch.equal(moving.backbone.bn1.running_mean, frozen.backbone.bn1.running_mean)
    assert not torch.equal(frozen.backbone.bn1.weight, torch.ones_like(frozen.backbone.bn1.weight))  # still learns


def test_perturb_adds_noise_of_the_configured_std_and_an_fgsm_step_of_size_eps(small_model):
    images = torch.zeros(64, 3, 32, 32)
    labels = torch.zeros(64, dtype=torch.long)
    noisy = perturb(small_model, images, labels, TrainConfig(noise_std=0.5), torch.Generator().manual_seed(0))
    assert abs(noisy.std().item() - 0.5) < 0.01 and abs(noisy.mean().item()) < 0.01
    stepped = perturb(small_model, images, labels, TrainConfig(noise_std=0.0, fgsm_eps=0.03), torch.Generator())
    assert torch.allclose(stepped.abs().flatten(1).amax(1), torch.full((64,), 0.03))  # eps * sign(gradient)
    assert images.abs().max() == 0, "perturb must not change the caller's images"
    assert not small_model.training and all(p.grad is None for p in small_model.parameters())


def test_the_packaged_checkpoints_record_the_recipes_that_wrote_them():
    """``python -m helpers.train --variant V`` trains with the config stored in V's packaged checkpoint."""
    from helpers.pretrained import VARIANTS as FILES

    assert set(VARIANTS) == set(FILES)
    for variant, config in VARIANTS.items():
        stored = torch.load(FILES[variant][0], map_location="cpu", weights_only=True)["config"]
        assert stored == config.metadata(), f"the {variant!r} checkpoint was trained with another config"
    everything = dataclasses.asdict(STANDARD)
    dropped = PERTURBATION_FIELDS + SHORTCUT_FIELDS  # fields the checkpoints of the shapes world predate
    assert STANDARD.metadata() == {k: v for k, v in everything.items() if k not in dropped}
    robust = dataclasses.asdict(VARIANTS["robust"])
    assert VARIANTS["robust"].metadata() == {k: v for k, v in robust.items() if k not in SHORTCUT_FIELDS}
    assert VARIANTS["shortcut"].metadata() == {
        k: v for k, v in dataclasses.asdict(VARIANTS["shortcut"]).items() if k not in PERTURBATION_FIELDS}


def test_negative_perturbations_are_refused():
    with pytest.raises(ValueError, match="must not be negative"):
        TrainConfig(noise_std=-1.0)
