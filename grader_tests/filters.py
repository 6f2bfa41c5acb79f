"""Reference implementations and hidden checks of notebook ``03_filters``. Instructor-only: never released.

Conventions (stated in the notebook):

* ``get_conv1_filters(model)`` returns the **values** of ``model.backbone.conv1.weight`` in PyTorch's layout
  ``(K, C_in, kh, kw)``. A view (the seed's ``.data``, or ``.detach()``) and a copy (``.detach().clone()``) are
  both accepted: the task is to *read* the right weights, and whether a view is dangerous depends on what the
  caller does with it later. That is why the notebook teaches "clone before you modify" where the modification
  happens. What *is* graded: right layer, right layout, right values, and the model left unchanged by the call.
* ``achromatic_share(filters)`` of a filter ``W_k (C, kh, kw)`` is the share of its energy in its channel mean::

      a_k = C * sum_uv mean_c(W_k)[u, v]^2 / sum_cuv W_k[c, u, v]^2     in [0, 1]

  1 for a pure brightness filter (identical channels), 0 for a colour-opponent one (channels sum to zero at
  every pixel), and 1/C in expectation for i.i.d. random weights.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from .common import HIDDEN_SEED, assert_tensor_close, hidden_model
from .recording import Observations, Recorded, call, hidden_check, returned

# --- references -----------------------------------------------------------------------------------------


def conv1_filters(model: nn.Module) -> torch.Tensor:
    """``model.backbone.conv1``'s weights ``(K, C_in, kh, kw)``, detached and copied."""
    return model.get_submodule("backbone.conv1").weight.detach().clone()


def achromatic_share(filters: torch.Tensor) -> torch.Tensor:
    """``(K, C, kh, kw) -> (K,)``: the share of each filter's energy in its channel mean (see the module doc)."""
    if filters.dim() != 4:
        raise ValueError(f"expected filters (K, C, kh, kw), got shape {tuple(filters.shape)}")
    channel_mean = filters.mean(dim=1)  # (K, kh, kw)
    grey_energy = filters.shape[1] * channel_mean.pow(2).sum(dim=(1, 2))
    total = filters.pow(2).sum(dim=(1, 2, 3))
    return torch.where(total > 0, grey_energy / total.clamp_min(torch.finfo(filters.dtype).tiny), torch.zeros_like(total))


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


def _hidden_models() -> list[tuple[str, nn.Module]]:
    return [
        ("a random course model of width 1/16 (4 filters)", hidden_model()),
        ("a float64 course model of width 1/4 (16 filters)", hidden_model(width=1 / 4, seed=HIDDEN_SEED + 2, dtype=torch.float64)),
        ("a small non-VGG model whose conv1 has 5 filters of 3x5", _rectangular_model()),
    ]


# --- checks ---------------------------------------------------------------------------------------------


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers, copied (the probe's record after the call; the judge's before)."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _assert_unchanged(after: dict[str, torch.Tensor], before: dict[str, torch.Tensor], what: str) -> None:
    for name, value in after.items():
        if name not in before or not torch.equal(value, before[name]):
            raise AssertionError(
                f"calling {what} changed the model's `{name}`: read the weights, do not modify them in place"
            )


def _is_permutation_of(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """True when ``actual`` holds ``expected``'s numbers with some axes swapped (same shape, other order)."""
    actual = actual.detach().to(expected.dtype)
    for order in itertools.permutations(range(expected.dim())):
        if order == tuple(range(expected.dim())):
            continue
        permuted = expected.permute(order)
        if permuted.shape == actual.shape and torch.allclose(actual, permuted):
            return True
    return False


def _probe_get_conv1_filters(get_conv1_filters: Callable[[nn.Module], torch.Tensor]) -> Observations:
    cases = []
    for _, model in _hidden_models():
        outcome = call(get_conv1_filters, model)
        cases.append({"call": outcome, "state": _state(model)})
    return {"cases": cases}


@hidden_check(_probe_get_conv1_filters)
def check_get_conv1_filters(observations: Observations) -> None:
    """The student's ``get_conv1_filters`` returns conv1's weights on models it never saw, and changes nothing."""
    for (what, model), seen in zip(_hidden_models(), observations["cases"], strict=True):
        expected = conv1_filters(model)
        actual = returned(seen["call"], f"get_conv1_filters on {what}")
        _assert_unchanged(seen["state"], _state(model), "get_conv1_filters")
        try:
            assert_tensor_close(actual, expected, f"get_conv1_filters on {what}")
        except AssertionError:
            tensor = actual.tensor if isinstance(actual, Recorded) else None
            if tensor is not None and tensor.numel() == expected.numel() and _is_permutation_of(tensor, expected):
                raise AssertionError(
                    f"get_conv1_filters on {what} returns the right numbers with its axes reordered (shape "
                    f"{tuple(tensor.shape)}): keep PyTorch's layout (out_channels, in_channels, kh, kw)"
                ) from None
            raise


def _hidden_filters() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(HIDDEN_SEED)
    return [
        ("6 random 3x3 filters", torch.randn(6, 3, 3, 3, generator=g)),
        ("4 random float64 5x5 filters", torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)),
        ("3 random 1x7 filters with unequal channel scales", torch.randn(3, 3, 1, 7, generator=g) * torch.tensor([3.0, 1.0, 0.2]).view(1, 3, 1, 1)),
        ("the conv1 filters of a model you have not seen", conv1_filters(hidden_model(width=1 / 4, seed=HIDDEN_SEED + 3))),
    ]


def _known_filters() -> list[tuple[str, torch.Tensor, float]]:
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


def _probe_achromatic_share(achromatic_share_fn: Callable[[torch.Tensor], torch.Tensor]) -> Observations:
    known = [call(achromatic_share_fn, filters) for _, filters, _ in _known_filters()]
    hidden = []
    for _, given in _hidden_filters():
        outcome = call(achromatic_share_fn, given)
        hidden.append({"call": outcome, "given": given.detach().clone()})
    return {"known": known, "hidden": hidden}


@hidden_check(_probe_achromatic_share)
def check_achromatic_share(observations: Observations) -> None:
    """The student's ``achromatic_share`` matches the definition on filters it never saw, without changing them."""
    for (what, filters, value), outcome in zip(_known_filters(), observations["known"], strict=True):
        actual = returned(outcome, f"achromatic_share on {what}")
        expected = torch.full((len(filters),), value, dtype=filters.dtype)
        tensor = actual.tensor if isinstance(actual, Recorded) else None
        comparable = tensor is not None and tensor.shape == expected.shape and tensor.is_floating_point()
        if comparable and not torch.allclose(tensor.to(expected.dtype), expected, atol=1e-5):
            got = ", ".join(f"{v:.3f}" for v in tensor.flatten().tolist())
            raise AssertionError(f"achromatic_share on {what} should be {value:g} for every filter, got {got}")
        assert_tensor_close(actual, expected, f"achromatic_share on {what}")
    for (what, filters), seen in zip(_hidden_filters(), observations["hidden"], strict=True):
        actual = returned(seen["call"], f"achromatic_share on {what}")
        if not torch.equal(seen["given"], filters):
            raise AssertionError(f"achromatic_share changed the filters it was given ({what}): do not modify them in place")
        assert_tensor_close(actual, achromatic_share(filters), f"achromatic_share on {what}")
