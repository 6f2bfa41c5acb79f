"""The references of notebook 03_filters are right, and its hidden checks accept correct answers and reject wrong ones."""

import numpy as np
import pytest
import torch
from torch import nn

from grader_tests.judges import filters as grader
from grader_tests.kernel import filters as probes
from grader_tests.kernel.inputs import hidden_model
from helpers.models import VGG11GAP

# --- the references -------------------------------------------------------------------------------------


def test_conv1_filters_are_a_copy_of_the_first_layers_weights():
    model = VGG11GAP(6, width=1 / 8)
    filters = grader.conv1_filters(model)
    assert filters.shape == (8, 3, 3, 3)
    assert torch.equal(filters, model.backbone[0].weight)  # the first child of the Sequential backbone
    assert not filters.requires_grad
    assert filters.data_ptr() != model.backbone.conv1.weight.data_ptr()
    filters.zero_()
    assert model.backbone.conv1.weight.abs().sum() > 0


@pytest.mark.parametrize(
    ("pixel", "share"),
    [((1.0, 1.0, 1.0), 1.0), ((1.0, -1.0, 0.0), 0.0), ((1.0, 0.0, 0.0), 1 / 3), ((2.0, 1.0, 0.0), 0.6), ((0.0, 0.0, -4.0), 1 / 3)],
)
def test_achromatic_share_of_one_pixel_filters_by_hand(pixel, share):
    """One 1x1 filter (r, g, b): share = 3 * mean^2 / (r^2 + g^2 + b^2)."""
    filters = torch.tensor(pixel).view(1, 3, 1, 1)
    assert grader.achromatic_share(filters).item() == pytest.approx(share, abs=1e-7)


def test_achromatic_share_is_the_energy_of_the_projection_on_grey_filters():
    """Independent formula: project each flattened filter with P = (1/3) 1 1^T (x) I_{kh kw}."""
    filters = torch.randn(5, 3, 4, 2, dtype=torch.float64)
    projection = torch.kron(torch.full((3, 3), 1 / 3, dtype=torch.float64), torch.eye(8, dtype=torch.float64))
    flat = filters.flatten(1)  # (K, 3 * kh * kw), channel-major like the projection
    expected = (flat @ projection).pow(2).sum(1) / flat.pow(2).sum(1)
    torch.testing.assert_close(grader.achromatic_share(filters), expected)


def test_achromatic_share_of_random_filters_is_one_third_on_average():
    """For i.i.d. weights the channel mean holds 9 of the 27 equally loaded dimensions."""
    filters = torch.randn(4000, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    assert grader.achromatic_share(filters).mean().item() == pytest.approx(1 / 3, abs=0.01)


def test_achromatic_share_is_scale_invariant_and_zero_for_a_zero_filter():
    filters = torch.randn(3, 3, 3, 3)
    torch.testing.assert_close(grader.achromatic_share(7.5 * filters), grader.achromatic_share(filters))
    assert grader.achromatic_share(torch.zeros(2, 3, 3, 3)).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="expected filters"):
        grader.achromatic_share(torch.zeros(3, 3, 3))


# --- check_get_conv1_filters ----------------------------------------------------------------------------

CORRECT_GETTERS = {
    "reference": grader.conv1_filters,
    "seed: .weight.data (a view)": lambda m: m.backbone.conv1.weight.data,
    "detach().clone()": lambda m: m.backbone.conv1.weight.detach().clone(),
    "get_submodule(...).weight (a Parameter)": lambda m: m.get_submodule("backbone.conv1").weight,
    "state_dict entry": lambda m: m.state_dict()["backbone.conv1.weight"],
    "first child of the backbone": lambda m: m.backbone[0].weight.detach(),
    "named_parameters": lambda m: dict(m.named_parameters())["backbone.conv1.weight"].detach(),
}


@pytest.mark.parametrize("getter", CORRECT_GETTERS.values(), ids=CORRECT_GETTERS.keys())
def test_check_get_conv1_filters_accepts_correct_answers(getter):
    probes.check_get_conv1_filters(getter)


def _normalise_in_place(model):
    weights = model.backbone.conv1.weight.data
    weights -= weights.min()
    weights /= weights.max()
    return weights


def _not_implemented(model):
    raise NotImplementedError


_FIXED = VGG11GAP(6, width=1 / 8).backbone.conv1.weight.detach().clone()

WRONG_GETTERS = {
    "conv2's weights": (lambda m: m.backbone.conv2.weight.data, "has shape"),
    "channels last (K, kh, kw, C)": (lambda m: m.backbone.conv1.weight.data.permute(0, 2, 3, 1), "axes reordered"),
    "kernel transposed": (lambda m: m.backbone.conv1.weight.data.transpose(2, 3), "axes reordered"),
    "filters and channels swapped": (lambda m: m.backbone.conv1.weight.data.transpose(0, 1), "axes reordered"),
    "the bias": (lambda m: m.backbone.conv1.bias.data, "has shape"),
    "BGR instead of RGB": (lambda m: m.backbone.conv1.weight.data[:, [2, 1, 0]], "wrong values"),
    "flattened": (lambda m: m.backbone.conv1.weight.data.flatten(1), "has shape"),
    "a numpy array": (lambda m: m.backbone.conv1.weight.detach().numpy(), "torch.Tensor"),
    "the gradient (None)": (lambda m: m.backbone.conv1.weight.grad, "torch.Tensor"),
    "hard-coded filters of another model": (lambda m: _FIXED, "has shape"),
    "normalised in place": (_normalise_in_place, "do not modify"),
    "stub": (_not_implemented, "not implemented yet"),
}


