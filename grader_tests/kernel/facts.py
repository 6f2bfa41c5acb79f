"""Side effects a probe writes down: hooks left on a model, parameter gradients, train/eval modes, the caller's
image. Each is a fact the judge checks (:mod:`grader_tests.judges.common`); code written to forge it can.

A side-effect check judges the student's function against *itself*, never against the reference: its value
check is another cell, so a wrong value must not cost a side-effect cell too. "Computed in eval mode", for
example, is the result on a model put in train mode against the student's own result on a copy of the same
model in eval mode (both from :func:`call_in_train_mode`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .record import Observations, call, snapshot


def hook_count(model: nn.Module) -> int:
    """Hooks registered on ``model``'s modules plus global module hooks (forward, pre-forward, backward)."""
    from torch.nn.modules import module as module_globals

    per_module = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )
    global_hooks = sum(
        len(getattr(module_globals, name, {}))
        for name in (
            "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks"
        )
    )
    return per_module + global_hooks


def gradient_sizes(model: nn.Module) -> dict[str, float]:
    """The largest ``|.grad|`` of each parameter (0.0 where ``.grad`` is None)."""
    return {name: 0.0 if p.grad is None else float(p.grad.detach().abs().max()) for name, p in model.named_parameters()}


def modes(model: nn.Module) -> list[bool]:
    """Each module's train flag."""
    return [module.training for module in model.modules()]


def input_state(image: torch.Tensor) -> dict[str, Any]:
    """The caller's image after the student's call (values, requires_grad, .grad)."""
    return {"image": snapshot(image), "has_grad": image.grad is not None}


def call_in_train_mode(student: Callable[..., Any], model: nn.Module, *args: Any) -> Observations:
    """Call the student's function on ``model`` put in train mode; its outcome, each module's mode before and
    after, the hooks it left and the parameter gradients it left. Then, as ``in_eval_mode``, its outcome on a copy
    of the model as it was, in eval mode, with copies of the arguments: the student's own answer that the
    train-mode call must reproduce (so a wrong value costs the value check, never this one). For a
    :class:`BatchRecorder`, ``batches``: the sizes of the batches of the train-mode call."""
    twin = copy.deepcopy(model).eval()
    twin_args = [arg.clone() if isinstance(arg, torch.Tensor) else arg for arg in args]
    model.train()
    before, hooks = modes(model), hook_count(model)
    outcome = call(student, model, *args)
    observed = {
        "call": outcome, "before": before, "after": modes(model), "hooks_left": hook_count(model) - hooks,
        "grads": gradient_sizes(model),
    }
    if isinstance(model, BatchRecorder):  # the batches of this call: the twin below records into the same list
        observed["batches"] = list(model.batches)
    return {**observed, "in_eval_mode": call(student, twin, *twin_args)}


class SharedRecord(list):
    """A list that a deep copy shares instead of copying: a copy of a recording model records into it too."""

    def __deepcopy__(self, memo: dict) -> SharedRecord:
        return self


class BatchRecorder(nn.Module):
    """The hidden model, recording the number of images of every call, its own and those of its deep copies (a
    function may run a ``copy.deepcopy(model).eval()``: the model it was given, as far as the text asks)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batches: list[int] = SharedRecord()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(int(x.shape[0]) if x.dim() == 4 else 1)
        return self.model(x)
