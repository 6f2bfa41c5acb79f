"""Notebook 01_autograd: reference implementations and the judges of its hidden checks. Instructor-only: never
released.

Conventions (the notebook states them too): the loss is the *mean* cross-entropy of logits
(``F.cross_entropy`` with its default ``reduction="mean"``); returned gradients carry no autograd history; a
function that is not meant to touch ``.grad`` leaves every ``.grad`` as it found it.

The probes of :mod:`grader_tests.kernel.autograd` run the student's functions on inputs the student never saw
(seeded by :data:`~grader_tests.kernel.inputs.HIDDEN_SEED`) and record what happened; each judge here rebuilds
the inputs, compares with the references and raises ``AssertionError`` with a message that names the problem,
not the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from grader_tests.kernel.autograd import autograd_problems, gradient_cases, linear_problems, sgd_problem
from grader_tests.kernel.record import Observations

from . import judge, reference
from .common import assert_tensor_close
from .records import Foreign, Recorded, restore, returned

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


# --- judges -------------------------------------------------------------------------------------------------


def _as_pair(result: object, what: str) -> tuple[object, object]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        name = type(result).__name__
        if isinstance(result, (Recorded, Foreign)):
            name = "Tensor" if isinstance(result, Recorded) else result.type_name
        raise AssertionError(f"{what} should return a pair (grad_weight, grad_bias), got {name}")
    return result[0], result[1]


@reference()
def _gradient_references() -> tuple[tuple[str, torch.Tensor, torch.Tensor], ...]:
    """``(description, x, df/dx at x)`` of each unseen function: computed once per process, as they depend only on
    the hidden cases (callers only read them)."""
    return tuple((description, x, gradient_at(f, x)) for description, f, x in gradient_cases())


@judge
def check_gradient_at(observations: Observations) -> None:
    """Gradients of unseen scalar functions (a polynomial, a vector, a matrix, a float32 tensor, and a CNN
    class score with respect to an image), and no side effect on the caller's ``x``."""
    for (description, x, expected), seen in zip(_gradient_references(), observations["cases"], strict=True):
        what = f"gradient_at on {description}"
        result = returned(seen["call"], what)
        x_after = restore(seen["x"])
        if x_after.requires_grad or seen["x_has_grad"]:
            raise AssertionError(f"{what} changed the caller's x (requires_grad or .grad): work on a detached copy")
        if not torch.equal(x_after.tensor, x):
            raise AssertionError(f"{what} changed the values of the caller's x")
        if isinstance(result, Recorded) and result.requires_grad:
            raise AssertionError(f"{what} returned a tensor that still carries autograd history")
        assert_tensor_close(result, expected, what, rtol=1e-5, atol=1e-6)


@judge
def check_linear_grads_autograd(observations: Observations) -> None:
    """Unseen layers, batches and dtypes; the layer's ``.grad`` (``None``, or a stale gradient left by an
    earlier backward) must be left exactly as it was."""
    for (description, layer, x, labels), seen in zip(autograd_problems(), observations["cases"], strict=True):
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


@judge
def check_linear_grads_closed_form(observations: Observations) -> None:
    """Unseen layers, batches and dtypes, run inside ``torch.no_grad()`` (the task forbids autograd)."""
    for (description, layer, x, labels), outcome in zip(linear_problems(), observations["results"], strict=True):
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


@reference()
def _sgd_reference() -> tuple[float, dict[str, torch.Tensor], dict[str, torch.Tensor], float, dict[str, torch.Tensor]]:
    """``(lr, stale gradients, parameters before, loss, parameters after)`` of the reference step on the unseen
    problem: computed once per process, as it depends only on the hidden case (callers only read it)."""
    model, images, labels, lr = sgd_problem()
    stale = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    expected_loss = sgd_step(model, images, labels, lr)
    return lr, stale, before, expected_loss, {name: parameter.detach() for name, parameter in model.named_parameters()}


@judge
def check_sgd_step(observations: Observations) -> None:
    """One step on an unseen CNN in eval mode whose parameters hold stale gradients; the updated parameters,
    the returned loss and the untouched train/eval flags are compared with the reference."""
    lr, stale, before, expected_loss, expected = _sgd_reference()

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
    moved = [name for name in expected if not torch.equal(expected[name], before[name])]
    unchanged = [
        name for name in moved
        if isinstance(parameters.get(name), torch.Tensor) and parameters[name].shape == before[name].shape
        and torch.equal(parameters[name], before[name])
    ]
    if unchanged and len(unchanged) == len(moved):
        raise AssertionError(
            f"{what} left every parameter unchanged: update them in place (parameter -= lr * parameter.grad inside "
            "torch.no_grad()); `parameter = parameter - ...` only rebinds a local name"
        )
    for name, parameter in parameters.items():
        if name in unchanged:
            raise AssertionError(f"{what}: parameter {name} is unchanged after the step; update every parameter")
        assert_tensor_close(parameter, expected[name], f"{what}: parameter {name} after the step", rtol=1e-6, atol=1e-9)


def _matches_stale_update(
    parameters: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], stale: dict[str, torch.Tensor], lr: float
) -> bool:
    """Whether ``parameters`` hold the result of the update with the stale gradients added to the fresh ones."""
    return all(
        torch.allclose(parameter, expected[name] - lr * stale[name], rtol=1e-6, atol=1e-9)
        for name, parameter in parameters.items()
    )
