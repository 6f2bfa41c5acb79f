"""The references of notebook 01_autograd are right, and its hidden checks accept correct and reject wrong work."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader_tests.judges import autograd as ag
from grader_tests.kernel import autograd as probes

# --- the references against independent math ---------------------------------------------------------------


def test_gradient_at_matches_hand_derivatives() -> None:
    x = torch.tensor([-1.5, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(ag.gradient_at(lambda t: (t**3).sum(), x), 3 * x**2)
    torch.testing.assert_close(ag.gradient_at(lambda t: (t * torch.sin(t)).sum(), x), torch.sin(x) + x * torch.cos(x))
    a = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(ag.gradient_at(lambda t: (a * t).sum(), torch.zeros(2, 3, dtype=torch.float64)), a)


def test_gradient_at_matches_central_differences() -> None:
    matrix = torch.randn(4, 3, dtype=torch.float64)

    def f(t: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(t @ matrix, dim=1).sum()

    x = torch.randn(2, 4, dtype=torch.float64)
    h = 1e-6
    numeric = torch.zeros_like(x)
    for index in range(x.numel()):
        step = torch.zeros(x.numel(), dtype=torch.float64)
        step[index] = h
        step = step.view_as(x)
        numeric.view(-1)[index] = (f(x + step) - f(x - step)) / (2 * h)
    torch.testing.assert_close(ag.gradient_at(f, x), numeric, rtol=1e-6, atol=1e-8)


def test_gradient_at_leaves_the_point_alone() -> None:
    x = torch.randn(5)
    gradient = ag.gradient_at(lambda t: (t**2).sum(), x)
    assert not x.requires_grad and x.grad is None
    assert not gradient.requires_grad


def _linear_problem(seed: int = 3) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    return nn.Linear(6, 4).double(), torch.randn(10, 6, dtype=torch.float64), torch.randint(4, (10,))


def test_linear_gradients_match_central_differences() -> None:
    layer, x, labels = _linear_problem()
    grad_weight, grad_bias = ag.linear_grads_closed_form(layer, x, labels)
    h = 1e-6
    for (i, j) in [(0, 0), (2, 5), (3, 1)]:
        with torch.no_grad():
            layer.weight[i, j] += h
            up = F.cross_entropy(layer(x), labels)
            layer.weight[i, j] -= 2 * h
            down = F.cross_entropy(layer(x), labels)
            layer.weight[i, j] += h
        assert abs((up - down).item() / (2 * h) - grad_weight[i, j].item()) < 1e-7
    with torch.no_grad():
        layer.bias[1] += h
        up = F.cross_entropy(layer(x), labels)
        layer.bias[1] -= 2 * h
        down = F.cross_entropy(layer(x), labels)
        layer.bias[1] += h
    assert abs((up - down).item() / (2 * h) - grad_bias[1].item()) < 1e-7


def test_linear_references_agree_and_leave_grad_alone() -> None:
    layer, x, labels = _linear_problem()
    by_autograd = ag.linear_grads_autograd(layer, x, labels)
    by_formula = ag.linear_grads_closed_form(layer, x, labels)
    for a, b in zip(by_autograd, by_formula):
        torch.testing.assert_close(a, b)
    assert layer.weight.grad is None and layer.bias.grad is None
    torch.testing.assert_close(by_formula[1].sum(), torch.tensor(0.0, dtype=torch.float64))  # rows of P - Y sum to 0


def test_sgd_step_equals_torch_optim_sgd_and_lowers_the_loss() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randint(3, (12,))
    twin = copy.deepcopy(model)
    for parameter in model.parameters():  # stale gradients must not matter
        parameter.grad = torch.ones_like(parameter)

    loss = ag.sgd_step(model, x, y, lr=0.1)

    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    optimizer.zero_grad()
    expected_loss = F.cross_entropy(twin(x), y)
    expected_loss.backward()
    optimizer.step()
    assert isinstance(loss, float) and loss == pytest.approx(expected_loss.item())
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)
    with torch.no_grad():
        assert F.cross_entropy(model(x), y).item() < loss


# --- student functions: correct alternatives and fabricated mistakes ---------------------------------------


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def gradient_at_backward(f, x):
    point = x.clone().detach()
    point.requires_grad = True
    f(point).backward()
    return point.grad


def gradient_at_functional(f, x):
    return torch.func.grad(f)(x).detach()


def gradient_at_mutating(f, x):
    x.requires_grad_(True)
    (gradient,) = torch.autograd.grad(f(x), x)
    return gradient


def gradient_at_restores_x(f, x):
    x.requires_grad_(True)
    try:
        (gradient,) = torch.autograd.grad(f(x), x)
    finally:
        x.requires_grad_(False)
    return gradient


def gradient_at_leaves_grad_on_x(f, x):
    x.requires_grad_(True)
    f(x).backward()
    gradient = x.grad.clone()
    x.requires_grad_(False)
    return gradient


def gradient_at_forward_difference(f, x):
    h = 1e-2
    flat = x.detach().reshape(-1)
    out = torch.zeros_like(flat)
    for index in range(flat.numel()):
        step = torch.zeros_like(flat)
        step[index] = h
        out[index] = (f((flat + step).view_as(x)) - f(x)) / h
    return out.view_as(x).detach()


def gradient_at_returns_value(f, x):
    return f(x.detach()).detach().expand_as(x).clone()


def gradient_at_with_history(f, x):
    point = x.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(f(point), point, create_graph=True)
    return gradient * 1.0


@pytest.mark.parametrize(
    "student", [ag.gradient_at, gradient_at_backward, gradient_at_functional, gradient_at_restores_x]
)
def test_check_gradient_at_accepts(student) -> None:
    probes.check_gradient_at(student)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (not_implemented, "not implemented"),
        (gradient_at_mutating, "changed the caller's x"),
        (gradient_at_leaves_grad_on_x, "changed the caller's x"),
        (gradient_at_forward_difference, "wrong values"),
        (gradient_at_returns_value, "wrong values"),
        (gradient_at_with_history, "autograd history"),
    ],
)
def test_check_gradient_at_rejects(student, message) -> None:
    with pytest.raises(AssertionError, match=message):
        probes.check_gradient_at(student)


def linear_autograd_on_a_copy(layer, x, labels):
    twin = copy.deepcopy(layer)
    twin.zero_grad()
    F.cross_entropy(twin(x), labels).backward()
    return twin.weight.grad, twin.bias.grad


def linear_autograd_functional(layer, x, labels):
    def loss(params):
        return F.cross_entropy(torch.func.functional_call(layer, params, (x,)), labels)

    grads = torch.func.grad(loss)({name: p.detach() for name, p in layer.named_parameters()})
    return grads["weight"], grads["bias"]


def linear_autograd_backward(layer, x, labels):
    F.cross_entropy(layer(x), labels).backward()
    return layer.weight.grad, layer.bias.grad


def linear_autograd_backward_then_clear(layer, x, labels):
    layer.zero_grad()
    F.cross_entropy(layer(x), labels).backward()
    grads = layer.weight.grad.clone(), layer.bias.grad.clone()
    layer.zero_grad()
    return grads


def linear_autograd_sum_reduction(layer, x, labels):
    loss = F.cross_entropy(layer(x), labels, reduction="sum")
    return tuple(torch.autograd.grad(loss, [layer.weight, layer.bias]))


def linear_autograd_double_softmax(layer, x, labels):
    loss = F.cross_entropy(torch.softmax(layer(x), dim=1), labels)
    return tuple(torch.autograd.grad(loss, [layer.weight, layer.bias]))


def linear_autograd_transposed(layer, x, labels):
    grad_weight, grad_bias = ag.linear_grads_autograd(layer, x, labels)
    return grad_weight.T, grad_bias


def linear_autograd_weight_only(layer, x, labels):
    return torch.autograd.grad(F.cross_entropy(layer(x), labels), layer.weight)[0]


@pytest.mark.parametrize("student", [ag.linear_grads_autograd, linear_autograd_on_a_copy, linear_autograd_functional])
def test_check_linear_grads_autograd_accepts(student) -> None:
    probes.check_linear_grads_autograd(student)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (not_implemented, "not implemented"),
        (linear_autograd_backward, r"changed the layer's \.grad"),
        (linear_autograd_backward_then_clear, r"changed the layer's \.grad"),
        (linear_autograd_sum_reduction, "wrong values"),
        (linear_autograd_double_softmax, "wrong values"),
        (linear_autograd_transposed, "shape"),
        (linear_autograd_weight_only, "pair"),
    ],
)
def test_check_linear_grads_autograd_rejects(student, message) -> None:
    with pytest.raises(AssertionError, match=message):
        probes.check_linear_grads_autograd(student)


def closed_form_log_softmax(layer, x, labels):
    probs = F.log_softmax(F.linear(x, layer.weight, layer.bias), dim=1).exp()
    probs[torch.arange(len(labels)), labels] -= 1
    return probs.T @ x / len(labels), probs.mean(0)


def closed_form_eye(layer, x, labels):
    logits = x @ layer.weight.t() + layer.bias
    probs = torch.exp(logits - logits.max(1, keepdim=True).values)
    probs = probs / probs.sum(1, keepdim=True)
    delta = probs - torch.eye(logits.shape[1], dtype=x.dtype)[labels]
    return torch.einsum("nk,nd->kd", delta, x) / x.shape[0], delta.sum(0) / x.shape[0]


def closed_form_no_mean(layer, x, labels):
    probs = torch.softmax(x @ layer.weight.T + layer.bias, dim=1)
    delta = probs - F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return delta.T @ x, delta.sum(0)


def closed_form_sign_flipped(layer, x, labels):
    grad_weight, grad_bias = ag.linear_grads_closed_form(layer, x, labels)
    return -grad_weight, -grad_bias


def closed_form_with_autograd(layer, x, labels):
    loss = F.cross_entropy(layer(x), labels)
    return tuple(torch.autograd.grad(loss, [layer.weight, layer.bias]))


def closed_form_forgot_softmax(layer, x, labels):
    logits = x @ layer.weight.T + layer.bias
    delta = (logits - F.one_hot(labels, logits.shape[1]).to(logits.dtype)) / x.shape[0]
    return delta.T @ x, delta.sum(0)


@pytest.mark.parametrize("student", [ag.linear_grads_closed_form, closed_form_log_softmax, closed_form_eye])
def test_check_linear_grads_closed_form_accepts(student) -> None:
    probes.check_linear_grads_closed_form(student)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (not_implemented, "not implemented"),
        (closed_form_no_mean, "wrong values"),
        (closed_form_sign_flipped, "wrong values"),
        (closed_form_with_autograd, r"torch\.no_grad"),
        (closed_form_forgot_softmax, "wrong values"),
    ],
)
def test_check_linear_grads_closed_form_rejects(student, message) -> None:
    with pytest.raises(AssertionError, match=message):
        probes.check_linear_grads_closed_form(student)


def sgd_with_optimizer(model, images, labels, lr):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    optimizer.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return float(loss)


def sgd_zero_fill(model, images, labels, lr):
    for parameter in model.parameters():
        if parameter.grad is not None:
            parameter.grad.zero_()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.sub_(lr * parameter.grad)
    return loss  # a 0-dim tensor converts to float


def sgd_no_zeroing(model, images, labels, lr):
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= lr * parameter.grad
    return loss.item()


def sgd_loss_after(model, images, labels, lr):
    ag.sgd_step(model, images, labels, lr)
    with torch.no_grad():
        return F.cross_entropy(model(images), labels).item()


def sgd_ascent(model, images, labels, lr):
    return ag.sgd_step(model, images, labels, -lr)


def sgd_rebinds(model, images, labels, lr):
    model.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    for parameter in model.parameters():
        parameter = parameter - lr * parameter.grad  # noqa: PLW2901 - the bug: the model never changes
    return loss.item()


def sgd_skips_the_biases(model, images, labels, lr):
    model.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.endswith("bias"):
                parameter -= lr * parameter.grad
    return loss.item()


def sgd_without_no_grad(model, images, labels, lr):
    model.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    for parameter in model.parameters():
        parameter -= lr * parameter.grad
    return loss.item()


def sgd_switches_to_train(model, images, labels, lr):
    model.train()
    return ag.sgd_step(model, images, labels, lr)


def sgd_train_then_restore(model, images, labels, lr):
    model.train()
    loss = ag.sgd_step(model, images, labels, lr)
    model.eval()
    return loss


def sgd_returns_nothing(model, images, labels, lr):
    ag.sgd_step(model, images, labels, lr)


@pytest.mark.parametrize("student", [ag.sgd_step, sgd_with_optimizer, sgd_zero_fill])
def test_check_sgd_step_accepts(student) -> None:
    probes.check_sgd_step(student)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (not_implemented, "not implemented"),
        (sgd_no_zeroing, "left over from an earlier step"),
        (sgd_loss_after, "wrong loss"),
        (sgd_ascent, "wrong values"),
        (sgd_rebinds, "left every parameter unchanged"),
        (sgd_skips_the_biases, "is unchanged after the step"),
        (sgd_without_no_grad, "RuntimeError"),
        (sgd_switches_to_train, "train/eval mode"),
        (sgd_train_then_restore, "wrong"),
        (sgd_returns_nothing, "float"),
    ],
)
def test_check_sgd_step_rejects(student, message) -> None:
    with pytest.raises(AssertionError, match=message):
        probes.check_sgd_step(student)


@pytest.mark.parametrize("student", [sgd_ascent, sgd_no_zeroing, sgd_skips_the_biases])
def test_check_sgd_step_says_unchanged_only_when_nothing_moved(student) -> None:
    with pytest.raises(AssertionError) as failure:
        probes.check_sgd_step(student)
    assert "left every parameter unchanged" not in str(failure.value)


def test_check_sgd_step_does_not_call_unmoved_parameters_wrong_values() -> None:
    with pytest.raises(AssertionError) as failure:
        probes.check_sgd_step(sgd_rebinds)
    assert "unchanged" in str(failure.value) and "wrong values" not in str(failure.value)


def test_checks_do_not_print() -> None:
    """Hidden test cells must not write to stderr (nbgrader scores it 0): a noisy student is silenced."""
    import contextlib
    import io

    def noisy(f, x):
        print("debug")
        import sys

        print("warning", file=sys.stderr)
        return ag.gradient_at(f, x)

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        probes.check_gradient_at(noisy)
    assert out.getvalue() == "" and err.getvalue() == ""