@pytest.mark.parametrize(("getter", "message"), WRONG_GETTERS.values(), ids=WRONG_GETTERS.keys())
def test_check_get_conv1_filters_rejects_wrong_answers(getter, message):
    with pytest.raises(AssertionError, match=message) as failure:
        probes.check_get_conv1_filters(getter)
    for revealing in ("weight.data", "detach()", "get_submodule", "backbone.conv1.weight"):
        if message != "do not modify":
            assert revealing not in str(failure.value)


def test_hard_coded_filters_of_the_same_width_are_rejected_by_value():
    """The float64 width-1/4 model has 16 filters; a width-1/16 answer of the right shape still fails by value."""
    fixed = hidden_model(seed=1).backbone.conv1.weight.detach().clone()
    with pytest.raises(AssertionError, match="wrong values"):
        probes.check_get_conv1_filters(lambda m: fixed)


# --- check_achromatic_share -----------------------------------------------------------------------------


def _loop(filters):
    shares = []
    for w in filters:
        grey = w.mean(0)
        shares.append(3 * (grey**2).sum() / (w**2).sum())
    return torch.stack(shares)


def _via_numpy(filters):
    w = filters.detach().numpy()
    grey = np.broadcast_to(w.mean(axis=1, keepdims=True), w.shape)
    return torch.from_numpy((grey**2).sum(axis=(1, 2, 3)) / (w**2).sum(axis=(1, 2, 3)))


CORRECT_SHARES = {
    "reference": grader.achromatic_share,
    "projection expanded over channels": lambda f: f.mean(1, keepdim=True).expand_as(f).pow(2).sum((1, 2, 3)) / f.pow(2).sum((1, 2, 3)),
    "one minus the colour part": lambda f: 1 - (f - f.mean(1, keepdim=True)).pow(2).sum((1, 2, 3)) / f.pow(2).sum((1, 2, 3)),
    "loop over filters": _loop,
    "numpy": _via_numpy,
    "in float64": lambda f: grader.achromatic_share(f.double()),
    "einsum": lambda f: 3 * torch.einsum("khw,khw->k", f.mean(1), f.mean(1)) / torch.einsum("kchw,kchw->k", f, f),
}


@pytest.mark.parametrize("share", CORRECT_SHARES.values(), ids=CORRECT_SHARES.keys())
def test_check_achromatic_share_accepts_correct_answers(share):
    probes.check_achromatic_share(share)


def _centre_in_place(filters):
    share = grader.achromatic_share(filters)
    filters -= filters.mean(1, keepdim=True)
    return share


def _stub(filters):
    raise NotImplementedError


WRONG_SHARES = {
    "the colour part's share": (lambda f: 1 - grader.achromatic_share(f), "should be 1"),
    "without the factor 3": (lambda f: grader.achromatic_share(f) / 3, "should be 1"),
    "spatial mean instead of channel mean": (lambda f: f.mean((2, 3)).pow(2).sum(1) * 9 / f.pow(2).sum((1, 2, 3)), "should be 1"),
    "absolute values instead of squares": (lambda f: 3 * f.mean(1).abs().sum((1, 2)) / f.abs().sum((1, 2, 3)), "wrong values"),
    "averaged over the filters": (lambda f: grader.achromatic_share(f).mean(), "has shape"),
    "assumes 3x3 kernels": (lambda f: 3 * f.mean(1).view(-1, 9).pow(2).sum(1) / f.view(-1, 27).pow(2).sum(1), "raised"),
    "modifies its input": (_centre_in_place, "do not modify"),
    "stub": (_stub, "not implemented yet"),
}


@pytest.mark.parametrize(("share", "message"), WRONG_SHARES.values(), ids=WRONG_SHARES.keys())
def test_check_achromatic_share_rejects_wrong_answers(share, message):
    with pytest.raises(AssertionError, match=message):
        probes.check_achromatic_share(share)


def test_check_achromatic_share_rejects_a_formula_right_only_on_the_known_filters():
    """Right for identical channels (1) and for zero-sum channels (0), wrong in between: caught on random filters."""

    def thresholded(filters):
        return (grader.achromatic_share(filters) > 0.5).to(filters.dtype)

    with pytest.raises(AssertionError, match="wrong values"):
        probes.check_achromatic_share(thresholded)


def test_hidden_inputs_are_not_the_notebooks():
    """The checks use models and filters the student never saw: other widths, dtypes, kernel shapes."""
    shapes = {tuple(grader.conv1_filters(model).shape) for _, model in probes.hidden_models()}
    assert shapes == {(4, 3, 3, 3), (16, 3, 3, 3), (5, 3, 3, 5)}
    dtypes = {model.backbone.conv1.weight.dtype for _, model in probes.hidden_models()}
    assert dtypes == {torch.float32, torch.float64}
    assert isinstance(probes._rectangular_model().backbone.conv1, nn.Conv2d)


def test_the_unseen_conv1_filters_are_those_of_the_hidden_model():
    """The kernel builds the last hidden filters without reading a model's conv1 (that would be the answer of
    get_conv1_filters); they are exactly the conv1 filters of the hidden model they stand for."""
    description, filters = probes.hidden_filters()[-1]
    assert description == "the conv1 filters of a model you have not seen"
    expected = grader.conv1_filters(hidden_model(width=1 / 4, seed=probes.HIDDEN_SEED + 3))
    assert filters.dtype == expected.dtype and torch.equal(filters, expected)
