"""Notebook 01_autograd: reference implementations and hidden checks. Instructor-only: never released.

Conventions (the notebook states them too): the loss is the *mean* cross-entropy of logits
(``F.cross_entropy`` with its default ``reduction="mean"``); returned gradients carry no autograd history; a
function that is not meant to touch ``.grad`` leaves every ``.grad`` as it found it.

Each ``check_*`` is a :class:`~grader_tests.recording.HiddenCheck`: its probe runs the student's function on
inputs the student never saw (seeded by :data:`grader_tests.common.HIDDEN_SEED`) and records what happened; its
judge rebuilds the inputs, compares with the references and raises ``AssertionError`` with a message that names
the problem, not the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .common import HIDDEN_SEED, assert_tensor_close, hidden_images, hidden_model, modes
from .recording import Foreign, Observations, Recorded, call, hidden_check, restore, returned, snapshot

# --- references ---------------------------------------------------------------------------------------------


def gradient_at(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``df/dx`` at ``x`` for a scalar ``f``, shaped like ``x``; ``x`` itself is not modified."""
    point = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(f(point), point)
    return gradient


def linear_grads_autograd(
    layer: nn.Linear, x: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dW, dL/db)`` of ``L = cross_entropy(layer(x), labels)`` (mean over the batch), by autograd.

    ``torch.autograd.grad`` returns the gradients instead of adding them to ``.grad``: the layer is untouched.
    """
    with torch.enable_grad():
        loss = F.cross_entropy(layer(x), labels)
        grad_weight, grad_bias = torch.autograd.grad(loss, [layer.weight, layer.bias])
    return grad_weight, grad_bias


def linear_grads_closed_form(
    layer: nn.Linear, x: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same gradients without autograd: with ``P = softmax(x W^T + b)`` and one-hot ``Y``,
    ``dL/dW = (P - Y)^T x / N`` ``(K, D)`` and ``dL/db = sum_i (P - Y)_i / N`` ``(K,)``."""
    with torch.no_grad():
        probs = torch.softmax(x @ layer.weight.T + layer.bias, dim=1)
        delta = (probs - F.one_hot(labels, probs.shape[1]).to(probs.dtype)) / x.shape[0]
        return delta.T @ x, delta.sum(0)


def sgd_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, lr: float) -> float:
    """One step of plain gradient descent ``theta <- theta - lr * dL/dtheta`` on the mean cross-entropy.

    Clears old gradients first, keeps the model's train/eval mode, updates in place under ``no_grad`` every
    parameter that received a gradient, and returns the loss *before* the update.
    """
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter -= lr * parameter.grad
    return loss.item()


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


def _linear_problems() -> list[tuple[str, nn.Linear, torch.Tensor, torch.Tensor]]:
    return [
        ("a float64 layer 7 -> 4 on a batch of 9", *_linear_problem(7, 4, 9, torch.float64, 2)),
        ("a float32 layer 3 -> 5 on a batch of 1", *_linear_problem(3, 5, 1, torch.float32, 3)),
        ("a float64 layer 16 -> 6 on a batch of 32", *_linear_problem(16, 6, 32, torch.float64, 4)),
    ]


def _gradient_cases() -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor], torch.Tensor]]:
    """The scalar functions, and a class score of an unseen CNN with respect to an unseen image."""
    model = hidden_model(width=1 / 32)
    image = hidden_images(1, size=32)[0]
    cnn_case = ("a class score of a CNN with respect to its input image", lambda t: model(t[None])[0, 3], image)
    return [*_scalar_functions(), cnn_case]


def _autograd_problems() -> list[tuple[str, nn.Linear, torch.Tensor, torch.Tensor]]:
    """The linear problems; the last layer holds a stale gradient from an earlier step (accumulating into it is
    the bug to catch)."""
    problems = _linear_problems()
    _, layer, _, _ = problems[2]
    layer.weight.grad = torch.full_like(layer.weight, 0.5)
    layer.bias.grad = torch.full_like(layer.bias, -0.5)
    return problems


