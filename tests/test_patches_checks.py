"""The references of notebook 07_patches are right (receptive fields against an empirical measurement with input
gradients, patches against an independent crop), and its hidden checks accept correct answers and reject wrong ones
with a message that names the wrong part."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader_tests.judges import patches as grader
from grader_tests.kernel import patches as probes
from helpers.models import VGG11GAP

# --- an independent measurement: the support of d unit / d input in an all-ones twin -----------------------------


def _window(module: nn.Module) -> tuple[int, int, int, int]:
    return _pair(module.kernel_size), _pair(module.stride), _pair(module.padding), _pair(getattr(module, "dilation", 1))


def _measure(windows: list[tuple[str, tuple[int, int, int, int]]], side: int) -> tuple[int, int, int] | None:
    """Size, jump and start of the middle unit of the last window on a ``side x side`` input of ones, or None where
    the input is too small (a kernel larger than a map, or a field that touches the border)."""
    x = torch.ones(2, 1, side, side, dtype=torch.float64, requires_grad=True)
    y = x
    try:
        for _, (k, s, p, d) in windows:
            y = F.conv2d(y, torch.ones(1, 1, k, k, dtype=torch.float64), stride=s, padding=p, dilation=d)
    except RuntimeError:  # the input is smaller than a kernel
        return None
    i = y.shape[-1] // 2
    if i + 1 >= y.shape[-1]:
        return None
    (grad,) = torch.autograd.grad(y[0, 0, i, i] + y[1, 0, i, i + 1], x)
    rows = grad[0, 0].sum(1).nonzero()[:, 0]
    first, second = grad[0, 0].sum(0).nonzero()[:, 0], grad[1, 0].sum(0).nonzero()[:, 0]
    if rows[0] == 0 or rows[-1] == side - 1 or first[0] == 0 or second[-1] == side - 1:
        return None
    jump = int(second[0] - first[0])
    return int(rows[-1] - rows[0]) + 1, jump, int(rows[0]) - i * jump


def measured_fields(layers: list[tuple[str, nn.Module]]) -> list[tuple[str, int, int, int]]:
    """``(name, size, jump, start)`` after each conv / pool layer, read off input gradients.

    Each window layer becomes a one-channel convolution with an all-ones kernel of the same geometry (no bias, no
    nonlinearity), so every path from an input pixel to a unit has a positive weight and the gradient of a unit is
    positive exactly on the pixels it depends on. For the middle unit ``(i, i)``, the span of the positive rows gives
    the size and start; the shift to unit ``(i, i + 1)`` gives the jump. The input grows until the measurement no
    longer changes when it doubles (zero padding of the inner maps cuts a field that comes near their border)."""
    windows = [(name, _window(module)) for name, module in layers if isinstance(module, grader.KERNEL_LAYERS)]
    rows = []
    for depth in range(1, len(windows) + 1):
        side = 32
        while (found := _measure(windows[:depth], side)) is None or found != _measure(windows[:depth], 2 * side):
            side *= 2
            assert side <= 2048, "the field never fit"
        rows.append((windows[depth - 1][0], *found))
    return rows


def _random_stack(seed: int) -> list[tuple[str, nn.Module]]:
    """Random conv / pool layers with random kernels, strides, paddings and dilations, with pointwise layers between."""
    rng = np.random.default_rng(seed)
    layers: list[tuple[str, nn.Module]] = []
    for index in range(int(rng.integers(2, 7))):
        k, s, d = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        p = int(rng.integers(0, (d * (k - 1)) // 2 + 1))
        kind = rng.choice(["conv", "max", "avg"])
        if kind == "conv":
            layers.append((f"conv{index}", nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)))
        elif kind == "max":
            layers.append((f"max{index}", nn.MaxPool2d(k, stride=s, padding=min(p, k // 2), dilation=d)))
        else:
            layers.append((f"avg{index}", nn.AvgPool2d(k, stride=s, padding=min(p, k // 2))))
        layers.append((f"relu{index}", nn.ReLU()))
    return layers


# --- the references ---------------------------------------------------------------------------------------------


def test_alexnet_fields_are_the_published_ones():
    """AlexNet's pool5 units see 195 x 195 pixels, 32 apart (torchvision's feature extractor)."""
    (_, layers), *_ = probes.layer_lists()
    assert grader.receptive_fields(layers)[-1] == ("pool5", 195, 32, -66)


def test_course_model_fields_match_notebook_4():
    """The sizes and jumps notebook 4 printed: conv1 3, bn4_1 46 (jump 8), conv5_2 134 (jump 16)."""
    rows = {name: (size, jump, start) for name, size, jump, start in grader.receptive_fields(
        list(VGG11GAP(6, width=1 / 8).backbone.named_children()))}
    assert rows["conv1"] == (3, 1, -1) and rows["conv4_1"] == (46, 8, -19) and rows["conv5_2"] == (134, 16, -59)
    assert all(start + (size - 1) / 2 == (jump - 1) / 2 for size, jump, start in rows.values())  # centred fields


@pytest.mark.parametrize("index", range(len(probes.LAYER_LISTS)), ids=[what for what, _ in probes.LAYER_LISTS])
def test_reference_fields_are_the_measured_gradient_supports_on_the_hidden_lists(index):
    _, layers = probes.layer_lists()[index]
    assert grader.receptive_fields(layers) == measured_fields(layers)


@pytest.mark.parametrize("seed", range(12))
def test_reference_fields_are_the_measured_gradient_supports_on_random_stacks(seed):
    layers = _random_stack(seed)
    assert grader.receptive_fields(layers) == measured_fields(layers)


def test_the_support_is_the_field_in_the_course_model_with_open_relus():
    """The twin's support is the field of the real modules too: in the course model with positive weights (every
    ReLU open) and average instead of max pools, d unit / d input is non-zero exactly on the field."""
    model = VGG11GAP(6, width=1 / 16).eval()
    layers = []
    with torch.no_grad():
        for name, module in model.backbone.named_children():
            if isinstance(module, nn.Conv2d):
                module.weight.uniform_(0.1, 1.0)
                module.bias.zero_()
            if isinstance(module, nn.MaxPool2d):
                module = nn.AvgPool2d(2)
            layers.append((name, module))
    net = nn.Sequential(*(module for _, module in layers)).double()
    x = torch.rand(1, 3, 224, 224, dtype=torch.float64, requires_grad=True)
    out = net(x)
    (grad,) = torch.autograd.grad(out[0, :, 7, 7].sum(), x)
    rows = grad[0].abs().sum((0, 2)).nonzero()[:, 0]
    assert (int(rows[0]), int(rows[-1])) == (-59 + 7 * 16, -59 + 7 * 16 + 133)


def _independent_crop(images: torch.Tensor, n: int, y: int, x: int, field: tuple[int, int, int]) -> torch.Tensor:
    size, jump, start = field
    padded = F.pad(images[n], (size, size, size, size))
    top, left = start + y * jump + size, start + x * jump + size
    return padded[:, top : top + size, left : left + size]


@pytest.mark.parametrize("case", range(len(probes.patch_cases())))
def test_reference_top_patches_against_an_independent_crop_and_argmax(case):
    spec = probes.patch_cases()[case]
    activations, images, field, k = spec["activations"], spec["images"], spec["field"], spec["k"]
    patches, scores, positions = grader.top_patches(activations, images, field, k)
    best = sorted(range(len(activations)), key=lambda n: -float(activations[n].max()))[:k]
    assert positions[:, 0].tolist() == best
    for patch, score, (n, y, x) in zip(patches, scores, positions.tolist()):
        assert score == activations[n].max() == activations[n, y, x]
        torch.testing.assert_close(patch, _independent_crop(images, n, y, x, field), rtol=0, atol=0)


def test_hidden_cases_exercise_what_they_should():
    first, tall, large, unpadded = probes.patch_cases()
    # a top-k over every position would take image 2 twice
    everywhere = first["activations"].flatten().topk(first["k"]).indices // first["activations"][0].numel()
    assert len(set(everywhere.tolist())) < first["k"]
    _, _, positions = grader.top_patches(first["activations"], first["images"], first["field"], first["k"])
    size, jump, start = first["field"]
    tops = start + positions[:, 1:] * jump
    assert (tops < 0).any() and (tops + size > first["images"].shape[-1]).any()  # fields over both borders
    assert tall["images"].shape[-2] != tall["images"].shape[-1] and tall["k"] == len(tall["images"])
    assert large["field"][0] > large["images"].shape[-1] and large["images"].dtype == torch.float64
    assert unpadded["field"][2] == 0
    fields = [grader.receptive_fields(layers) for _, layers in probes.layer_lists()]
    modules = [module for _, layers in probes.layer_lists() for _, module in layers]
    assert any(isinstance(m, nn.AvgPool2d) for m in modules) and any(getattr(m, "dilation", 1) not in (1, (1, 1)) for m in modules)
    assert any(isinstance(m, nn.MaxPool2d) and isinstance(m.kernel_size, tuple) for m in modules)
    assert any(start == 0 for rows in fields for *_, start in rows)


def test_the_probes_hold_no_reference():
    assert not hasattr(probes, "receptive_fields") and not hasattr(probes, "top_patches") and not hasattr(probes, "crop")


# --- check_receptive_fields -------------------------------------------------------------------------------------


def _pair(v):
    return v if isinstance(v, int) else v[0]


def fields_by_hasattr(layers):
    size, jump, start, rows = 1, 1, 0, []
    for name, module in layers:
        if not hasattr(module, "kernel_size"):
            continue
        k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
        d = _pair(getattr(module, "dilation", 1))
        size, start, jump = size + (d * (k - 1)) * jump, start - p * jump, jump * s
        rows.append((name, size, jump, start))
    return rows


def fields_by_centre_recursion(layers):
    """Dang Ha The Hien's form: track the centre of unit 0, then convert it to the first pixel."""
    size, jump, centre, rows = 1, 1, 0.0, []
    for name, module in layers:
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
            k = _pair(getattr(module, "dilation", 1)) * (k - 1) + 1
            centre += ((k - 1) / 2 - p) * jump
            size += (k - 1) * jump
            jump *= s
            rows.append((name, size, jump, int(centre - (size - 1) / 2)))
    return rows


