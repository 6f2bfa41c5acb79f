import pytest
import torch

from helpers.hooks import capture_activations


def _hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_captures_named_layers_with_their_shapes(small_model):
    x = torch.randn(2, 3, 64, 64)
    with capture_activations(small_model, ["backbone.conv1", "backbone.bn4_1"]) as saved:
        small_model(x)
    assert saved["backbone.conv1"].shape == (2, 4, 64, 64)
    assert saved["backbone.bn4_1"].shape == (2, 32, 8, 8)
    assert not saved["backbone.conv1"].requires_grad


def test_saved_activation_is_a_clone_not_a_view(small_model):
    """An in-place op after the layer must not change what was saved."""
    x = torch.randn(1, 3, 32, 32)
    with capture_activations(small_model, ["backbone.bn1"]) as saved:
        out = small_model.backbone.bn1(small_model.backbone.conv1(x))
    before = saved["backbone.bn1"].clone()
    out.relu_()
    assert torch.equal(saved["backbone.bn1"], before)
    assert saved["backbone.bn1"].min() < 0


def test_hooks_removed_after_normal_exit_and_after_an_error(small_model):
    with capture_activations(small_model, ["backbone.conv1"]):
        assert _hook_count(small_model) == 1
    assert _hook_count(small_model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with capture_activations(small_model, ["backbone.conv1", "backbone.bn5_2"]):
            raise RuntimeError("boom")
    assert _hook_count(small_model) == 0


def test_unknown_layer_is_a_clear_error_and_registers_nothing(small_model):
    with pytest.raises(ValueError, match="no layer named"):
        with capture_activations(small_model, ["backbone.conv1", "backbone.conv9"]):
            pass
    assert _hook_count(small_model) == 0
    with pytest.raises(TypeError, match="sequence"):
        with capture_activations(small_model, "backbone.conv1"):
            pass


def test_undetached_capture_gives_the_gradient_wrt_the_activation(small_model):
    """d s / d A through the saved clone equals the gradient computed by splitting the model by hand."""
    x = torch.randn(1, 3, 64, 64)
    with capture_activations(small_model, ["backbone.relu5_2"], detach=False) as saved:
        score = small_model(x)[0, 2]
    (grad,) = torch.autograd.grad(score, saved["backbone.relu5_2"])
    # for a GAP + linear head, d s_c / d A_kij = w_ck / (h * w) at every position
    h, w = grad.shape[-2:]
    expected = (small_model.fc.weight[2] / (h * w)).view(1, -1, 1, 1).expand_as(grad)
    torch.testing.assert_close(grad, expected)
