import pytest
import torch

from helpers.inference import accuracy, evaluating, predict
from helpers.models import VGG11GAP


def _mixed_model():
    model = VGG11GAP(6, width=1 / 16).train()
    model.backbone.bn1.eval()  # a mixed state, which a plain model.train() afterwards would not restore
    return model


def _flags(model):
    return [m.training for m in model.modules()]


def test_predict_keeps_training_flags_and_grads():
    model = _mixed_model()
    flags = _flags(model)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    logits = predict(model, torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 6) and not logits.requires_grad
    assert _flags(model) == flags
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_predict_is_batch_independent_thanks_to_eval_mode():
    model = _mixed_model()
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(predict(model, x)[:1], predict(model, x[:1]))
    torch.testing.assert_close(predict(model, x, batch_size=1), predict(model, x))


def test_evaluating_restores_flags_after_an_error():
    model = _mixed_model()
    flags = _flags(model)
    with pytest.raises(RuntimeError):
        with evaluating(model):
            assert not any(_flags(model))
            raise RuntimeError
    assert _flags(model) == flags


def test_accuracy_and_bad_shape():
    model = VGG11GAP(6, width=1 / 16)
    x = torch.randn(5, 3, 32, 32)
    labels = predict(model, x).argmax(1)
    assert accuracy(model, x, labels) == 1.0
    with pytest.raises(ValueError, match="batch"):
        predict(model, x[0])
