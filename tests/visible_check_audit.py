"""What a visible check may not do to the notebook it runs in: snapshots of the notebook's shared objects before
and after a check cell, and the differences between them.

A visible check runs in the student's kernel among the objects later cells use: the models, the datasets, the
tensors. It must leave each of them as it was (a model's parameters, buffers, ``.training`` flags, hooks and
``requires_grad``; a tensor's values; the global random generators, so that the cells after it draw what they
drew before). ``tests/test_visible_checks.py`` runs this module's source inside the kernel of every solved
notebook, around each visible check, and asserts that :func:`differences` finds nothing.
"""

from __future__ import annotations

import random
import types
from typing import Any

import numpy as np
import torch
from torch import nn

LARGE = 4_000_000
"""Tensors with more elements than this are fingerprinted (sums), not copied: datasets stay cheap to watch."""


def _tensor_state(tensor: torch.Tensor) -> tuple:
    data = tensor.detach()
    if data.is_meta:  # shapes only: a meta tensor holds no values
        return (tuple(data.shape), data.dtype, tensor.requires_grad, tensor.grad is not None, "meta")
    if data.numel() > LARGE:
        flat = data.flatten().double()
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64).remainder_(7919)
        values: Any = ("fingerprint", float(flat.nansum()), float((flat * weights).nansum()), int(flat.isnan().sum()))
    else:
        values = data.clone()
    return (tuple(data.shape), data.dtype, tensor.requires_grad, tensor.grad is not None, values)


def _module_state(module: nn.Module) -> dict[str, Any]:
    hooks = {
        name or "itself": len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for name, m in module.named_modules()
    }
    return {
        "state_dict": {key: _tensor_state(value) for key, value in module.state_dict(keep_vars=True).items()},
        "training": {name or "itself": m.training for name, m in module.named_modules()},
        "hooks": hooks,
        "requires_grad": {name: p.requires_grad for name, p in module.named_parameters()},
        "grads": {name: None if p.grad is None else p.grad.clone() for name, p in module.named_parameters()},
    }


def _watch(value: Any, path: str, found: dict[int, tuple[str, Any]], depth: int = 0) -> None:
    """Collect the modules and tensors reachable from ``value`` (containers and plain objects, a few levels)."""
    if id(value) in found or depth > 3:
        return
    if isinstance(value, (nn.Module, torch.Tensor)):
        found[id(value)] = (path, value)
    elif isinstance(value, dict):
        for key, item in list(value.items())[:200]:
            _watch(item, f"{path}[{key!r}]", found, depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value[:200]):
            _watch(item, f"{path}[{index}]", found, depth + 1)
    elif isinstance(value, torch.Generator):
        found[id(value)] = (path, value)
    elif hasattr(value, "__dict__") and not isinstance(value, (type, types.ModuleType, types.FunctionType)):
        if type(value).__module__.split(".")[0] in {"helpers", "__main__"}:  # the course's own records (a dataset)
            for key, item in vars(value).items():
                _watch(item, f"{path}.{key}", found, depth + 1)


def _state(value: Any) -> Any:
    if isinstance(value, nn.Module):
        return _module_state(value)
    if isinstance(value, torch.Generator):
        return value.get_state()
    return _tensor_state(value)


def snapshot(namespace: dict[str, Any]) -> dict[str, Any]:
    """The state of every module, tensor and generator the notebook's globals reach, and of the global random
    generators (torch, numpy, random)."""
    found: dict[int, tuple[str, Any]] = {}
    for name, value in list(namespace.items()):
        if not name.startswith("_"):
            _watch(value, name, found)
    return {
        "objects": {key: (path, value, _state(value)) for key, (path, value) in found.items()},
        "rng": (torch.random.get_rng_state(), _numpy_state(), random.getstate()),
    }


def _numpy_state() -> tuple:
    _, keys, position, *_ = np.random.get_state()
    return keys.copy(), position


def _same_numpy(a: tuple, b: tuple) -> bool:
    return bool(np.array_equal(a[0], b[0])) and a[1] == b[1]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point() or a.is_complex():
            return bool(torch.equal(a.nan_to_num(0.0, 1.0, -1.0), b.nan_to_num(0.0, 1.0, -1.0))
                        and torch.equal(a.isnan(), b.isnan()))
        return bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _first_difference(before: Any, after: Any) -> str:
    """The path to the first part that differs (``training: backbone.bn1``), or ``its values``."""
    if isinstance(before, dict):
        for key in before:
            if key not in after or not _same(before[key], after[key]):
                if isinstance(before[key], dict):
                    return f"{key}: {_first_difference(before[key], after.get(key, {}))}"
                return f"{key}"
    return "its values"


def differences(before: dict[str, Any]) -> list[str]:
    """What changed since ``before`` (a :func:`snapshot`): the objects it saw, and the global generators."""
    found = []
    for path, value, state in before["objects"].values():
        now = _state(value)
        if not _same(state, now):
            found.append(f"{path} changed ({_first_difference(state, now)})")
    torch_state, numpy_state, python_state = before["rng"]
    if not torch.equal(torch_state, torch.random.get_rng_state()):
        found.append("torch's global random generator advanced: draw from a seeded torch.Generator")
    if not _same_numpy(numpy_state, _numpy_state()):
        found.append("numpy's global random generator advanced: use np.random.default_rng(seed)")
    if python_state != random.getstate():
        found.append("Python's global random generator advanced: use random.Random(seed)")
    return found
