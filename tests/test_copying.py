"""``copy.deepcopy`` of the course's models (``helpers.copying``): the copy the general deepcopy makes, whatever the
model's state, and the direct way taken where the model is plain."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch
from torch import nn

import helpers
from helpers import copying

COPIED_QUICKLY = (helpers.VGG11GAP, helpers.VGG11Backbone, helpers.VGG11Classification)


def general_deepcopy(value: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What Python's own deepcopy makes: the course's classes without their ``__deepcopy__``."""
    with monkeypatch.context() as patch:
        for kind in COPIED_QUICKLY:
            patch.setattr(kind, "__deepcopy__", None)
        return copy.deepcopy(value)


def describe(value: Any, seen: dict[Any, int] | None = None) -> Any:
    """Everything a deepcopy decides about ``value``, with objects (and storages) that appear twice named by their
    first place."""
    seen = {} if seen is None else seen
    if isinstance(value, (nn.Module, torch.Tensor)):
        if id(value) in seen:
            return ("the same object as", seen[id(value)])
        seen[id(value)] = len(seen)
    if isinstance(value, nn.Module):
        return (type(value), sorted(value.__dict__), {key: describe(item, seen) for key, item in value.__dict__.items()
                                                       if key not in ("_forward_hooks",)},
                len(value._forward_hooks))
    if isinstance(value, torch.Tensor):
        storage = ("storage", value.untyped_storage().data_ptr())
        seen.setdefault(storage, len(seen))  # type: ignore[call-overload]
        return (type(value), seen[storage], value.storage_offset(), value.dtype, tuple(value.shape), value.stride(), value.requires_grad, value.is_leaf,
                value.detach().tolist(), None if value.grad is None else value.grad.tolist(), dict(value.__dict__))
    if isinstance(value, dict):
        return (type(value), {key: describe(item, seen) for key, item in value.items()})
    if isinstance(value, (list, tuple, set)):
        return (type(value), [describe(item, seen) for item in value])
    return value


def containers(value: Any) -> list[Any]:
    """The lists, dicts and sets in ``value``'s modules' attributes."""
    found = []
    for module in value.modules() if isinstance(value, nn.Module) else ():
        stack = [item for key, item in module.__dict__.items() if key not in ("_parameters", "_buffers", "_modules")]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, dict, set, tuple)):
                found += [item] if not isinstance(item, tuple) else []
                stack += list(item.values()) if isinstance(item, dict) else list(item)
    return found


def tensors(value: Any) -> list[torch.Tensor]:
    found = [t for t in (value if isinstance(value, tuple) else (value,)) if isinstance(t, torch.Tensor)]
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, nn.Module):
            found += [*item.parameters(), *item.buffers()]
    return found


def small_model() -> helpers.VGG11GAP:
    torch.manual_seed(0)
    return helpers.VGG11GAP(3, width=1 / 32).eval()


def with_grads(model: nn.Module) -> nn.Module:
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    return model


def with_frozen_head(model: helpers.VGG11GAP) -> nn.Module:
    model.fc.requires_grad_(False)
    return model.double().train()


def with_tied_layers(model: helpers.VGG11GAP) -> nn.Module:
    model.tied = model.fc  # one module reached twice
    model.twin_fc = nn.Linear(model.fc.in_features, model.fc.out_features)
    model.twin_fc.weight = model.fc.weight  # one parameter in two modules
    return model


def with_notes(model: nn.Module) -> nn.Module:
    model.notes = {"layers": ["conv1", "fc"], "sizes": (3, (32, 32)), "seen": {1, 2}}
    return model


def with_hook(model: helpers.VGG11GAP) -> nn.Module:
    model.fc.register_forward_hook(functools.partial(print, "fc"))
    return model


def with_a_tensor_attribute(model: nn.Module) -> nn.Module:
    model.mean_image = torch.randn(3, 4, 4)  # neither parameter nor buffer
    return model


def with_a_view(model: helpers.VGG11GAP) -> nn.Module:
    model.backbone.bn1.register_buffer("first_mean", model.backbone.bn1.running_mean[:1])  # shares a storage
    return model


