"""``copy.deepcopy`` of the course's models, about a quarter of the general one's time.

The checks copy the model before they change it (``copy.deepcopy(model).train()``), several times a notebook.
Python's general deepcopy rebuilds every one of a module's dozen hook dictionaries through ``__reduce_ex__``:
about 4 ms for the course model, whose tensors take 0.1 ms to clone. :func:`deepcopy_module` builds the same copy
directly where a model is *plain* (about 1 ms), and takes the general way otherwise.

Plain means that nothing the general deepcopy would treat differently is there:

* every module's class keeps ``nn.Module``'s ``__getstate__``, ``__reduce_ex__`` and ``__reduce__`` (its own
  ``__setstate__``, like ``nn.Conv2d``'s, is called with the copied state, as the general deepcopy does);
* every attribute is a parameter or buffer dictionary, the submodule dictionary, a number, string, ``None``,
  dtype or device, or a list, tuple, set or dict of those (the empty hook dictionaries included: a registered hook
  is not plain);
* every tensor is an ordinary dense leaf tensor on the CPU or a GPU (``nn.Parameter`` or ``torch.Tensor``, no
  subclass, no attribute of its own, no ``.grad`` on a buffer) that fills a storage of its own.

Then the copy is what the general deepcopy gives: the same classes, attributes and flags, each parameter an
``nn.Parameter(data.clone(), requires_grad)`` (as ``Parameter.__deepcopy__`` makes it: no ``.grad``), each buffer a
clone, a module or tensor that appears twice copied once, and ``memo`` filled in for all of them.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.layout,
                    torch.memory_format})
_DICTS = frozenset({dict, OrderedDict})
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_TENSOR_DICTS = ("_parameters", "_buffers")


def deepcopy_module(module: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """``copy.deepcopy(module, memo)``: built directly where ``module`` is plain (see the module's docstring),
    the general way otherwise. A class uses it as its ``__deepcopy__``."""
    if id(module) in memo:
        return memo[id(module)]
    added: list[int] = []  # what the direct copy put in memo: taken out again if the model is not plain
    try:
        return _copy_plain(module, memo, added, set())
    except _NotPlain:
        for key in added:
            del memo[key]
    return _copy_generally(module, memo)


class _NotPlain(Exception):
    """Something the direct copy does not know how to copy as the general deepcopy would."""


def _copy_generally(module: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """What ``copy.deepcopy`` does with a module whose class has no ``__deepcopy__``."""
    copied = type(module).__new__(type(module))
    memo[id(module)] = copied
    copied.__setstate__(copy.deepcopy(module.__getstate__(), memo))
    return copied


def _copy_plain(module: nn.Module, memo: dict[int, Any], added: list[int], storages: set[int]) -> nn.Module:
    if id(module) in memo:
        return memo[id(module)]
    kind = type(module)
    if (kind.__getstate__ is not nn.Module.__getstate__ or kind.__reduce_ex__ is not object.__reduce_ex__
            or kind.__reduce__ is not object.__reduce__ or getattr(kind, "__deepcopy__", None) not in _OWN_COPIERS):
        raise _NotPlain(kind)
    copied = kind.__new__(kind)
    _remember(module, copied, memo, added)
    state: dict[str, Any] = {}
    for key, value in module.__dict__.items():
        if key in _TENSOR_DICTS:
            if type(value) is not dict:
                raise _NotPlain(key)
            expected = nn.Parameter if key == "_parameters" else torch.Tensor
            state[key] = {name: None if t is None else _copy_tensor(t, expected, memo, added, storages)
                          for name, t in value.items()}
        elif key == "_modules":
            if type(value) is not dict:
                raise _NotPlain(key)
            state[key] = {name: None if m is None else _copy_plain(m, memo, added, storages)
                          for name, m in value.items()}
        elif key != "_compiled_call_impl":  # which nn.Module.__getstate__ leaves out
            state[key] = _copy_atomic(value)
    copied.__setstate__(state)
    return copied


def _copy_atomic(value: Any) -> Any:
    """``value`` if deepcopy would give ``value`` itself, or a container of the same type holding copies."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind in _DICTS:
        return kind((_copy_atomic(key), _copy_atomic(item)) for key, item in value.items()) if value else kind()
    if kind in _SEQUENCES:
        return kind(_copy_atomic(item) for item in value)
    raise _NotPlain(kind)


def _copy_tensor(tensor: Any, kind: type, memo: dict[int, Any], added: list[int], storages: set[int]) -> torch.Tensor:
    if id(tensor) in memo:
        return memo[id(tensor)]
    if (type(tensor) is not kind or tensor.device.type not in ("cpu", "cuda") or tensor.layout != torch.strided
            or tensor.is_quantized or tensor.__dict__
            or tensor.is_conj() or tensor.is_neg() or not tensor.is_leaf
            or (kind is torch.Tensor and tensor.grad is not None)):
        raise _NotPlain(type(tensor))
    storage = tensor.untyped_storage()
    pointer = storage.data_ptr()
    if (pointer == 0 or pointer in storages or tensor.storage_offset() != 0 or not tensor.is_contiguous()
            or storage.nbytes() != tensor.numel() * tensor.element_size()):
        raise _NotPlain("a storage shared, or larger than its tensor")
    storages.add(pointer)
    data = tensor.data.clone(memory_format=torch.preserve_format)  # .data: no autograd history
    copied = nn.Parameter(data, tensor.requires_grad) if kind is nn.Parameter else data.requires_grad_(
        tensor.requires_grad)
    _remember(tensor, copied, memo, added)
    return copied


def _remember(original: Any, copied: Any, memo: dict[int, Any], added: list[int]) -> None:
    """As ``copy.deepcopy`` does: ``memo`` maps the original to its copy and keeps the original alive."""
    memo[id(original)] = copied
    memo.setdefault(id(memo), []).append(original)
    added.append(id(original))


_OWN_COPIERS = (None, deepcopy_module)
