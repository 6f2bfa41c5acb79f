"""VGG-11 with the layer names of the assignment (``model.backbone.conv1`` ... ``bn5_2``).

Three models share one backbone:

* :class:`VGG11Backbone`: the convolutional part, an ``nn.Sequential`` whose children carry the assignment's
  names (``conv1, bn1, relu1, pool1, conv2, ..., conv5_2, bn5_2, relu5_2, pool5``).
* :class:`VGG11Classification`: the assignment's full model, backbone + ``512*7*7 -> 4096 -> 4096 -> classes``.
  Kept as an architecture (parameter counting, ImageNet weights), not embedded: it has 132,868,840 parameters.
* :class:`VGG11GAP`: the embedded course model, backbone without ``pool5`` + global average pooling + one
  linear layer. For this head CAM is exact: ``s_c = mean_xy(sum_k w_ck A_k(x, y)) + b_c``.

Every ReLU is its own ``nn.ReLU(inplace=False)`` module. In-place ReLUs overwrite the tensor a forward hook
saved (the hooked BN output *is* the ReLU's input), and break full backward hooks; separate modules also let
guided backpropagation and hooks find each ReLU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .copying import deepcopy_module

VGG11_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
"""Output channels of each conv layer at full width; ``"M"`` is a 2x2 max-pool (as in the assignment)."""

LAYER_NAMES: tuple[str, ...] = ("1", "2", "3_1", "3_2", "4_1", "4_2", "5_1", "5_2")
"""Suffixes of the eight conv blocks: ``conv1``, ``conv2``, ``conv3_1`` ... ``conv5_2``."""


def _scaled(channels: int, width: float) -> int:
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(1, round(channels * width))


class VGG11Backbone(nn.Sequential):
    """The VGG-11 feature extractor with BatchNorm: ``(N, in_channels, H, W) -> (N, C, H/32, W/32)``.

    Children, in order: ``conv1, bn1, relu1, pool1, conv2, bn2, relu2, pool2, conv3_1, bn3_1, relu3_1,
    conv3_2, bn3_2, relu3_2, pool3, ..., conv5_2, bn5_2, relu5_2[, pool5]``.

    Args:
        in_channels: channels of the input image.
        width: multiplier of every conv layer's channels (1.0 is the assignment's 64 ... 512).
        final_pool: keep ``pool5``. Without it the output is ``H/16`` and equals ``relu5_2``'s output.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0, final_pool: bool = True) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        names = iter(LAYER_NAMES)
        channels = in_channels
        block = ""
        for item in VGG11_CONFIG:
            if item == "M":
                layers[f"pool{block[0]}"] = nn.MaxPool2d(kernel_size=2, stride=2)
                continue
            block = next(names)
            out = _scaled(int(item), width)
            layers[f"conv{block}"] = nn.Conv2d(channels, out, kernel_size=3, padding=1)
            layers[f"bn{block}"] = nn.BatchNorm2d(out)
            layers[f"relu{block}"] = nn.ReLU(inplace=False)
            channels = out
        if not final_pool:
            del layers["pool5"]
        super().__init__(layers)
        self.out_channels = channels
        self.width = width

    __deepcopy__ = deepcopy_module


class VGG11Classification(nn.Module):
    """The assignment's VGG-11: backbone, flatten, ``C*7*7 -> 4096 -> 4096 -> num_classes`` with dropout.

    ``(N, 3, H, W) -> (N, num_classes)`` logits. An ``AdaptiveAvgPool2d((7, 7))`` before the flatten (as in
    torchvision) is the identity at 224x224 and lets other sizes through. The hidden width scales with
    ``width`` too, so ``width=1`` is the assignment's model exactly.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.backbone = VGG11Backbone(in_channels, width)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = _scaled(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(self.backbone.out_channels * 7 * 7, hidden),
            nn.ReLU(inplace=False),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=False),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.backbone(x))
        return self.classifier(torch.flatten(x, 1))

    __deepcopy__ = deepcopy_module


class VGG11GAP(nn.Module):
    """The course model: VGG-11 backbone without ``pool5``, global average pooling, one linear layer.

    ``(N, 3, H, W) -> (N, num_classes)`` logits. At 224x224 the last feature map (``bn5_2`` / ``relu5_2``)
    is 14x14. With ``A = relu5_2`` output, ``w = fc.weight`` and ``b = fc.bias``::

        s_c = w_c . mean_xy A + b_c = mean_xy CAM_c(x, y) + b_c,   CAM_c = sum_k w_ck A_k
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.backbone = VGG11Backbone(in_channels, width, final_pool=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.gap(self.backbone(x)), 1))

    __deepcopy__ = deepcopy_module  # copy.deepcopy(model): quicker, the same copy (helpers.copying)


def torchvision_to_course_names(state_dict: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename a torchvision ``vgg11_bn`` state dict to :class:`VGG11Classification` keys.

    ``features.0.weight -> backbone.conv1.weight``, ``features.1.running_mean -> backbone.bn1.running_mean``,
    ``classifier.k.* -> classifier.k.*``. Raises ``KeyError`` on a key that is not part of ``vgg11_bn``.
    """
    index_to_name = _torchvision_feature_names()
    renamed: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        prefix, _, rest = key.partition(".")
        if prefix == "features":
            index, _, param = rest.partition(".")
            if index not in index_to_name:
                raise KeyError(f"{key!r} is not a vgg11_bn feature layer with parameters")
            renamed[f"backbone.{index_to_name[index]}.{param}"] = value
        elif prefix == "classifier":
            renamed[key] = value
        else:
            raise KeyError(f"{key!r} is not a vgg11_bn key")
    return renamed


def course_to_torchvision_names(state_dict: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """The inverse of :func:`torchvision_to_course_names`."""
    name_to_index = {name: index for index, name in _torchvision_feature_names().items()}
    renamed: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            name, _, param = key.removeprefix("backbone.").partition(".")
            renamed[f"features.{name_to_index[name]}.{param}"] = value
        else:
            renamed[key] = value
    return renamed


def _torchvision_feature_names() -> dict[str, str]:
    """``{"0": "conv1", "1": "bn1", "4": "conv2", ...}``: torchvision's ``vgg11_bn.features`` indices."""
    names = list(VGG11Backbone(width=1 / 64).named_children())
    return {str(i): name for i, (name, module) in enumerate(names) if isinstance(module, (nn.Conv2d, nn.BatchNorm2d))}


def layer_names(model: nn.Module, kinds: Sequence[type[nn.Module]] = (nn.Conv2d,)) -> list[str]:
    """Names (as in ``model.get_submodule``) of the modules of the given kinds, in forward order."""
    return [name for name, module in model.named_modules() if isinstance(module, tuple(kinds))]