def _sgd_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    """An unseen CNN in eval mode whose parameters hold stale gradients, a batch and a learning rate."""
    model = hidden_model(width=1 / 32, dtype=torch.float64)
    images = hidden_images(3, size=32, dtype=torch.float64)
    labels = torch.tensor([4, 0, 2])
    g = _generator(5)
    for parameter in model.parameters():  # left over from an earlier step
        parameter.grad = torch.randn(parameter.shape, generator=g, dtype=parameter.dtype)
    return model, images, labels, 0.05


def _as_pair(result: object, what: str) -> tuple[object, object]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        name = type(result).__name__
        if isinstance(result, (Recorded, Foreign)):
            name = "Tensor" if isinstance(result, Recorded) else result.type_name
        raise AssertionError(f"{what} should return a pair (grad_weight, grad_bias), got {name}")
    return result[0], result[1]


def _grad(parameter: torch.Tensor) -> torch.Tensor | None:
    """Probe side: a parameter's ``.grad`` as it is now (``None`` or a copy)."""
    return None if parameter.grad is None else parameter.grad.detach().clone()


def _loss_as_float(value: object) -> tuple[str, float | None]:
    """Probe side: the student's loss as plain data, its type's name and ``float(value)`` (``None`` where that
    fails), so a numpy scalar or a 0-dim tensor reaches the judge as a number."""
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        number = None
    return type(value).__name__, number


# --- checks -------------------------------------------------------------------------------------------------


def _probe_gradient_at(student: Callable) -> Observations:
    cases = []
    for _, f, x in _gradient_cases():
        outcome = call(student, f, x)
        cases.append({"call": outcome, "x": snapshot(x), "x_has_grad": x.grad is not None})
    return {"cases": cases}


@hidden_check(_probe_gradient_at)
def check_gradient_at(observations: Observations) -> None:
    """Gradients of unseen scalar functions (a polynomial, a vector, a matrix, a float32 tensor, and a CNN
    class score with respect to an image), and no side effect on the caller's ``x``."""
    for (description, f, x), seen in zip(_gradient_cases(), observations["cases"], strict=True):
        what = f"gradient_at on {description}"
        result = returned(seen["call"], what)
        x_after = restore(seen["x"])
        if x_after.requires_grad or seen["x_has_grad"]:
            raise AssertionError(f"{what} changed the caller's x (requires_grad or .grad): work on a detached copy")
        if not torch.equal(x_after.tensor, x):
            raise AssertionError(f"{what} changed the values of the caller's x")
        if isinstance(result, Recorded) and result.requires_grad:
            raise AssertionError(f"{what} returned a tensor that still carries autograd history")
        assert_tensor_close(result, gradient_at(f, x), what, rtol=1e-5, atol=1e-6)


def _probe_linear_grads_autograd(student: Callable) -> Observations:
    cases = []
    for _, layer, x, labels in _autograd_problems():
        outcome = call(student, layer, x, labels)
        parameters = (layer.weight, layer.bias)
        cases.append({
            "call": outcome,
            "grads": [_grad(p) for p in parameters],
            "parameters": [p.detach().clone() for p in parameters],
        })
    return {"cases": cases}


@hidden_check(_probe_linear_grads_autograd)
def check_linear_grads_autograd(observations: Observations) -> None:
    """Unseen layers, batches and dtypes; the layer's ``.grad`` (``None``, or a stale gradient left by an
    earlier backward) must be left exactly as it was."""
    for (description, layer, x, labels), seen in zip(_autograd_problems(), observations["cases"], strict=True):
        what = f"linear_grads_autograd on {description}"
        grad_weight, grad_bias = _as_pair(returned(seen["call"], what), what)
        after = zip((layer.weight, layer.bias), seen["grads"], seen["parameters"], strict=True)
        for parameter, grad_after, value_after in after:
            if parameter.grad is None:
                unchanged = grad_after is None
            else:
                unchanged = grad_after is not None and torch.equal(grad_after, parameter.grad)
            if not unchanged:
                raise AssertionError(f"{what} changed the layer's .grad: return the gradients with torch.autograd.grad "
                                     "instead of accumulating them with .backward()")
            if not torch.equal(value_after, parameter.detach()):
                raise AssertionError(f"{what} changed the layer's parameters")
        expected_weight, expected_bias = linear_grads_autograd(layer, x, labels)
        assert_tensor_close(grad_weight, expected_weight, f"{what}: the weight gradient", rtol=1e-5, atol=1e-6)
        assert_tensor_close(grad_bias, expected_bias, f"{what}: the bias gradient", rtol=1e-5, atol=1e-6)


