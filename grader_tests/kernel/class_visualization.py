"""Probes of ``10_class_visualization``: the student's ``class_visualization`` and ``fool`` on the calibrated hidden
model and hidden images (other sizes, one non-square, other classes, other step counts, float32 and float64). They
record what the functions return and, for the side-effect checks, the modes, the parameter gradients and the
caller's tensors around a call on a model in train mode, with the student's own answer in eval mode beside it.
Judged in :mod:`grader_tests.judges.class_visualization`.

``class_visualization`` draws its jitter from a ``torch.Generator``: every call gets a fresh one, seeded here, so
that the student's two calls of a side-effect check draw the same offsets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .facts import gradient_sizes, hook_count, input_state, modes
from .inputs import HIDDEN_SEED, cached_hidden_images, calibrated_hidden_model
from .record import Observations, call, probe

# --- hidden inputs -----------------------------------------------------------------------------------------

VIS_CASES: tuple[dict[str, Any], ...] = (
    # start images (n, size, seed), classes, and the settings of class_visualization
    {"images": (2, 64, HIDDEN_SEED), "crop": None, "classes": (1, 4), "steps": 5, "lr": 30.0, "l2_reg": 0.05,
     "max_jitter": 5, "blur_every": 3, "blur_sigma": 0.8, "seed": 101, "dtype": torch.float32},
    {"images": (1, 96, 7), "crop": (16, 80), "classes": (3,), "steps": 4, "lr": 8.0, "l2_reg": 0.0,
     "max_jitter": 6, "blur_every": 0, "blur_sigma": 0.5, "seed": 102, "dtype": torch.float32},
    {"images": (2, 64, HIDDEN_SEED), "crop": None, "classes": (5, 2), "steps": 5, "lr": 25.0, "l2_reg": 0.2,
     "max_jitter": 3, "blur_every": 2, "blur_sigma": 0.6, "seed": 103, "dtype": torch.float64},
)
"""Cases of the value check: the start image of each class, the classes, the settings and the jitter seed."""

FOOL_CASES: tuple[dict[str, Any], ...] = (
    # one image (index of hidden_images(n, size, seed)), the target, the step length and the step budget
    {"images": (2, 64, HIDDEN_SEED), "index": 0, "target": 4, "step": 1.5, "max_steps": 40, "dtype": torch.float32},
    {"images": (1, 80, 11), "index": 0, "target": 2, "step": 2.0, "max_steps": 2, "dtype": torch.float32},
    {"images": (2, 64, HIDDEN_SEED), "index": 1, "target": 3, "step": 2.0, "max_steps": 40, "dtype": torch.float64},
    {"images": (2, 64, HIDDEN_SEED), "index": 0, "target": None, "step": 2.0, "max_steps": 5, "dtype": torch.float32},
)
"""Cases of the value check of ``fool``. A target of ``None`` is the class the model already predicts (0 steps);
the second case's budget is too small to fool the model (the image after ``max_steps`` steps comes back)."""


