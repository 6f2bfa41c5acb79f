import torch

from helpers.train import TrainConfig, train

TINY = TrainConfig(width=1 / 32, crop_images=64, crop_epochs=1, full_images=16, full_epochs=1)


def test_training_is_seeded_and_returns_an_eval_model():
    first, second = train(TINY, progress=False), train(TINY, progress=False)
    assert not first.training
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs between two runs with the same seed"


def test_training_changes_the_weights():
    torch.manual_seed(TINY.seed)
    from helpers.models import VGG11GAP

    untrained = VGG11GAP(6, width=TINY.width)
    trained = train(TINY, progress=False)
    assert not torch.equal(untrained.fc.weight, trained.fc.weight)