def _probe_linear_grads_closed_form(student: Callable) -> Observations:
    with torch.no_grad():  # the task forbids autograd
        return {"results": [call(student, layer, x, labels) for _, layer, x, labels in _linear_problems()]}


@hidden_check(_probe_linear_grads_closed_form)
def check_linear_grads_closed_form(observations: Observations) -> None:
    """Unseen layers, batches and dtypes, run inside ``torch.no_grad()`` (the task forbids autograd)."""
    for (description, layer, x, labels), outcome in zip(_linear_problems(), observations["results"], strict=True):
        what = f"linear_grads_closed_form on {description}"
        try:
            result = returned(outcome, what)
        except AssertionError as error:
            if "grad" in str(error):
                hint = "(it runs inside torch.no_grad(): compute the formula, not autograd)"
                raise AssertionError(f"{error} {hint}") from None
            raise
        grad_weight, grad_bias = _as_pair(result, what)
        expected_weight, expected_bias = linear_grads_closed_form(layer, x, labels)
        assert_tensor_close(grad_weight, expected_weight, f"{what}: the weight gradient", rtol=1e-5, atol=1e-6)
        assert_tensor_close(grad_bias, expected_bias, f"{what}: the bias gradient", rtol=1e-5, atol=1e-6)


def _probe_sgd_step(student: Callable) -> Observations:
    model, images, labels, lr = _sgd_problem()
    outcome = call(lambda *args: _loss_as_float(student(*args)), model, images, labels, lr)
    return {
        "call": outcome,
        "modes": modes(model),
        "parameters": {name: parameter.detach().clone() for name, parameter in model.named_parameters()},
    }


@hidden_check(_probe_sgd_step)
def check_sgd_step(observations: Observations) -> None:
    """One step on an unseen CNN in eval mode whose parameters hold stale gradients; the updated parameters,
    the returned loss and the untouched train/eval flags are compared with the reference."""
    model, images, labels, lr = _sgd_problem()
    stale = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
    expected_loss = sgd_step(model, images, labels, lr)
    expected = {name: parameter.detach() for name, parameter in model.named_parameters()}

    what = "sgd_step on an unseen model"
    type_name, loss = returned(observations["call"], what)
    if loss is None:
        raise AssertionError(f"{what} should return the loss as a float, got {type_name}")
    if any(observations["modes"]):
        raise AssertionError(f"{what} changed the model's train/eval mode: leave it as it is")
    if not math.isclose(loss, expected_loss, rel_tol=1e-6, abs_tol=1e-9):
        raise AssertionError(f"{what} returned a wrong loss: return the mean cross-entropy computed before the update")
    parameters = observations["parameters"]
    if _matches_stale_update(parameters, expected, stale, lr):
        raise AssertionError(f"{what}: the update also used the gradients left over from an earlier step "
                             "(.backward() adds to .grad): clear them before the backward pass")
    for name, parameter in parameters.items():
        assert_tensor_close(parameter, expected[name], f"{what}: parameter {name} after the step", rtol=1e-6, atol=1e-9)


def _matches_stale_update(
    parameters: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], stale: dict[str, torch.Tensor], lr: float
) -> bool:
    """Whether ``parameters`` hold the result of the update with the stale gradients added to the fresh ones."""
    return all(
        torch.allclose(parameter, expected[name] - lr * stale[name], rtol=1e-6, atol=1e-9)
        for name, parameter in parameters.items()
    )