def fields_as_numpy_ints(layers):
    return [(name, np.int64(size), np.int64(jump), np.int64(start)) for name, size, jump, start in grader.receptive_fields(layers)]


def fields_as_tensors_in_lists(layers):
    return [[name, torch.tensor(size), torch.tensor(jump), torch.tensor(start)] for name, size, jump, start in grader.receptive_fields(layers)]


CORRECT_FIELDS = {
    "reference": grader.receptive_fields,
    "hasattr(kernel_size)": fields_by_hasattr,
    "centre recursion, converted": fields_by_centre_recursion,
    "numpy integers": fields_as_numpy_ints,
    "tensor integers, rows as lists": fields_as_tensors_in_lists,
    "measured from gradients": measured_fields,
}


@pytest.mark.parametrize("function", CORRECT_FIELDS.values(), ids=CORRECT_FIELDS.keys())
def test_check_receptive_fields_accepts_correct_answers(function):
    probes.check_receptive_fields(function)


def _fields_with(*, dilation=True, padding=True, centre=False, pools=(nn.MaxPool2d, nn.AvgPool2d), every_layer=False,
                 jump_first=False, as_float=False):
    def receptive_fields(layers):
        size, jump, start, rows = 1, 1, 0, []
        for name, module in layers:
            if not isinstance(module, (nn.Conv2d, *pools)):
                if every_layer:
                    rows.append((name, size, jump, start))
                continue
            k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
            d = _pair(getattr(module, "dilation", 1)) if dilation else 1
            if jump_first:
                jump *= s
            start -= (p if padding else 0) * jump
            size += d * (k - 1) * jump
            if not jump_first:
                jump *= s
            first = start + (size - 1) // 2 if centre else start
            rows.append((name, float(size) if as_float else size, jump, first))
        return rows

    return receptive_fields


