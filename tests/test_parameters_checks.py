"""The references of notebook 02_parameters are right, and its hidden checks accept correct and reject wrong work."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models as tv

from grader_tests.judges import parameters as pm
from grader_tests.kernel import parameters as probes
from helpers.models import VGG11_CONFIG, VGG11Classification, VGG11GAP

VGG11_BN_PARAMS = 132_868_840
"""torchvision's vgg11_bn for 1000 classes (the published figure)."""
VGG11_PARAMS = 132_863_336
"""torchvision's vgg11 without BatchNorm."""


def _meta(factory):
    with torch.device("meta"):
        return factory()


# --- the references against independent counts --------------------------------------------------------------


def test_full_vgg11_count_matches_torchvision() -> None:
    seed_model = _meta(lambda: VGG11Classification(num_classes=1000))
    torchvision_bn = _meta(lambda: tv.vgg11_bn(weights=None))
    torchvision_plain = _meta(lambda: tv.vgg11(weights=None))
    assert pm.get_module_params_num(seed_model) == VGG11_BN_PARAMS
    assert pm.get_module_params_num(torchvision_bn) == VGG11_BN_PARAMS
    assert pm.get_module_params_num(torchvision_plain) == VGG11_PARAMS


def test_classifier_share_is_what_the_notebook_says() -> None:
    vgg = _meta(lambda: VGG11Classification(num_classes=1000))
    classifier = pm.get_module_params_num(vgg.classifier)
    assert classifier == 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert round(classifier / VGG11_BN_PARAMS, 3) == 0.931
    assert round(pm.get_module_params_num(vgg.classifier[0]) / VGG11_BN_PARAMS, 3) == 0.773


def test_formulas_match_the_layers() -> None:
    for c_in, c_out, k, bias in [(3, 64, 3, True), (5, 7, 1, False), (16, 8, 5, True)]:
        conv = nn.Conv2d(c_in, c_out, k, bias=bias)
        assert pm.conv2d_params(c_in, c_out, k, bias) == sum(p.numel() for p in conv.parameters())
    for n_in, n_out, bias in [(25088, 4096, True), (10, 3, False), (64, 6, True)]:
        layer = _meta(lambda: nn.Linear(n_in, n_out, bias=bias))  # noqa: B023 - called at once
        assert pm.linear_params(n_in, n_out, bias) == math.prod(layer.weight.shape) + (n_out if bias else 0)


def test_formulas_predict_vgg11_from_its_config() -> None:
    predicted, channels = 0, 3
    for item in VGG11_CONFIG:
        if item != "M":
            predicted += pm.conv2d_params(channels, item, 3) + 2 * item
            channels = item
    predicted += pm.linear_params(channels * 7 * 7, 4096) + pm.linear_params(4096, 4096) + pm.linear_params(4096, 1000)
    assert predicted == VGG11_BN_PARAMS


def test_course_model_head_has_390_parameters() -> None:
    model = VGG11GAP(6, width=1 / 8)
    assert pm.get_module_params_num(model.fc) == pm.linear_params(64, 6) == 390
    assert pm.get_module_params_num(model) == 145_638


def test_reference_counts_frozen_and_shared_parameters_but_not_buffers() -> None:
    conv = nn.Conv2d(2, 3, 3)
    conv.requires_grad_(False)
    assert pm.get_module_params_num(conv) == 3 * 2 * 9 + 3
    assert pm.get_module_params_num(nn.BatchNorm2d(5)) == 10
    shared = nn.Linear(4, 4)
    assert pm.get_module_params_num(nn.Sequential(shared, shared)) == 20


# --- student functions: correct alternatives and fabricated mistakes ---------------------------------------


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def count_with_parameters(module):
    return sum(p.numel() for p in module.parameters())


def count_with_numpy(module):
    return np.sum([np.prod(p.shape, dtype=np.int64) for _, p in module.named_parameters()], dtype=np.int64)


def count_with_tensor(module):
    return torch.tensor([p.nelement() for p in module.parameters()] or [0]).sum()


def count_weights_only(module):
    return sum(p.numel() for name, p in module.named_parameters() if name.endswith("weight"))