def with_an_alias(model: helpers.VGG11GAP) -> nn.Module:
    model.backbone.bn2.register_buffer("alias", model.backbone.bn2.running_var.view(-1))  # the whole storage
    return model


def with_a_noted_buffer(model: helpers.VGG11GAP) -> nn.Module:
    model.backbone.bn1.running_mean.note = "measured on the demo set"  # deepcopy copies a tensor's attributes
    return model


def with_a_channels_last_conv(model: helpers.VGG11GAP) -> nn.Module:
    model.backbone.conv2.to(memory_format=torch.channels_last)
    return model


def with_a_buffer_grad(model: helpers.VGG11GAP) -> nn.Module:
    model.backbone.bn1.running_var.grad = torch.ones_like(model.backbone.bn1.running_var)
    return model


class Customised(helpers.VGG11GAP):
    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "unpickled": True}


def customised(model: helpers.VGG11GAP) -> nn.Module:
    model.__class__ = Customised
    return model


PLAIN = [small_model, lambda: with_grads(small_model()), lambda: with_frozen_head(small_model()),
         lambda: with_tied_layers(small_model()), lambda: with_notes(small_model()),
         lambda: small_model().backbone, lambda: helpers.VGG11Classification(4, width=1 / 64)]
NOT_PLAIN = [lambda: with_hook(small_model()), lambda: with_a_tensor_attribute(small_model()),
             lambda: with_a_view(small_model()), lambda: with_an_alias(small_model()),
             lambda: with_a_noted_buffer(small_model()), lambda: with_a_channels_last_conv(small_model()),
             lambda: with_a_buffer_grad(small_model()), lambda: customised(small_model())]


@pytest.mark.parametrize("make", PLAIN + NOT_PLAIN)
def test_the_copy_is_the_one_the_general_deepcopy_makes(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make()
    expected = general_deepcopy(model, monkeypatch)
    copied = copy.deepcopy(model)
    assert describe(copied) == describe(expected)
    original = {id(t) for t in tensors(model)}
    storages = {t.untyped_storage().data_ptr() for t in tensors(model)}
    assert not original & {id(t) for t in tensors(copied)}
    assert not storages & {t.untyped_storage().data_ptr() for t in tensors(copied)}
    assert not {id(c) for c in containers(model)} & {id(c) for c in containers(copied)}


@pytest.mark.parametrize("make", PLAIN)
def test_a_plain_model_is_copied_directly(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make()
    monkeypatch.setattr(copying, "_copy_generally", lambda *args: pytest.fail("the general way was taken"))
    copied = copy.deepcopy(model)
    with torch.no_grad():
        next(copied.parameters()).add_(1.0)
    assert not torch.equal(next(copied.parameters()), next(model.parameters()))  # the copy is its own


@pytest.mark.parametrize("make", NOT_PLAIN)
def test_anything_else_is_copied_the_general_way(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    general = copying._copy_generally
    monkeypatch.setattr(copying, "_copy_generally", lambda *args: calls.append(1) or general(*args))
    copy.deepcopy(make())
    assert calls


def test_a_memo_shared_with_other_objects_maps_them_to_the_copys_own() -> None:
    model = small_model()
    weight, copied_model, again = copy.deepcopy((model.fc.weight, model, model.backbone))
    assert weight is copied_model.fc.weight and again is copied_model.backbone
    reversed_order = copy.deepcopy((model.backbone.conv1, model))
    assert reversed_order[0] is reversed_order[1].backbone.conv1


def test_a_model_that_is_not_plain_leaves_nothing_of_the_direct_attempt_in_memo() -> None:
    model = with_hook(small_model())
    memo: dict[int, Any] = {}
    copied = copy.deepcopy(model, memo)
    for name, module in model.named_modules():
        assert memo[id(module)] is copied.get_submodule(name)
    for name, parameter in model.named_parameters():
        assert memo[id(parameter)] is copied.get_parameter(name)
    for name, buffer in model.named_buffers():
        assert memo[id(buffer)] is copied.get_buffer(name)