def fields_reading_index_zero(layers):
    size, jump, start, rows = 1, 1, 0, []
    for name, module in layers:
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = module.kernel_size[0], module.stride[0], module.padding[0]  # fails on ints
            size, start, jump = size + (k - 1) * jump, start - p * jump, jump * s
            rows.append((name, size, jump, start))
    return rows


def fields_as_a_dict(layers):
    return {name: (size, jump, start) for name, size, jump, start in grader.receptive_fields(layers)}


def fields_stub(layers):
    raise NotImplementedError


WRONG_FIELDS = {
    "dilation ignored": (_fields_with(dilation=False), "sizes are wrong"),
    "padding ignored": (_fields_with(padding=False), "starts are wrong"),
    "centre instead of first pixel": (_fields_with(centre=True), "starts are wrong"),
    "average pools skipped": (_fields_with(pools=(nn.MaxPool2d,)), "wrong layers"),
    "a row for every layer": (_fields_with(every_layer=True), "wrong layers"),
    "jump updated first": (_fields_with(jump_first=True), "sizes are wrong"),
    "float sizes": (_fields_with(as_float=True), "integers"),
    "kernel_size[0] on an int": (fields_reading_index_zero, "raised TypeError"),
    "a dict": (fields_as_a_dict, "should return a list"),
    "stub": (fields_stub, "not implemented yet"),
}