def count_trainable_only(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_state_dict(module):
    return sum(t.numel() for t in module.state_dict().values())


def count_tensors(module):
    return len(list(module.parameters()))


def count_children_recursively(module):
    own = sum(p.numel() for p in module.parameters(recurse=False))
    return own + sum(count_children_recursively(child) for child in module.children())


def count_shared_twice(module):
    return sum(p.numel() for _, p in module.named_parameters(remove_duplicate=False))


def count_as_float(module):
    return float(sum(p.numel() for p in module.parameters()))


def count_direct_only(module):
    return sum(p.numel() for p in module.parameters(recurse=False))


@pytest.mark.parametrize(
    "student",
    [pm.get_module_params_num, count_with_parameters, count_with_numpy, count_with_tensor, count_children_recursively],
)
def test_check_get_module_params_num_accepts(student) -> None:
    probes.check_get_module_params_num(student)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (not_implemented, "not implemented"),
        (count_weights_only, "wrong count"),
        (count_trainable_only, "frozen"),
        (count_state_dict, "wrong count"),
        (count_tensors, "wrong count"),
        (count_shared_twice, "uses one Linear layer twice"),
        (count_as_float, "integer"),
        (count_direct_only, "wrong count"),
    ],
)
def test_check_get_module_params_num_rejects(student, message) -> None:
    with pytest.raises(AssertionError, match=message):
        probes.check_get_module_params_num(student)


def conv_from_module(in_channels, out_channels, kernel_size, bias=True):
    with torch.device("meta"):
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
    return sum(p.numel() for p in conv.parameters())


def conv_with_numpy(in_channels, out_channels, kernel_size, bias=True):
    return np.int64(out_channels) * in_channels * kernel_size**2 + out_channels * int(bias)


def conv_no_bias_ever(in_channels, out_channels, kernel_size, bias=True):
    return out_channels * in_channels * kernel_size * kernel_size


def conv_bias_always(in_channels, out_channels, kernel_size, bias=True):
    return out_channels * in_channels * kernel_size * kernel_size + out_channels


def conv_kernel_not_squared(in_channels, out_channels, kernel_size, bias=True):
    return out_channels * in_channels * kernel_size + (out_channels if bias else 0)


def conv_forgot_in_channels(in_channels, out_channels, kernel_size, bias=True):
    return out_channels * kernel_size * kernel_size + (out_channels if bias else 0)


def conv_bias_per_input(in_channels, out_channels, kernel_size, bias=True):
    return out_channels * in_channels * kernel_size * kernel_size + (in_channels if bias else 0)


@pytest.mark.parametrize("student", [pm.conv2d_params, conv_from_module, conv_with_numpy])
def test_check_conv2d_params_accepts(student) -> None:
    probes.check_conv2d_params(student)


@pytest.mark.parametrize(
    "student",
    [
        not_implemented, conv_no_bias_ever, conv_bias_always, conv_kernel_not_squared, conv_forgot_in_channels,
        conv_bias_per_input,
    ],
)
def test_check_conv2d_params_rejects(student) -> None:
    with pytest.raises(AssertionError, match="conv2d_params"):
        probes.check_conv2d_params(student)


def linear_from_module(in_features, out_features, bias=True):
    with torch.device("meta"):
        layer = nn.Linear(in_features, out_features, bias=bias)
    return sum(p.numel() for p in layer.parameters())


def linear_bias_always(in_features, out_features, bias=True):
    return in_features * out_features + out_features


def linear_bias_per_input(in_features, out_features, bias=True):
    return in_features * out_features + (in_features if bias else 0)


def linear_sum_not_product(in_features, out_features, bias=True):
    return in_features + out_features + (out_features if bias else 0)


@pytest.mark.parametrize("student", [pm.linear_params, linear_from_module])
def test_check_linear_params_accepts(student) -> None:
    probes.check_linear_params(student)


@pytest.mark.parametrize(
    "student", [not_implemented, linear_bias_always, linear_bias_per_input, linear_sum_not_product]
)
def test_check_linear_params_rejects(student) -> None:
    with pytest.raises(AssertionError, match="linear_params"):
        probes.check_linear_params(student)
