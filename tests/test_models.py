import pytest
import torch
import torchvision
from torch import nn

from helpers.hooks import capture_activations
from helpers.models import (
    VGG11Backbone,
    VGG11Classification,
    VGG11GAP,
    course_to_torchvision_names,
    torchvision_to_course_names,
)
from helpers.pretrained import load_imagenet_vgg11

SEED_NAMES = ["conv1", "bn1", "conv2", "bn2", "conv3_1", "bn3_1", "conv3_2", "bn3_2",
              "conv4_1", "bn4_1", "conv4_2", "bn4_2", "conv5_1", "bn5_1", "conv5_2", "bn5_2"]


def test_seed_layer_names_are_attributes_of_the_backbone():
    backbone = VGG11GAP(6, width=1 / 8).backbone
    for name in SEED_NAMES:
        kind = nn.Conv2d if name.startswith("conv") else nn.BatchNorm2d
        assert isinstance(getattr(backbone, name), kind)


def test_relus_are_separate_modules_and_not_inplace():
    relus = [m for m in VGG11Classification(width=1 / 16).modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 10 and len({id(m) for m in relus}) == 10
    assert not any(m.inplace for m in relus)


def test_full_width_channels_follow_the_seed_config():
    convs = [m for m in VGG11Backbone().modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]


def test_feature_map_sizes_at_224():
    model = VGG11GAP(6, width=1 / 16).eval()
    x = torch.zeros(1, 3, 224, 224)
    with capture_activations(model, ["backbone.bn5_2"]) as saved:
        assert model(x).shape == (1, 6)
    assert saved["backbone.bn5_2"].shape[-2:] == (14, 14)
    assert VGG11Backbone(width=1 / 16)(x).shape[-2:] == (7, 7)


def test_full_model_matches_torchvision_parameter_count():
    ours = sum(p.numel() for p in VGG11Classification().parameters())
    theirs = sum(p.numel() for p in torchvision.models.vgg11_bn(weights=None).parameters())
    assert ours == theirs == 132_868_840


def test_torchvision_mapping_round_trip_and_same_outputs():
    reference = torchvision.models.vgg11_bn(weights=None, num_classes=10).eval()
    for module in reference.modules():  # non-trivial BN statistics, so a swapped key would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = reference.state_dict()
    mapped = torchvision_to_course_names(state)
    assert list(course_to_torchvision_names(mapped)) == list(state)
    ours = VGG11Classification(num_classes=10).eval()
    ours.load_state_dict(mapped)  # strict: every key must match
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_unknown_torchvision_key_is_rejected():
    with pytest.raises(KeyError, match="features.2"):
        torchvision_to_course_names({"features.2.weight": torch.zeros(1)})


def test_load_imagenet_vgg11_from_a_local_file(tmp_path):
    reference = torchvision.models.vgg11_bn(weights=None).eval()
    path = tmp_path / "vgg11_bn.pth"
    torch.save(reference.state_dict(), path)
    model = load_imagenet_vgg11(path)
    assert not model.training
    torch.testing.assert_close(model.backbone.conv1.weight, reference.features[0].weight)
    torch.testing.assert_close(model.backbone.bn5_2.running_var, reference.features[26].running_var)