@pytest.mark.parametrize(("function", "message"), WRONG_FIELDS.values(), ids=WRONG_FIELDS.keys())
def test_check_receptive_fields_rejects_mistakes(function, message):
    with pytest.raises(AssertionError, match=message):
        probes.check_receptive_fields(function)


# --- check_top_patches and check_top_patches_crops ------------------------------------------------------------


def patches_by_padding(activations, images, field, k):
    size, jump, start = field
    w = activations.shape[-1]
    peaks, flat = activations.reshape(len(activations), -1).max(dim=1)
    scores, order = torch.sort(peaks, descending=True)
    scores, order = scores[:k], order[:k]
    padded = F.pad(images, (size, size, size, size))
    patches, positions = [], []
    for n in order.tolist():
        y, x = divmod(int(flat[n]), w)
        top, left = start + y * jump + size, start + x * jump + size
        patches.append(padded[n, :, top : top + size, left : left + size])
        positions.append((n, y, x))
    return torch.stack(patches), scores, torch.tensor(positions)


def patches_with_loops_in_float64(activations, images, field, k):
    size, jump, start = field
    best = []
    for n, grid in enumerate(activations.double()):
        y, x = np.unravel_index(int(grid.argmax()), tuple(grid.shape))
        best.append((float(grid[y, x]), n, int(y), int(x)))
    best = sorted(best, reverse=True)[:k]
    patches = torch.zeros(k, images.shape[1], size, size, dtype=torch.float64)
    for i, (_, n, y, x) in enumerate(best):
        for r, c in itertools.product(range(size), repeat=2):
            row, column = start + y * jump + r, start + x * jump + c
            if 0 <= row < images.shape[-2] and 0 <= column < images.shape[-1]:
                patches[i, :, r, c] = images[n, :, row, column].double()
    scores = torch.tensor([score for score, *_ in best], dtype=torch.float64)
    positions = torch.tensor([(n, y, x) for _, n, y, x in best], dtype=torch.int32)
    return patches.to(images.dtype), scores.to(activations.dtype), positions


def patches_as_a_list_triple(activations, images, field, k):
    return list(grader.top_patches(activations, images, field, k))


CORRECT_PATCHES = {
    "reference": grader.top_patches,
    "F.pad, sort": patches_by_padding,
    "loops, float64, int32 positions": patches_with_loops_in_float64,
    "returns a list": patches_as_a_list_triple,
}


@pytest.mark.parametrize("function", CORRECT_PATCHES.values(), ids=CORRECT_PATCHES.keys())
def test_checks_of_top_patches_accept_correct_answers(function):
    probes.check_top_patches(function)
    probes.check_top_patches_crops(function)


