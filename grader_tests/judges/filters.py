"""Reference implementations of notebook ``03_filters`` and the judges of its hidden checks. Instructor-only: never
released.

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

The probes of :mod:`grader_tests.kernel.filters` record what the student's functions returned on unseen models
and filters, and what the calls left behind; the judges here compare with the references.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from grader_tests.kernel.filters import hidden_filters, hidden_models, known_filters, state
from grader_tests.kernel.record import Observations

from . import judge
from .common import assert_tensor_close
from .records import Recorded, returned

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


# --- judges ---------------------------------------------------------------------------------------------


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


@judge
def check_get_conv1_filters(observations: Observations) -> None:
    """The student's ``get_conv1_filters`` returns conv1's weights on models it never saw, and changes nothing."""
    for (what, model), seen in zip(hidden_models(), observations["cases"], strict=True):
        expected = conv1_filters(model)
        actual = returned(seen["call"], f"get_conv1_filters on {what}")
        _assert_unchanged(seen["state"], state(model), "get_conv1_filters")
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


@judge
def check_achromatic_share(observations: Observations) -> None:
    """The student's ``achromatic_share`` matches the definition on filters it never saw, without changing them."""
    for (what, filters, value), outcome in zip(known_filters(), observations["known"], strict=True):
        actual = returned(outcome, f"achromatic_share on {what}")
        expected = torch.full((len(filters),), value, dtype=filters.dtype)
        tensor = actual.tensor if isinstance(actual, Recorded) else None
        comparable = tensor is not None and tensor.shape == expected.shape and tensor.is_floating_point()
        if comparable and not torch.allclose(tensor.to(expected.dtype), expected, atol=1e-5):
            got = ", ".join(f"{v:.3f}" for v in tensor.flatten().tolist())
            raise AssertionError(f"achromatic_share on {what} should be {value:g} for every filter, got {got}")
        assert_tensor_close(actual, expected, f"achromatic_share on {what}")
    for (what, filters), seen in zip(hidden_filters(), observations["hidden"], strict=True):
        actual = returned(seen["call"], f"achromatic_share on {what}")
        if not torch.equal(seen["given"], filters):
            raise AssertionError(f"achromatic_share changed the filters it was given ({what}): do not modify them in place")
        assert_tensor_close(actual, achromatic_share(filters), f"achromatic_share on {what}")
