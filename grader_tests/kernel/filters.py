"""Probes of ``03_filters``: the student's ``get_conv1_filters`` on models it never saw (other widths, float64,
a non-VGG model with rectangular filters) and ``achromatic_share`` on filters it never saw. They record what each
call returned, the model's state after ``get_conv1_filters`` and the filters after ``achromatic_share``. Judged in
:mod:`grader_tests.judges.filters`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from .inputs import HIDDEN_SEED, hidden_model
from .record import Observations, call, probe

# --- hidden inputs --------------------------------------------------------------------------------------


class _RectangularNet(nn.Module):
    """Not a VGG: a ``backbone`` whose ``conv1`` has 5 filters of 3x5, so a swapped axis changes the shape."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 5, kernel_size=(3, 5), padding=(1, 2)),
                bn1=nn.BatchNorm2d(5),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(5, 7, kernel_size=3, padding=1),
            )
        )
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.gap(self.backbone(x)), 1))


def _rectangular_model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED + 1)
        return _RectangularNet().eval()


def hidden_models() -> list[tuple[str, nn.Module]]:
    """``(description, model)``: models whose conv1 the student never read."""
    return [
        ("a random course model of width 1/16 (4 filters)", hidden_model()),
        ("a float64 course model of width 1/4 (16 filters)", hidden_model(width=1 / 4, seed=HIDDEN_SEED + 2, dtype=torch.float64)),
        ("a small non-VGG model whose conv1 has 5 filters of 3x5", _rectangular_model()),
    ]


def _unseen_conv1_weight() -> torch.Tensor:
    """The conv1 filters of ``hidden_model(width=1 / 4, seed=HIDDEN_SEED + 3)``, built without the model.

    The course model creates its ``conv1`` (3 -> 16 channels at width 1/4, 3x3) first after seeding, so a lone
    ``Conv2d`` from the same seed holds the same numbers. Built this way so that the kernel holds no answer of
    ``get_conv1_filters`` (the tests check that the two agree)."""
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED + 3)
        return nn.Conv2d(3, 16, kernel_size=3, padding=1).weight.detach().clone()


def hidden_filters() -> list[tuple[str, torch.Tensor]]:
    """``(description, filters)``: filters whose share the student never computed."""
    g = torch.Generator().manual_seed(HIDDEN_SEED)
    return [
        ("6 random 3x3 filters", torch.randn(6, 3, 3, 3, generator=g)),
        ("4 random float64 5x5 filters", torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)),
        ("3 random 1x7 filters with unequal channel scales", torch.randn(3, 3, 1, 7, generator=g) * torch.tensor([3.0, 1.0, 0.2]).view(1, 3, 1, 1)),
        ("the conv1 filters of a model you have not seen", _unseen_conv1_weight()),
    ]


def known_filters() -> list[tuple[str, torch.Tensor, float]]:
    """Filters whose share follows from the definition alone, with what it must be."""
    g = torch.Generator().manual_seed(HIDDEN_SEED + 4)
    pattern = torch.randn(2, 1, 3, 3, generator=g)
    grey = pattern.expand(2, 3, 3, 3).clone()  # identical channels: all energy in the channel mean
    opponent = torch.randn(2, 3, 3, 3, generator=g)
    opponent = opponent - opponent.mean(dim=1, keepdim=True)  # channels sum to zero at every pixel
    return [
        ("filters whose three channels are identical (pure brightness filters)", grey, 1.0),
        ("filters whose channels sum to zero at every pixel (colour-opponent filters)", opponent, 0.0),
    ]


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers, copied (the probe's record after the call; the judge's before)."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


# --- probes ---------------------------------------------------------------------------------------------


@probe
def check_get_conv1_filters(get_conv1_filters: Callable[[nn.Module], torch.Tensor]) -> Observations:
    """``get_conv1_filters`` on models it never saw: each result, and the model's state afterwards."""
    cases = []
    for _, model in hidden_models():
        outcome = call(get_conv1_filters, model)
        cases.append({"call": outcome, "state": state(model)})
    return {"cases": cases}


@probe
def check_achromatic_share(achromatic_share_fn: Callable[[torch.Tensor], torch.Tensor]) -> Observations:
    """``achromatic_share`` on filters of known share and on unseen filters: each result, and the unseen filters
    afterwards."""
    known = [call(achromatic_share_fn, filters) for _, filters, _ in known_filters()]
    hidden = []
    for _, given in hidden_filters():
        outcome = call(achromatic_share_fn, given)
        hidden.append({"call": outcome, "given": given.detach().clone()})
    return {"known": known, "hidden": hidden}