def patches_over_every_position(activations, images, field, k):
    w, hw = activations.shape[-1], activations[0].numel()
    scores, flat = activations.flatten().topk(k)
    positions = torch.stack([flat // hw, (flat % hw) // w, flat % w], dim=1)
    patches = torch.stack([grader.crop(images, *map(int, p), field) for p in positions])
    return patches, scores, positions


def patches_smallest_first(activations, images, field, k):
    patches, scores, positions = grader.top_patches(activations, images, field, k)
    return patches.flip(0), scores.flip(0), positions.flip(0)


def patches_of_the_weakest(activations, images, field, k):
    order = activations.flatten(1).amax(dim=1).argsort()[:k].flip(0)   # the k weakest images, strongest of them first
    patches, scores, positions = grader.top_patches(activations[order], images[order], field, k)
    positions[:, 0] = order[positions[:, 0]]
    return patches, scores, positions


def patches_positions_column_first(activations, images, field, k):
    patches, scores, positions = grader.top_patches(activations, images, field, k)
    return patches, scores, positions[:, [0, 2, 1]]


def patches_without_start(activations, images, field, k):
    size, jump, _ = field
    _, scores, positions = grader.top_patches(activations, images, field, k)
    patches = torch.stack([grader.crop(images, *map(int, p), (size, jump, 0)) for p in positions])
    return patches, scores, positions


def patches_clipped(activations, images, field, k):
    size, jump, start = field
    _, scores, positions = grader.top_patches(activations, images, field, k)
    cut = []
    for n, y, x in positions.tolist():
        top, left = max(start + y * jump, 0), max(start + x * jump, 0)
        cut.append(images[n, :, top : start + y * jump + size, left : start + x * jump + size])
    return cut, scores, positions


def patches_replicating_the_border(activations, images, field, k):
    size, jump, start = field
    _, scores, positions = grader.top_patches(activations, images, field, k)
    padded = F.pad(images, (size, size, size, size), mode="replicate")
    patches = torch.stack([padded[n, :, start + y * jump + size : start + y * jump + 2 * size,
                                  start + x * jump + size : start + x * jump + 2 * size] for n, y, x in positions.tolist()])
    return patches, scores, positions


def patches_denormalised(activations, images, field, k):
    patches, scores, positions = grader.top_patches(activations, images, field, k)
    return patches * 0.25 + 0.45, scores, positions


def patches_normalising_in_place(activations, images, field, k):
    activations -= activations.mean()
    return grader.top_patches(activations, images, field, k)


def patches_stub(activations, images, field, k):
    raise NotImplementedError


WRONG_PATCHES = {  # (function, message of check_top_patches or None, message of check_top_patches_crops or None)
    "top-k over every position": (patches_over_every_position, "at most one unit per image", None),
    "smallest first": (patches_smallest_first, "largest first", None),
    "the weakest images": (patches_of_the_weakest, "not the 4 images", None),
    "positions (image, column, row), patches right": (patches_positions_column_first, "not the activation at its position", None),
    "start ignored": (patches_without_start, None, "not the receptive fields"),
    "clipped at the border": (patches_clipped, None, "should be a float tensor of shape"),
    "border replicated": (patches_replicating_the_border, None, "not the receptive fields"),
    "denormalised patches": (patches_denormalised, None, "not the receptive fields"),
    "activations changed in place": (patches_normalising_in_place, "changes the activations", None),  # one cell
    "stub": (patches_stub, "not implemented yet", "not implemented yet"),
}


@pytest.mark.parametrize(("function", "scores_message", "crops_message"), WRONG_PATCHES.values(), ids=WRONG_PATCHES.keys())
def test_checks_of_top_patches_reject_each_mistake_in_its_own_check(function, scores_message, crops_message):
    for check, message in ((probes.check_top_patches, scores_message), (probes.check_top_patches_crops, crops_message)):
        if message is None:
            check(function)
        else:
            with pytest.raises(AssertionError, match=message):
                check(function)


def last_of_ties(activations, images, field, k):
    """Ties broken the other way: the last position of a map's maximum, and the later image of equal maxima."""
    flat = activations.flatten(1)
    peaks, width = flat.amax(dim=1), activations.shape[-1]
    last = flat.shape[1] - 1 - flat.flip(1).argmax(dim=1)
    order = sorted(range(len(activations)), key=lambda n: (-float(peaks[n]), -n))[:k]
    positions = torch.tensor([(n, int(last[n]) // width, int(last[n]) % width) for n in order])
    patches = torch.stack([grader.crop(images, *map(int, p), field) for p in positions])
    return patches, peaks[order], positions


def test_a_tie_may_be_broken_either_way(monkeypatch):
    """Maps whose maximum occurs twice, and images with equal maxima: either choice is right."""
    original = probes.patch_cases

    def with_ties():
        cases = original()
        for case in cases:
            maps = case["activations"]
            top = maps.max() + 1
            maps[:, 0, 1] = maps[:, -1, -2] = top  # every image: its maximum twice, and all images tied
        return cases

    monkeypatch.setattr(probes, "patch_cases", with_ties)
    monkeypatch.setattr(grader, "patch_cases", with_ties)
    for function in (grader.top_patches, last_of_ties):
        probes.check_top_patches(function)
        probes.check_top_patches_crops(function)
