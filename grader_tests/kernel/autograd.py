"""Probes of ``01_autograd``: the student's ``gradient_at``, ``linear_grads_autograd``,
``linear_grads_closed_form`` and ``sgd_step`` on inputs the student never saw (seeded by
:data:`~grader_tests.kernel.inputs.HIDDEN_SEED`). They record what each call returned, and what it left behind:
the caller's ``x``, the layer's ``.grad`` and parameters, the model's parameters and train/eval flags. Judged in
:mod:`grader_tests.judges.autograd`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .facts import modes
from .inputs import HIDDEN_SEED, hidden_images, hidden_model
from .record import Observations, call, probe, snapshot

# --- hidden inputs ------------------------------------------------------------------------------------------


def _generator(offset: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(HIDDEN_SEED + offset)


def _scalar_functions() -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor], torch.Tensor]]:
    """``(description, f, x)``: scalar functions and points the student never saw."""
    g = _generator(1)
    matrix = torch.randn(4, 3, generator=g, dtype=torch.float64)
    weights = torch.randn(1, 3, 6, 6, generator=g)
    f64 = torch.float64
    return [
        ("a polynomial of a 0-dim tensor", lambda t: t**3 - 2 * t + 1, torch.tensor(1.7, dtype=f64)),
        ("x * sin(x) summed over a vector", lambda t: (t * torch.sin(t)).sum(), torch.randn(7, generator=g, dtype=f64)),
        ("a log-sum-exp of a matrix product", lambda t: torch.logsumexp(t @ matrix, dim=1).sum(),
         torch.randn(5, 4, generator=g, dtype=f64)),
        ("a float32 image-shaped input", lambda t: (weights * t).sum() + (t**2).mean(),
         torch.randn(1, 3, 6, 6, generator=g)),
    ]


def _linear_problem(
    in_features: int, classes: int, batch: int, dtype: torch.dtype, offset: int
) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED + offset)
        layer = nn.Linear(in_features, classes).to(dtype)
        x = torch.randn(batch, in_features, dtype=dtype)
        labels = torch.randint(classes, (batch,))
    return layer, x, labels


def linear_problems() -> list[tuple[str, nn.Linear, torch.Tensor, torch.Tensor]]:
    """``(description, layer, x, labels)``: linear layers, batches and dtypes the student never saw."""
    return [
        ("a float64 layer 7 -> 4 on a batch of 9", *_linear_problem(7, 4, 9, torch.float64, 2)),
        ("a float32 layer 3 -> 5 on a batch of 1", *_linear_problem(3, 5, 1, torch.float32, 3)),
        ("a float64 layer 16 -> 6 on a batch of 32", *_linear_problem(16, 6, 32, torch.float64, 4)),
    ]


def gradient_cases() -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor], torch.Tensor]]:
    """The scalar functions, and a class score of an unseen CNN with respect to an unseen image."""
    model = hidden_model(width=1 / 32)
    image = hidden_images(1, size=32)[0]
    cnn_case = ("a class score of a CNN with respect to its input image", lambda t: model(t[None])[0, 3], image)
    return [*_scalar_functions(), cnn_case]


def autograd_problems() -> list[tuple[str, nn.Linear, torch.Tensor, torch.Tensor]]:
    """The linear problems; the last layer holds a stale gradient from an earlier step (accumulating into it is
    the bug to catch)."""
    problems = linear_problems()
    _, layer, _, _ = problems[2]
    layer.weight.grad = torch.full_like(layer.weight, 0.5)
    layer.bias.grad = torch.full_like(layer.bias, -0.5)
    return problems


def sgd_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    """An unseen CNN in eval mode whose parameters hold stale gradients, a batch and a learning rate."""
    model = hidden_model(width=1 / 32, dtype=torch.float64)
    images = hidden_images(3, size=32, dtype=torch.float64)
    labels = torch.tensor([4, 0, 2])
    g = _generator(5)
    for parameter in model.parameters():  # left over from an earlier step
        parameter.grad = torch.randn(parameter.shape, generator=g, dtype=parameter.dtype)
    return model, images, labels, 0.05


# --- what the probes write down -----------------------------------------------------------------------------


def _grad(parameter: torch.Tensor) -> torch.Tensor | None:
    """A parameter's ``.grad`` as it is now (``None`` or a copy)."""
    return None if parameter.grad is None else parameter.grad.detach().clone()


def _loss_as_float(value: object) -> tuple[str, float | None]:
    """The student's loss as plain data, its type's name and ``float(value)`` (``None`` where that fails), so a
    numpy scalar or a 0-dim tensor reaches the judge as a number."""
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        number = None
    return type(value).__name__, number


# --- probes -------------------------------------------------------------------------------------------------


@probe
def check_gradient_at(student: Callable) -> Observations:
    """``gradient_at`` on unseen scalar functions and points: each result, and the caller's ``x`` afterwards."""
    cases = []
    for _, f, x in gradient_cases():
        outcome = call(student, f, x)
        cases.append({"call": outcome, "x": snapshot(x), "x_has_grad": x.grad is not None})
    return {"cases": cases}


@probe
def check_linear_grads_autograd(student: Callable) -> Observations:
    """``linear_grads_autograd`` on unseen layers (one with a stale ``.grad``): each result, and the layer's
    ``.grad`` and parameters afterwards."""
    cases = []
    for _, layer, x, labels in autograd_problems():
        outcome = call(student, layer, x, labels)
        parameters = (layer.weight, layer.bias)
        cases.append({
            "call": outcome,
            "grads": [_grad(p) for p in parameters],
            "parameters": [p.detach().clone() for p in parameters],
        })
    return {"cases": cases}


@probe
def check_linear_grads_closed_form(student: Callable) -> Observations:
    """``linear_grads_closed_form`` on unseen layers, inside ``torch.no_grad()``: each result."""
    with torch.no_grad():  # the task forbids autograd
        return {"results": [call(student, layer, x, labels) for _, layer, x, labels in linear_problems()]}


@probe
def check_sgd_step(student: Callable) -> Observations:
    """``sgd_step`` on an unseen CNN with stale gradients: the returned loss (as a number), the train/eval flags
    and the parameters afterwards."""
    model, images, labels, lr = sgd_problem()
    outcome = call(lambda *args: _loss_as_float(student(*args)), model, images, labels, lr)
    return {
        "call": outcome,
        "modes": modes(model),
        "parameters": {name: parameter.detach().clone() for name, parameter in model.named_parameters()},
    }