def vis_case(index: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``(model, start (N, 3, H, W), classes (N,), settings)`` of :data:`VIS_CASES` ``[index]``; ``settings`` holds
    ``steps, lr, l2_reg, max_jitter, blur_every, blur_sigma`` and the jitter ``seed``."""
    case = VIS_CASES[index]
    n, size, seed = case["images"]
    start = cached_hidden_images(n, size, seed=seed, dtype=case["dtype"])
    if case["crop"] is not None:
        start = start[..., case["crop"][0]:case["crop"][1]].contiguous()  # (N, 3, 96, 64): not square
    settings = {key: case[key] for key in ("steps", "lr", "l2_reg", "max_jitter", "blur_every", "blur_sigma", "seed")}
    return calibrated_hidden_model(case["dtype"]), start, torch.tensor(case["classes"]), settings


def generator(seed: int) -> torch.Generator:
    """The jitter generator of a case: a fresh one for every call."""
    return torch.Generator().manual_seed(HIDDEN_SEED + seed)


def vis_arguments(index: int) -> tuple[nn.Module, tuple[Any, ...]]:
    """``(model, args)``: ``class_visualization(model, *args)`` for case ``index``, with a fresh generator."""
    model, start, classes, s = vis_case(index)
    args = (start.clone(), classes.clone(), s["steps"], s["lr"], s["l2_reg"], s["max_jitter"], s["blur_every"],
            s["blur_sigma"], generator(s["seed"]))
    return model, args


def fool_case(index: int) -> tuple[nn.Module, torch.Tensor, int, float, int]:
    """``(model, image (3, H, W), target, step, max_steps)`` of :data:`FOOL_CASES` ``[index]``."""
    case = FOOL_CASES[index]
    n, size, seed = case["images"]
    model = calibrated_hidden_model(case["dtype"])
    image = cached_hidden_images(n, size, seed=seed, dtype=case["dtype"])[case["index"]]
    target = case["target"]
    if target is None:
        with torch.no_grad():
            target = int(model(image[None]).argmax())
    return model, image, target, case["step"], case["max_steps"]


# --- the probes ----------------------------------------------------------------------------------------------


def _values(student: Callable[..., Any], arguments: Callable[[int], tuple[nn.Module, tuple[Any, ...]]],
            cases: int) -> list[Any]:
    """What ``student(model, *args)`` returns for each of ``cases`` cases of ``arguments(index)``."""
    results = []
    for index in range(cases):
        model, args = arguments(index)
        results.append(call(student, model, *args))
    return results


def _in_train_mode(student: Callable[..., Any], arguments: Callable[[], tuple[nn.Module, tuple[Any, ...]]]) -> Observations:
    """The student's function on a model put in train mode: its outcome, the modes before and after, the hooks
    and parameter gradients it left, the caller's first tensor afterwards; and, as ``in_eval_mode``, its outcome
    on a fresh copy of the model in eval mode with fresh arguments (a fresh generator included): the student's own
    answer that the train-mode call must reproduce."""
    twin, twin_args = arguments()
    model, args = arguments()
    in_eval_mode = call(student, copy.deepcopy(twin).eval(), *twin_args)
    model.train()
    before, hooks = modes(model), hook_count(model)
    outcome = call(student, model, *args)
    return {
        "call": outcome, "before": before, "after": modes(model), "hooks_left": hook_count(model) - hooks,
        "grads": gradient_sizes(model), "in_eval_mode": in_eval_mode, "input": input_state(args[0]),
    }


@probe
def check_class_visualization(student: Callable[..., Any]) -> Observations:
    """``class_visualization(model, start, classes, steps, lr, l2_reg, max_jitter, blur_every, blur_sigma,
    generator)`` on hidden models and start images: other sizes (one non-square), classes, settings, float64."""
    return {"images": _values(student, vis_arguments, len(VIS_CASES))}


@probe
def check_class_visualization_side_effects(student: Callable[..., Any]) -> Observations:
    """``class_visualization`` on a model in train mode (two start images, so BatchNorm's batch statistics would
    mix them): the result against the student's own result in eval mode, modes, parameter gradients, hooks, the
    caller's start images."""
    return _in_train_mode(student, lambda: vis_arguments(0))


def fool_arguments(index: int) -> tuple[nn.Module, tuple[Any, ...]]:
    """``(model, args)``: ``fool(model, *args)`` for case ``index``."""
    model, image, target, step, max_steps = fool_case(index)
    return model, (image.clone(), target, step, max_steps)


@probe
def check_fool(student: Callable[..., Any]) -> Observations:
    """``fool(model, image, target, step, max_steps)`` on hidden images and targets: the image and the step count
    it returns, for images the model needs several steps for, one it already gives the target (0 steps), one whose
    budget is too small, and float64."""
    return {"results": _values(student, fool_arguments, len(FOOL_CASES))}


@probe
def check_fool_side_effects(student: Callable[..., Any]) -> Observations:
    """``fool`` on a model in train mode: the result against the student's own result in eval mode, modes,
    parameter gradients, hooks, the caller's image."""
    return _in_train_mode(student, lambda: fool_arguments(0))
