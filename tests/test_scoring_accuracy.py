"""Scoring accuracy of the hidden checks, cell by cell, as the autograder scores a notebook.

For every graded function of the solution notebooks the table below holds answer cells a student would
plausibly write, as *source code*:

* correct alternatives (other APIs, float64 inside, numpy where the text allows it) must score the full points
  of every graded cell whose hidden block checks that function;
* plausible bugs must lose exactly the points of the cells listed for them (usually one: one bug, one cell), and
  each failing cell's message must name the part that is wrong.

The graded cells, their points and their hidden calls (``check_x(args...)``) are read from the notebooks, so the
table follows the notebooks. A case runs in a namespace like the notebook's: the set-up imports, the reference
versions of the notebook's other functions (from its solution cells), the notebook globals the checks need
(``activation_list``), and then the student's cell, which replaces the reference of its own function.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import helpers
from helpers.plotting import plot_activations

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {
    "01": ROOT / "solutions/01_autograd/autograd.ipynb",
    "02": ROOT / "solutions/02_parameters/parameters.ipynb",
    "03": ROOT / "solutions/03_filters/filters.ipynb",
    "04": ROOT / "solutions/04_activations/activations.ipynb",
    "05": ROOT / "solutions/05_saliency/saliency.ipynb",
    "06": ROOT / "solutions/06_gradcam/gradcam.ipynb",
    "07": ROOT / "solutions/07_patches/patches.ipynb",
    "08": ROOT / "solutions/08_dissection/dissection.ipynb",
    "09": ROOT / "solutions/09_embeddings/embeddings.ipynb",
    "10": ROOT / "solutions/10_class_visualization/class_visualization.ipynb",
    "11": ROOT / "solutions/11_occlusion/occlusion.ipynb",
    "12": ROOT / "solutions/12_attributions/attributions.ipynb",
    "13": ROOT / "solutions/13_sanity_checks/sanity_checks.ipynb",
    "14": ROOT / "solutions/14_shortcut/shortcut.ipynb",
}
FUNCTIONS = {
    "01": ["gradient_at", "linear_grads_autograd", "linear_grads_closed_form", "sgd_step"],
    "02": ["get_module_params_num", "conv2d_params", "linear_params"],
    "03": ["get_conv1_filters", "achromatic_share"],
    "04": ["show_activations_hook", "register_activation_hooks"],
    "05": ["compute_gradient_score", "saliency_map"],
    "06": ["class_activation_map", "vis_gradcam"],
    "07": ["receptive_fields", "top_patches"],
    "08": ["unit_thresholds", "dissection_iou"],
    "09": ["nearest_neighbours", "knn_accuracy"],
    "10": ["class_visualization", "fool"],
    "11": ["occlusion_drops", "occlusion_map"],
    "12": ["smoothgrad", "integrated_gradients"],
    "13": ["rank_correlation", "perturbation_curve", "curve_area"],
    "14": ["locate_cue", "cue_class", "augmentation"],
}
NOTEBOOK_OF = {function: notebook for notebook, functions in FUNCTIONS.items() for function in functions}


# --- the notebooks: graded cells and their hidden calls -------------------------------------------------------


@dataclass(frozen=True)
class HiddenCall:
    module: str  # grader_tests.kernel.<topic>
    probe: str  # check_x
    args: tuple[str, ...]  # argument expressions, evaluated in the notebook's namespace


@dataclass(frozen=True)
class GradedCell:
    grade_id: str
    points: float
    calls: tuple[HiddenCall, ...]
    visible: str = ""  # the cell as the student sees it: the hidden block removed

    def checks(self, function: str) -> bool:
        return any(function in call.args for call in self.calls)


def _hidden_block(source: str) -> str:
    start, end = source.index("### BEGIN HIDDEN TESTS"), source.index("### END HIDDEN TESTS")
    return source[start:end]


def _visible_part(source: str) -> str:
    start, end = source.index("### BEGIN HIDDEN TESTS"), source.index("### END HIDDEN TESTS")
    return source[:start] + source[end + len("### END HIDDEN TESTS"):]


def _hidden_calls(source: str) -> tuple[HiddenCall, ...]:
    tree = ast.parse(textwrap.dedent(_hidden_block(source)))
    imported = {}
    calls = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            imported.update({alias.asname or alias.name: node.module for alias in node.names})
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
            name = node.value.func.id
            calls.append(HiddenCall(imported[name], name, tuple(ast.unparse(arg) for arg in node.value.args)))
    return tuple(calls)


@functools.cache
def _read(notebook: str) -> tuple[tuple[GradedCell, ...], tuple[str, ...]]:
    """The graded test cells of a solution notebook, and the sources of its solution (answer) code cells."""
    nb = nbformat.read(NOTEBOOKS[notebook], as_version=4)
    graded, solutions = [], []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("grade") and not meta.get("solution"):
            graded.append(GradedCell(meta["grade_id"], float(meta["points"]), _hidden_calls(cell.source),
                                     _visible_part(cell.source)))
        elif meta.get("solution"):
            solutions.append(cell.source)
    return tuple(graded), tuple(solutions)


def graded_cells(function: str) -> list[GradedCell]:
    """The graded cells whose hidden block checks ``function``."""
    return [cell for cell in _read(NOTEBOOK_OF[function])[0] if cell.checks(function)]


def solution_source(function: str) -> str:
    """The solution cell that defines ``function``."""
    (source,) = [s for s in _read(NOTEBOOK_OF[function])[1] if f"def {function}(" in s]
    return source


_BASE = {
    "copy": copy, "functools": functools, "np": np, "torch": torch, "F": F, "nn": nn, "plt": plt,
    "helpers": helpers, "plot_activations": plot_activations,
}
"""The imports every case's cell may use."""


def namespace(function: str, student_source: str) -> dict:
    """The notebook's globals as its graded cells see them, with the student's cell run last."""
    ns = {"__name__": "__main__", **_BASE}
    for source in _read(NOTEBOOK_OF[function])[1]:
        exec(compile(source, "<solution cell>", "exec"), ns)  # noqa: S102 - the course's own solution cells
    exec(compile(textwrap.dedent(student_source), f"<student's {function}>", "exec"), ns)  # noqa: S102
    return ns


VISIBLE_NOTEBOOKS = ("07", "08", "09", "10", "11", "12", "13", "14")
"""Notebooks whose cases also run the visible part of each graded cell, in the notebook's own globals."""


@functools.lru_cache(maxsize=1)
def _notebook_globals(notebook: str) -> dict:
    """The globals of a solved notebook as its last graded cell sees them: every code cell before it run in order
    (solution cells, the visible parts of test cells, set-up and figures), in this process."""
    nb = nbformat.read(NOTEBOOKS[notebook], as_version=4)
    cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    graded = [i for i, cell in enumerate(cells) if cell.metadata.get("nbgrader", {}).get("grade")
              and not cell.metadata["nbgrader"].get("solution")]
    ns: dict = {"__name__": "__main__"}
    with torch.random.fork_rng():
        for cell in cells[: graded[-1]]:
            source = _visible_part(cell.source) if "### BEGIN HIDDEN TESTS" in cell.source else cell.source
            exec(compile(source, f"<{notebook} cell>", "exec"), ns)  # noqa: S102 - the course's own notebook
    plt.close("all")
    return ns


def _fresh(value):
    """A private copy of the notebook's models and tensors, so a student's mistake in one case cannot leak into
    the next; everything else shared."""
    if isinstance(value, (nn.Module, torch.Tensor)) or type(value).__module__.startswith("helpers"):
        try:
            return copy.deepcopy(value)
        except Exception:  # noqa: BLE001 - an object that cannot be copied is shared
            return value
    return value


def visible_verdicts(function: str, student_source: str) -> dict[str, str | None]:
    """Each graded cell checking ``function``: ``None`` if its visible part passes with the student's cell, else
    the error it shows (an assertion's message, or the exception's name and text)."""
    notebook = NOTEBOOK_OF[function]
    ns = {name: _fresh(value) for name, value in _notebook_globals(notebook).items()}
    for name, value in _BASE.items():  # the imports the table's cells take for granted
        ns.setdefault(name, value)
    exec(compile(textwrap.dedent(student_source), f"<student's {function}>", "exec"), ns)  # noqa: S102
    verdicts: dict[str, str | None] = {}
    with torch.random.fork_rng():
        for cell in graded_cells(function):
            try:
                exec(compile(cell.visible, f"<visible {cell.grade_id}>", "exec"), ns)  # noqa: S102
                verdicts[cell.grade_id] = None
            except AssertionError as failure:
                verdicts[cell.grade_id] = f"visible check: {failure}"
            except Exception as error:  # noqa: BLE001 - nbgrader scores any error as a failed cell
                verdicts[cell.grade_id] = f"visible check: {type(error).__name__}: {error}"
    plt.close("all")
    return verdicts


def score(function: str, student_source: str) -> dict[str, str | None]:
    """Each graded cell checking ``function``: ``None`` if it passes, else its message: the first hidden check's
    that fails, else (notebooks 07-14) the visible part's, as nbgrader would score the cell."""
    ns = namespace(function, student_source)
    verdicts: dict[str, str | None] = {}
    for cell in graded_cells(function):
        verdicts[cell.grade_id] = None
        for hidden in cell.calls:
            check = getattr(importlib.import_module(hidden.module), hidden.probe)
            try:
                check(*(eval(arg, ns) for arg in hidden.args))
            except AssertionError as failure:
                verdicts[cell.grade_id] = str(failure)
                break
    plt.close("all")
    if NOTEBOOK_OF[function] in VISIBLE_NOTEBOOKS:
        for grade_id, message in visible_verdicts(function, student_source).items():
            if verdicts[grade_id] is None:
                verdicts[grade_id] = message
    return verdicts


# --- the table ------------------------------------------------------------------------------------------------
# ALTERNATIVES[function] = {label: source}; BUGS[function] = {label: (source, {grade_id of a cell it loses: a
# phrase that cell's message must contain})}.

ALTERNATIVES: dict[str, dict[str, str]] = {}
BUGS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {}

# 01_autograd ---------------------------------------------------------------------------------------------------

ALTERNATIVES["gradient_at"] = {
    "backward on a detached copy": """
        def gradient_at(f, x):
            point = x.clone().detach()
            point.requires_grad = True
            f(point).backward()
            return point.grad
        """,
    "torch.func.grad, detached": """
        def gradient_at(f, x):
            return torch.func.grad(f)(x).detach()
        """,
    "requires_grad on x, restored in finally": """
        def gradient_at(f, x):
            x.requires_grad_(True)
            try:
                (gradient,) = torch.autograd.grad(f(x), x)
            finally:
                x.requires_grad_(False)
            return gradient
        """,
    "torch.autograd.functional.jacobian": """
        def gradient_at(f, x):
            return torch.autograd.functional.jacobian(f, x.detach()).reshape(x.shape)
        """,
}
BUGS["gradient_at"] = {
    "requires_grad left on the caller's x": ("""
        def gradient_at(f, x):
            x.requires_grad_(True)
            (gradient,) = torch.autograd.grad(f(x), x)
            return gradient
        """, {"test_gradient_at": "changed the caller's x"}),
    "create_graph keeps history": ("""
        def gradient_at(f, x):
            point = x.detach().clone().requires_grad_(True)
            (gradient,) = torch.autograd.grad(f(point), point, create_graph=True)
            return gradient
        """, {"test_gradient_at": "autograd history"}),
    "forward difference": ("""
        def gradient_at(f, x):
            h = 1e-2
            flat = x.detach().reshape(-1)
            out = torch.zeros_like(flat)
            for index in range(flat.numel()):
                step = torch.zeros_like(flat)
                step[index] = h
                out[index] = (f((flat + step).view_as(x)) - f(x)) / h
            return out.view_as(x).detach()
        """, {"test_gradient_at": "wrong values"}),
    "torch.func.grad without detach (history through the parameters)": ("""
        def gradient_at(f, x):
            return torch.func.grad(f)(x)
        """, {"test_gradient_at": "autograd history"}),
}

ALTERNATIVES["linear_grads_autograd"] = {
    "backward on a deep copy": """
        def linear_grads_autograd(layer, x, labels):
            twin = copy.deepcopy(layer)
            twin.zero_grad()
            F.cross_entropy(twin(x), labels).backward()
            return twin.weight.grad, twin.bias.grad
        """,
    "torch.func.grad over functional_call": """
        def linear_grads_autograd(layer, x, labels):
            def loss(params):
                return F.cross_entropy(torch.func.functional_call(layer, params, (x,)), labels)

            grads = torch.func.grad(loss)({name: p.detach() for name, p in layer.named_parameters()})
            return grads["weight"], grads["bias"]
        """,
    "float64 inside, back to the layer's dtype": """
        def linear_grads_autograd(layer, x, labels):
            w = layer.weight.detach().double().requires_grad_()
            b = layer.bias.detach().double().requires_grad_()
            loss = F.cross_entropy(x.double() @ w.T + b, labels)
            grad_w, grad_b = torch.autograd.grad(loss, [w, b])
            return grad_w.to(layer.weight.dtype), grad_b.to(layer.bias.dtype)
        """,
    "log_softmax and nll_loss, a list": """
        def linear_grads_autograd(layer, x, labels):
            loss = F.nll_loss(F.log_softmax(layer(x), dim=1), labels)
            return list(torch.autograd.grad(loss, layer.parameters()))
        """,
}
BUGS["linear_grads_autograd"] = {
    "backward into the layer's .grad": ("""
        def linear_grads_autograd(layer, x, labels):
            F.cross_entropy(layer(x), labels).backward()
            return layer.weight.grad, layer.bias.grad
        """, {"test_linear_grads_autograd": "changed the layer's .grad"}),
    "sum instead of mean": ("""
        def linear_grads_autograd(layer, x, labels):
            loss = F.cross_entropy(layer(x), labels, reduction="sum")
            return tuple(torch.autograd.grad(loss, [layer.weight, layer.bias]))
        """, {"test_linear_grads_autograd": "wrong values"}),
    "softmax before cross_entropy": ("""
        def linear_grads_autograd(layer, x, labels):
            loss = F.cross_entropy(torch.softmax(layer(x), dim=1), labels)
            return tuple(torch.autograd.grad(loss, [layer.weight, layer.bias]))
        """, {"test_linear_grads_autograd": "wrong values"}),
    "weight gradient transposed": ("""
        def linear_grads_autograd(layer, x, labels):
            loss = F.cross_entropy(layer(x), labels)
            grad_weight, grad_bias = torch.autograd.grad(loss, [layer.weight, layer.bias])
            return grad_weight.T, grad_bias
        """, {"test_linear_grads_autograd": "shape"}),
}

ALTERNATIVES["linear_grads_closed_form"] = {
    "log_softmax().exp(), minus one at the labels": """
        def linear_grads_closed_form(layer, x, labels):
            probs = F.log_softmax(F.linear(x, layer.weight, layer.bias), dim=1).exp()
            probs[torch.arange(len(labels)), labels] -= 1
            return probs.T @ x / len(labels), probs.mean(0)
        """,
    "stable softmax by hand, eye, einsum": """
        def linear_grads_closed_form(layer, x, labels):
            logits = x @ layer.weight.t() + layer.bias
            probs = torch.exp(logits - logits.max(1, keepdim=True).values)
            probs = probs / probs.sum(1, keepdim=True)
            delta = probs - torch.eye(logits.shape[1], dtype=x.dtype)[labels]
            return torch.einsum("nk,nd->kd", delta, x) / x.shape[0], delta.sum(0) / x.shape[0]
        """,
    "numpy": """
        def linear_grads_closed_form(layer, x, labels):
            W, b, X = layer.weight.detach().numpy(), layer.bias.detach().numpy(), x.numpy()
            logits = X @ W.T + b
            P = np.exp(logits - logits.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            Y = np.eye(W.shape[0], dtype=P.dtype)[labels.numpy()]
            delta = (P - Y) / X.shape[0]
            return torch.from_numpy(delta.T @ X), torch.from_numpy(delta.sum(axis=0))
        """,
    "float64 inside": """
        def linear_grads_closed_form(layer, x, labels):
            X, W, b = x.double(), layer.weight.double(), layer.bias.double()
            delta = (torch.softmax(X @ W.T + b, dim=1) - F.one_hot(labels, W.shape[0]).double()) / len(X)
            return (delta.T @ X).to(x.dtype), delta.sum(0).to(x.dtype)
        """,
}
BUGS["linear_grads_closed_form"] = {
    "no division by N": ("""
        def linear_grads_closed_form(layer, x, labels):
            probs = torch.softmax(x @ layer.weight.T + layer.bias, dim=1)
            delta = probs - F.one_hot(labels, probs.shape[1]).to(probs.dtype)
            return delta.T @ x, delta.sum(0)
        """, {"test_linear_grads_closed_form": "wrong values"}),
    "Y - P (sign flipped)": ("""
        def linear_grads_closed_form(layer, x, labels):
            probs = torch.softmax(x @ layer.weight.T + layer.bias, dim=1)
            delta = (F.one_hot(labels, probs.shape[1]).to(probs.dtype) - probs) / x.shape[0]
            return delta.T @ x, delta.sum(0)
        """, {"test_linear_grads_closed_form": "wrong values"}),
    "autograd instead of the formula": ("""
        def linear_grads_closed_form(layer, x, labels):
            loss = F.cross_entropy(layer(x), labels)
            return tuple(torch.autograd.grad(loss, [layer.weight, layer.bias]))
        """, {"test_linear_grads_closed_form": "torch.no_grad"}),
    "logits instead of probabilities": ("""
        def linear_grads_closed_form(layer, x, labels):
            logits = x @ layer.weight.T + layer.bias
            delta = (logits - F.one_hot(labels, logits.shape[1]).to(logits.dtype)) / x.shape[0]
            return delta.T @ x, delta.sum(0)
        """, {"test_linear_grads_closed_form": "wrong values"}),
}

ALTERNATIVES["sgd_step"] = {
    "torch.optim.SGD": """
        def sgd_step(model, images, labels, lr):
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            return float(loss)
        """,
    "grads zeroed in place, returns the 0-dim loss": """
        def sgd_step(model, images, labels, lr):
            for parameter in model.parameters():
                if parameter.grad is not None:
                    parameter.grad.zero_()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.sub_(lr * parameter.grad)
            return loss
        """,
    "torch.autograd.grad and .data": """
        def sgd_step(model, images, labels, lr):
            params = [p for p in model.parameters() if p.requires_grad]
            loss = F.cross_entropy(model(images), labels)
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads):
                p.data -= lr * g
            return loss.item()
        """,
    "torch.func.grad over functional_call": """
        def sgd_step(model, images, labels, lr):
            params = {name: p.detach() for name, p in model.named_parameters()}

            def loss_of(params):
                return F.cross_entropy(torch.func.functional_call(model, params, (images,)), labels)

            grads, loss = torch.func.grad_and_value(loss_of)(params)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.add_(grads[name], alpha=-lr)
            return loss.item()
        """,
}
BUGS["sgd_step"] = {
    "stale gradients not cleared": ("""
        def sgd_step(model, images, labels, lr):
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter -= lr * parameter.grad
            return loss.item()
        """, {"test_sgd_step": "left over from an earlier step"}),
    "loss after the step": ("""
        def sgd_step(model, images, labels, lr):
            model.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter -= lr * parameter.grad
                return F.cross_entropy(model(images), labels).item()
        """, {"test_sgd_step": "wrong loss"}),
    "switches the model to train mode": ("""
        def sgd_step(model, images, labels, lr):
            model.train()
            model.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter -= lr * parameter.grad
            return loss.item()
        """, {"test_sgd_step": "train/eval mode"}),
    "rebinds a local name": ("""
        def sgd_step(model, images, labels, lr):
            model.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            for parameter in model.parameters():
                parameter = parameter - lr * parameter.grad
            return loss.item()
        """, {"test_sgd_step": "left every parameter unchanged"}),
}

# 02_parameters -------------------------------------------------------------------------------------------------

ALTERNATIVES["get_module_params_num"] = {
    "sum of numel": """
        def get_module_params_num(module):
            return sum(p.numel() for p in module.parameters())
        """,
    "numpy product of the shapes": """
        def get_module_params_num(module):
            return int(sum(np.prod(p.shape) for p in module.parameters()))
        """,
    "parameters_to_vector": """
        def get_module_params_num(module):
            params = list(module.parameters())
            return nn.utils.parameters_to_vector(params).numel() if params else 0
        """,
    "recursion over the children": """
        def get_module_params_num(module):
            own = sum(p.numel() for p in module.parameters(recurse=False))
            return own + sum(get_module_params_num(child) for child in module.children())
        """,
}
BUGS["get_module_params_num"] = {
    "trainable parameters only": ("""
        def get_module_params_num(module):
            return sum(p.numel() for p in module.parameters() if p.requires_grad)
        """, {"test_get_module_params_num": "frozen"}),
    "state_dict (counts the buffers)": ("""
        def get_module_params_num(module):
            return sum(t.numel() for t in module.state_dict().values())
        """, {"test_get_module_params_num": "wrong count"}),
    "weights only": ("""
        def get_module_params_num(module):
            return sum(p.numel() for name, p in module.named_parameters() if name.endswith("weight"))
        """, {"test_get_module_params_num": "wrong count"}),
    "a float": ("""
        def get_module_params_num(module):
            return float(sum(p.numel() for p in module.parameters()))
        """, {"test_get_module_params_num": "integer"}),
}

ALTERNATIVES["conv2d_params"] = {
    "a meta module": """
        def conv2d_params(in_channels, out_channels, kernel_size, bias=True):
            with torch.device("meta"):
                conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
            return sum(p.numel() for p in conv.parameters())
        """,
    "numpy product": """
        def conv2d_params(in_channels, out_channels, kernel_size, bias=True):
            return int(np.prod([out_channels, in_channels, kernel_size, kernel_size])) + int(bias) * out_channels
        """,
    "(C_in k^2 + 1) per filter": """
        def conv2d_params(in_channels, out_channels, kernel_size, bias=True):
            per_filter = in_channels * kernel_size**2 + (1 if bias else 0)
            return per_filter * out_channels
        """,
}
BUGS["conv2d_params"] = {
    "bias counted always": ("""
        def conv2d_params(in_channels, out_channels, kernel_size, bias=True):
            return out_channels * in_channels * kernel_size * kernel_size + out_channels
        """, {"test_conv2d_params": "wrong count"}),
    "kernel not squared": ("""
        def conv2d_params(in_channels, out_channels, kernel_size, bias=True):
            return out_channels * in_channels * kernel_size + (out_channels if bias else 0)
        """, {"test_conv2d_params": "wrong count"}),
    "bias per input channel": ("""
        def conv2d_params(in_channels, out_channels, kernel_size, bias=True):
            return out_channels * in_channels * kernel_size**2 + (in_channels if bias else 0)
        """, {"test_conv2d_params": "wrong count"}),
}

ALTERNATIVES["linear_params"] = {
    "a meta module": """
        def linear_params(in_features, out_features, bias=True):
            with torch.device("meta"):
                layer = nn.Linear(in_features, out_features, bias=bias)
            return sum(p.numel() for p in layer.parameters())
        """,
    "(D + 1) K": """
        def linear_params(in_features, out_features, bias=True):
            return (in_features + int(bias)) * out_features
        """,
    "numpy": """
        def linear_params(in_features, out_features, bias=True):
            return int(np.prod((out_features, in_features)) + (np.int64(out_features) if bias else 0))
        """,
}
BUGS["linear_params"] = {
    "bias counted always": ("""
        def linear_params(in_features, out_features, bias=True):
            return in_features * out_features + out_features
        """, {"test_linear_params": "wrong count"}),
    "bias per input": ("""
        def linear_params(in_features, out_features, bias=True):
            return in_features * out_features + (in_features if bias else 0)
        """, {"test_linear_params": "wrong count"}),
    "sum instead of product": ("""
        def linear_params(in_features, out_features, bias=True):
            return in_features + out_features + (out_features if bias else 0)
        """, {"test_linear_params": "wrong count"}),
}

# 03_filters ----------------------------------------------------------------------------------------------------

ALTERNATIVES["get_conv1_filters"] = {
    "the seed's .weight.data (a view)": """
        def get_conv1_filters(model):
            return model.backbone.conv1.weight.data
        """,
    "get_submodule(...).weight (a Parameter)": """
        def get_conv1_filters(model):
            return model.get_submodule("backbone.conv1").weight
        """,
    "state_dict entry": """
        def get_conv1_filters(model):
            return model.state_dict()["backbone.conv1.weight"].clone()
        """,
    "named_parameters": """
        def get_conv1_filters(model):
            return dict(model.named_parameters())["backbone.conv1.weight"].detach()
        """,
}
BUGS["get_conv1_filters"] = {
    "conv2's weights": ("""
        def get_conv1_filters(model):
            return model.backbone.conv2.weight.detach().clone()
        """, {"test_get_conv1_filters": "has shape"}),
    "channels last for plotting": ("""
        def get_conv1_filters(model):
            return model.backbone.conv1.weight.detach().permute(0, 2, 3, 1)
        """, {"test_get_conv1_filters": "axes reordered"}),
    "normalised in place for plotting": ("""
        def get_conv1_filters(model):
            weights = model.backbone.conv1.weight.data
            weights -= weights.min()
            weights /= weights.max()
            return weights
        """, {"test_get_conv1_filters": "do not modify"}),
    "a numpy array": ("""
        def get_conv1_filters(model):
            return model.backbone.conv1.weight.detach().numpy()
        """, {"test_get_conv1_filters": "torch.Tensor"}),
}

ALTERNATIVES["achromatic_share"] = {
    "projection expanded over the channels": """
        def achromatic_share(filters):
            grey = filters.mean(1, keepdim=True).expand_as(filters)
            return grey.pow(2).sum((1, 2, 3)) / filters.pow(2).sum((1, 2, 3))
        """,
    "one minus the colour part": """
        def achromatic_share(filters):
            colour = filters - filters.mean(1, keepdim=True)
            return 1 - colour.pow(2).sum((1, 2, 3)) / filters.pow(2).sum((1, 2, 3))
        """,
    "loop over the filters": """
        def achromatic_share(filters):
            shares = []
            for w in filters:
                grey = w.mean(0)
                shares.append(3 * (grey**2).sum() / (w**2).sum())
            return torch.stack(shares)
        """,
    "numpy": """
        def achromatic_share(filters):
            w = filters.detach().numpy()
            grey = w.mean(axis=1)
            return torch.from_numpy(3 * (grey**2).sum(axis=(1, 2)) / (w**2).sum(axis=(1, 2, 3)))
        """,
    "float64 inside": """
        def achromatic_share(filters):
            w = filters.double()
            share = 3 * w.mean(1).pow(2).sum((1, 2)) / w.pow(2).sum((1, 2, 3))
            return share.to(filters.dtype)
        """,
}
BUGS["achromatic_share"] = {
    "the colour part's share": ("""
        def achromatic_share(filters):
            colour = filters - filters.mean(1, keepdim=True)
            return colour.pow(2).sum((1, 2, 3)) / filters.pow(2).sum((1, 2, 3))
        """, {"test_achromatic_share": "should be 1"}),
    "without the factor 3": ("""
        def achromatic_share(filters):
            return filters.mean(1).pow(2).sum((1, 2)) / filters.pow(2).sum((1, 2, 3))
        """, {"test_achromatic_share": "should be 1"}),
    "absolute values instead of squares": ("""
        def achromatic_share(filters):
            return 3 * filters.mean(1).abs().sum((1, 2)) / filters.abs().sum((1, 2, 3))
        """, {"test_achromatic_share": "wrong values"}),
    "averaged over the filters": ("""
        def achromatic_share(filters):
            return (3 * filters.mean(1).pow(2).sum((1, 2)) / filters.pow(2).sum((1, 2, 3))).mean()
        """, {"test_achromatic_share": "has shape"}),
    "centres the filters in place": ("""
        def achromatic_share(filters):
            total = filters.pow(2).sum((1, 2, 3))
            filters -= filters.mean(1, keepdim=True)
            return 1 - filters.pow(2).sum((1, 2, 3)) / total
        """, {"test_achromatic_share": "do not modify"}),
}

# 04_activations ------------------------------------------------------------------------------------------------

ALTERNATIVES["show_activations_hook"] = {
    "clone().detach(), own figure": """
        def show_activations_hook(name, module, input, output):
            if len(output.shape) == 4:
                activation_list.append(output.clone().detach())
                fig, ax = plt.subplots()
                ax.imshow(output[0, 0].detach().numpy())
                ax.set_title(name)
        """,
    "a numpy copy": """
        def show_activations_hook(name, module, input, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                activation_list.append(torch.tensor(np.array(output.detach().numpy())))
                plot_activations(output, name)
        """,
    ".data.clone(), returns the output itself": """
        def show_activations_hook(name, module, input, output):
            if output.dim() == 4:
                activation_list.append(output.data.clone())
                plot_activations(output.data, name)
            return output
        """,
    "prints and calls plt.show()": """
        def show_activations_hook(name, module, input, output):
            print(name, tuple(output.shape))
            if output.dim() != 4:
                return
            activation_list.append(output.detach().clone())
            plot_activations(output, f"Activations on: {name}")
            plt.show()
        """,
}
BUGS["show_activations_hook"] = {
    "stores the output itself": ("""
        def show_activations_hook(name, module, input, output):
            if output.dim() == 4:
                activation_list.append(output)
                plot_activations(output, name)
        """, {"test_show_activations_hook": "autograd history"}),
    "stores a detached view": ("""
        def show_activations_hook(name, module, input, output):
            if output.dim() == 4:
                activation_list.append(output.detach())
                plot_activations(output, name)
        """, {"test_show_activations_hook": "modified in place"}),
    "stores the input": ("""
        def show_activations_hook(name, module, input, output):
            if output.dim() == 4:
                activation_list.append(input[0].detach().clone())
                plot_activations(output, name)
        """, {"test_show_activations_hook": "input"}),
    "stores 2-D outputs too": ("""
        def show_activations_hook(name, module, input, output):
            activation_list.append(output.detach().clone())
            if output.dim() == 4:
                plot_activations(output, name)
        """, {"test_show_activations_hook": "only 4-D"}),
    "returns a ReLU of the output": ("""
        def show_activations_hook(name, module, input, output):
            if output.dim() == 4:
                activation_list.append(output.detach().clone())
                plot_activations(output, name)
            return output.relu()
        """, {"test_show_activations_hook": "replaces the layer's output"}),
}

ALTERNATIVES["register_activation_hooks"] = {
    "named_modules, a tuple": """
        def register_activation_hooks(model, names):
            modules = dict(model.named_modules())
            return tuple(modules[name].register_forward_hook(functools.partial(show_activations_hook, name))
                         for name in names)
        """,
    "lambdas with a default argument": """
        def register_activation_hooks(model, names):
            handles = []
            for name in names:
                hook = lambda module, inp, out, name=name: show_activations_hook(name, module, inp, out)
                handles.append(model.get_submodule(name).register_forward_hook(hook))
            return handles
        """,
    "a closure factory": """
        def register_activation_hooks(model, names):
            def bound(name):
                def forward_hook(module, inp, out):
                    return show_activations_hook(name, module, inp, out)

                return forward_hook

            return [model.get_submodule(name).register_forward_hook(bound(name)) for name in names]
        """,
    "walks the dotted path with getattr": """
        def register_activation_hooks(model, names):
            handles = []
            for name in names:
                module = functools.reduce(getattr, name.split("."), model)
                handles.append(module.register_forward_hook(functools.partial(show_activations_hook, name)))
            return handles
        """,
}
BUGS["register_activation_hooks"] = {
    "late-binding lambda": ("""
        def register_activation_hooks(model, names):
            handles = []
            for name in names:
                hook = lambda m, i, o: show_activations_hook(name, m, i, o)
                handles.append(model.get_submodule(name).register_forward_hook(hook))
            return handles
        """, {"test_register_activation_hooks": "bind each layer's own name"}),
    "returns nothing": ("""
        def register_activation_hooks(model, names):
            for name in names:
                model.get_submodule(name).register_forward_hook(functools.partial(show_activations_hook, name))
        """, {"test_register_activation_hooks": "list of"}),
    "forward pre-hooks": ("""
        def register_activation_hooks(model, names):
            return [model.get_submodule(n).register_forward_pre_hook(functools.partial(show_activations_hook, n))
                    for n in names]
        """, {"test_register_activation_hooks": "forward hooks, expected 1"}),
    "the name bound as a keyword": ("""
        def register_activation_hooks(model, names):
            return [model.get_submodule(n).register_forward_hook(functools.partial(show_activations_hook, name=n))
                    for n in names]
        """, {"test_register_activation_hooks": "TypeError"}),
}

# 05_saliency ---------------------------------------------------------------------------------------------------

ALTERNATIVES["compute_gradient_score"] = {
    "backward, image.grad cleared before and after": """
        def compute_gradient_score(scores, image, class_idx):
            image.grad = None
            scores[class_idx].backward()
            gradient = image.grad[0].clone()
            image.grad = None
            return gradient
        """,
    "one-hot grad_outputs": """
        def compute_gradient_score(scores, image, class_idx):
            one_hot = F.one_hot(torch.tensor(class_idx), len(scores)).to(scores)
            (gradient,) = torch.autograd.grad(scores, image, grad_outputs=one_hot)
            return gradient.squeeze(0)
        """,
    "a tensor hook on the image": """
        def compute_gradient_score(scores, image, class_idx):
            caught = []
            handle = image.register_hook(lambda grad: caught.append(grad.clone()))
            try:
                torch.autograd.backward(scores[class_idx], inputs=[image])
            finally:
                handle.remove()
            image.grad = None
            return caught[0][0]
        """,
    "autograd.grad, then select": """
        def compute_gradient_score(scores, image, class_idx):
            return torch.autograd.grad(scores[class_idx], [image])[0].squeeze(0)
        """,
}
BUGS["compute_gradient_score"] = {
    "the seed's backward into image.grad": ("""
        def compute_gradient_score(scores, image, class_idx):
            scores[class_idx].backward()
            return image.grad[0]
        """, {"test_no_accumulation": "adds to image.grad"}),
    "softmax instead of the logit": ("""
        def compute_gradient_score(scores, image, class_idx):
            (gradient,) = torch.autograd.grad(scores.softmax(0)[class_idx], image)
            return gradient[0]
        """, {"test_compute_gradient_score": "wrong values"}),
    "sum of all scores": ("""
        def compute_gradient_score(scores, image, class_idx):
            (gradient,) = torch.autograd.grad(scores.sum(), image)
            return gradient[0]
        """, {"test_compute_gradient_score": "wrong values"}),
    "batch dimension kept": ("""
        def compute_gradient_score(scores, image, class_idx):
            (gradient,) = torch.autograd.grad(scores[class_idx], image)
            return gradient
        """, {"test_compute_gradient_score": "shape"}),
}

ALTERNATIVES["saliency_map"] = {
    "autograd, max(dim=0).values": """
        def saliency_map(model, image, class_idx):
            with helpers.evaluating(model):
                x = image.unsqueeze(0).detach().clone().requires_grad_()
                (gradient,) = torch.autograd.grad(model(x)[0, class_idx], x)
            return gradient[0].abs().max(dim=0).values
        """,
    "backward, modes restored and grads cleared by hand": """
        def saliency_map(model, image, class_idx):
            modes = [m.training for m in model.modules()]
            model.eval()
            try:
                x = image[None].clone().requires_grad_()
                model(x)[0, class_idx].backward()
                return x.grad[0].abs().amax(0)
            finally:
                for module, mode in zip(model.modules(), modes):
                    module.training = mode
                model.zero_grad(set_to_none=True)
        """,
    "captum Saliency": """
        def saliency_map(model, image, class_idx):
            from captum.attr import Saliency

            with helpers.evaluating(model):
                attribution = Saliency(model).attribute(image[None].clone(), target=class_idx, abs=True)
            model.zero_grad(set_to_none=True)
            return attribution.amax(1)[0]
        """,
    "float64 inside, on a copy of the model": """
        def saliency_map(model, image, class_idx):
            model64 = copy.deepcopy(model).double().eval()
            x = image.detach().double()[None].requires_grad_()
            (gradient,) = torch.autograd.grad(model64(x)[0, class_idx], x)
            return gradient[0].abs().amax(0).to(image.dtype)
        """,
}
BUGS["saliency_map"] = {
    "sum over channels": ("""
        def saliency_map(model, image, class_idx):
            x = image.detach().clone().unsqueeze(0).requires_grad_()
            with helpers.evaluating(model):
                grad = compute_gradient_score(model(x)[0], x, class_idx)
            return grad.abs().sum(dim=0)
        """, {"test_saliency_map": "wrong values"}),
    "parameter .grad left behind": ("""
        def saliency_map(model, image, class_idx):
            with helpers.evaluating(model):
                x = image[None].clone().requires_grad_()
                model(x)[0, class_idx].backward()
            return x.grad[0].abs().amax(0)
        """, {"test_saliency_map_side_effects": ".grad"}),
    "model left in eval mode": ("""
        def saliency_map(model, image, class_idx):
            model.eval()
            x = image.detach().clone().unsqueeze(0).requires_grad_()
            grad = compute_gradient_score(model(x)[0], x, class_idx)
            return grad.abs().amax(dim=0)
        """, {"test_saliency_map_side_effects": "train/eval mode"}),
    "computed in whatever mode": ("""
        def saliency_map(model, image, class_idx):
            x = image.detach().clone().unsqueeze(0).requires_grad_()
            grad = compute_gradient_score(model(x)[0], x, class_idx)
            return grad.abs().amax(dim=0)
        """, {"test_saliency_map_side_effects": "eval mode"}),
    "requires_grad on the caller's image": ("""
        def saliency_map(model, image, class_idx):
            with helpers.evaluating(model):
                image.requires_grad_()
                (gradient,) = torch.autograd.grad(model(image[None])[0, class_idx], image)
            return gradient.abs().amax(0)
        """, {"test_saliency_map_side_effects": "caller's image"}),
}

# 06_gradcam ----------------------------------------------------------------------------------------------------

ALTERNATIVES["class_activation_map"] = {
    "the backbone's output": """
        def class_activation_map(model, img, class_idx):
            with helpers.evaluating(model), torch.no_grad():
                a = model.backbone(img.unsqueeze(0))[0]
                return (model.fc.weight[class_idx][:, None, None] * a).sum(0)
        """,
    "own forward hook, tensordot": """
        def class_activation_map(model, img, class_idx):
            saved = []
            handle = model.backbone.relu5_2.register_forward_hook(lambda m, i, o: saved.append(o.detach().clone()))
            try:
                with helpers.evaluating(model), torch.no_grad():
                    model(img[None])
            finally:
                handle.remove()
            return torch.tensordot(model.fc.weight.detach()[class_idx], saved[0][0], dims=1)
        """,
    "float64 inside, a 1x1 convolution": """
        def class_activation_map(model, img, class_idx):
            with helpers.evaluating(model), torch.no_grad(), helpers.capture_activations(model, ["backbone.relu5_2"]) as saved:
                model(img[None])
            a = saved["backbone.relu5_2"].double()
            w = model.fc.weight.detach().double()[class_idx][None, :, None, None]
            return F.conv2d(a, w)[0, 0].to(img.dtype)
        """,
    "gap input through a forward pre-hook on gap": """
        def class_activation_map(model, img, class_idx):
            saved = {}
            handle = model.gap.register_forward_pre_hook(lambda m, inputs: saved.setdefault("A", inputs[0].detach()))
            modes = [m.training for m in model.modules()]
            model.eval()
            try:
                with torch.no_grad():
                    model(img[None])
            finally:
                handle.remove()
                for m, mode in zip(model.modules(), modes):
                    m.training = mode
            return torch.einsum("k,khw->hw", model.fc.weight[class_idx].detach(), saved["A"][0])
        """,
}
BUGS["class_activation_map"] = {
    "bias added": ("""
        def class_activation_map(model, img, class_idx):
            with helpers.evaluating(model), torch.no_grad():
                a = model.backbone(img.unsqueeze(0))[0]
                return torch.einsum("k,khw->hw", model.fc.weight[class_idx], a) + model.fc.bias[class_idx]
        """, {"test_class_activation_map": "wrong values"}),
    "ReLU applied": ("""
        def class_activation_map(model, img, class_idx):
            with helpers.evaluating(model), torch.no_grad():
                a = model.backbone(img.unsqueeze(0))[0]
                return torch.relu(torch.einsum("k,khw->hw", model.fc.weight[class_idx], a))
        """, {"test_class_activation_map": "wrong values"}),
    "bn5_2 features": ("""
        def class_activation_map(model, img, class_idx):
            with helpers.evaluating(model), torch.no_grad(), helpers.capture_activations(model, ["backbone.bn5_2"]) as saved:
                model(img[None])
            return torch.einsum("k,khw->hw", model.fc.weight[class_idx].detach(), saved["backbone.bn5_2"][0])
        """, {"test_class_activation_map": "wrong values"}),
    "hook never removed": ("""
        def class_activation_map(model, img, class_idx):
            saved = []
            model.backbone.relu5_2.register_forward_hook(lambda m, i, o: saved.append(o.detach().clone()))
            with helpers.evaluating(model), torch.no_grad():
                model(img[None])
            return torch.tensordot(model.fc.weight.detach()[class_idx], saved[-1][0], dims=1)
        """, {"test_class_activation_map_side_effects": "hook"}),
    "model left in eval mode": ("""
        def class_activation_map(model, img, class_idx):
            model.eval()
            with torch.no_grad():
                a = model.backbone(img.unsqueeze(0))[0]
            return torch.einsum("k,khw->hw", model.fc.weight[class_idx].detach(), a)
        """, {"test_class_activation_map_side_effects": "train/eval mode"}),
}

# appended after a body's closing line (8 spaces), so its first line needs 4 more to reach the body's 12
_GRADCAM_TAIL = """    cam = F.relu((grad.mean((2, 3), keepdim=True) * A).sum(1, keepdim=True))
            return F.interpolate(cam, size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        """

ALTERNATIVES["vis_gradcam"] = {
    "the seed's forward hook, tensor hook, backward and nn.Upsample": """
        def vis_gradcam(vgg, img):
            save_feat, save_grad = [], []

            def hook_feat(module, input, output):
                save_feat.append(output)
                output.register_hook(save_grad.append)

            modes = [m.training for m in vgg.modules()]
            handle = vgg.backbone.bn5_2.register_forward_hook(hook_feat)
            vgg.eval()
            try:
                s = vgg(img.unsqueeze(0))
                y = torch.argmax(s)
                s[0, y].backward()
            finally:
                handle.remove()
                for m, mode in zip(vgg.modules(), modes):
                    m.training = mode
                vgg.zero_grad(set_to_none=True)
            alpha = save_grad[0].mean(dim=(2, 3), keepdim=True)
            grad_cam = torch.relu((alpha * save_feat[0]).sum(1, keepdim=True))
            upscale = nn.Upsample(size=tuple(img.shape[-2:]), mode="bilinear")
            return upscale(grad_cam).squeeze().detach()
        """,
    "full backward hook on bn5_2": """
        def vis_gradcam(vgg, img):
            saved = {}
            forward = vgg.backbone.bn5_2.register_forward_hook(lambda m, i, o: saved.__setitem__("A", o.detach()))
            backward = vgg.backbone.bn5_2.register_full_backward_hook(
                lambda m, grad_in, grad_out: saved.__setitem__("dA", grad_out[0].detach()))
            try:
                with helpers.evaluating(vgg):
                    x = img[None].clone().requires_grad_()
                    scores = vgg(x)
                    torch.autograd.grad(scores[0].max(), x)
            finally:
                forward.remove()
                backward.remove()
            grad, A = saved["dA"], saved["A"]
        """ + _GRADCAM_TAIL,
    "a forward pre-hook on relu5_2, autograd.grad": """
        def vis_gradcam(vgg, img):
            saved = {}
            handle = vgg.backbone.relu5_2.register_forward_pre_hook(lambda module, inputs: saved.setdefault("A", inputs[0]))
            try:
                with helpers.evaluating(vgg):
                    scores = vgg(img.unsqueeze(0))[0]
                    (grad,) = torch.autograd.grad(scores.max(), saved["A"])
            finally:
                handle.remove()
            A = saved["A"].detach()
        """ + _GRADCAM_TAIL,
    "captum LayerGradCam": """
        def vis_gradcam(vgg, img):
            from captum.attr import LayerGradCam

            with helpers.evaluating(vgg):
                y = int(vgg(img[None]).argmax())
                cam = LayerGradCam(vgg, vgg.backbone.bn5_2).attribute(img[None].clone(), target=y, relu_attributions=True)
            vgg.zero_grad(set_to_none=True)
            return F.interpolate(cam.detach(), size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        """,
    "capture_activations, float64 inside": """
        def vis_gradcam(vgg, img):
            with helpers.evaluating(vgg), helpers.capture_activations(vgg, ["backbone.bn5_2"], detach=False) as saved:
                scores = vgg(img[None])
                (grad,) = torch.autograd.grad(scores[0].max(), saved["backbone.bn5_2"])
            A, grad = saved["backbone.bn5_2"].detach().double(), grad.double()
            cam = torch.relu(torch.einsum("k,khw->hw", grad[0].mean((1, 2)), A[0]))
            up = F.interpolate(cam[None, None], size=img.shape[1:], mode="bilinear", align_corners=False)[0, 0]
            return up.to(img.dtype)
        """,
}
BUGS["vis_gradcam"] = {
    "no ReLU": ("""
        def vis_gradcam(vgg, img):
            with helpers.evaluating(vgg), helpers.capture_activations(vgg, ["backbone.bn5_2"], detach=False) as saved:
                scores = vgg(img[None])
                (grad,) = torch.autograd.grad(scores[0].max(), saved["backbone.bn5_2"])
            cam = (grad.mean((2, 3), keepdim=True) * saved["backbone.bn5_2"].detach()).sum(1, keepdim=True)
            return F.interpolate(cam, size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        """, {"test_vis_gradcam": "wrong values"}),
    "nearest upsampling": ("""
        def vis_gradcam(vgg, img):
            with helpers.evaluating(vgg), helpers.capture_activations(vgg, ["backbone.bn5_2"], detach=False) as saved:
                scores = vgg(img[None])
                (grad,) = torch.autograd.grad(scores[0].max(), saved["backbone.bn5_2"])
            cam = F.relu((grad.mean((2, 3), keepdim=True) * saved["backbone.bn5_2"].detach()).sum(1, keepdim=True))
            return F.interpolate(cam, size=img.shape[-2:], mode="nearest")[0, 0]
        """, {"test_vis_gradcam": "wrong values"}),
    "hook never removed": ("""
        def vis_gradcam(vgg, img):
            saved = {}
            vgg.backbone.bn5_2.register_forward_hook(lambda m, i, o: saved.__setitem__("A", o))
            with helpers.evaluating(vgg):
                scores = vgg(img[None])
                (grad,) = torch.autograd.grad(scores[0].max(), saved["A"])
            A = saved["A"].detach()
        """ + _GRADCAM_TAIL, {"test_vis_gradcam_hooks": "hook"}),
    "hook removed without finally": ("""
        def vis_gradcam(vgg, img):
            saved = {}
            handle = vgg.backbone.bn5_2.register_forward_hook(lambda m, i, o: saved.__setitem__("A", o))
            with helpers.evaluating(vgg):
                scores = vgg(img[None])
                (grad,) = torch.autograd.grad(scores[0].max(), saved["A"])
            handle.remove()
            A = saved["A"].detach()
        """ + _GRADCAM_TAIL, {"test_vis_gradcam_hooks": "forward pass raises"}),
    "backward leaves parameter .grad": ("""
        def vis_gradcam(vgg, img):
            saved, grads = {}, {}

            def hook(module, inputs, output):
                saved["A"] = output
                output.register_hook(lambda grad: grads.__setitem__("dA", grad))

            handle = vgg.backbone.bn5_2.register_forward_hook(hook)
            try:
                with helpers.evaluating(vgg):
                    scores = vgg(img[None])
                    scores[0].max().backward()
            finally:
                handle.remove()
            grad, A = grads["dA"], saved["A"].detach()
        """ + _GRADCAM_TAIL, {"test_vis_gradcam_no_grads": ".grad"}),
    "computed in whatever mode": ("""
        def vis_gradcam(vgg, img):
            with helpers.capture_activations(vgg, ["backbone.bn5_2"], detach=False) as saved:
                scores = vgg(img[None])
                (grad,) = torch.autograd.grad(scores[0].max(), saved["backbone.bn5_2"])
            A = saved["backbone.bn5_2"].detach()
        """ + _GRADCAM_TAIL, {"test_vis_gradcam_mode": "eval mode"}),
}

# 07_patches ----------------------------------------------------------------------------------------------------

ALTERNATIVES["receptive_fields"] = {
    "hasattr(kernel_size), a helper for int or pair": """
        def receptive_fields(layers):
            def first(value):
                return value if isinstance(value, int) else value[0]

            size, jump, start, rows = 1, 1, 0, []
            for name, module in layers:
                if not hasattr(module, "kernel_size"):
                    continue
                span = first(getattr(module, "dilation", 1)) * (first(module.kernel_size) - 1) + 1
                size, start, jump = size + (span - 1) * jump, start - first(module.padding) * jump, jump * first(module.stride)
                rows.append((name, size, jump, start))
            return rows
        """,
    "torch's _pair, numpy integers": """
        def receptive_fields(layers):
            from torch.nn.modules.utils import _pair

            size, jump, start, rows = np.int64(1), np.int64(1), np.int64(0), []
            for name, module in layers:
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                    k, s, p = _pair(module.kernel_size)[0], _pair(module.stride)[0], _pair(module.padding)[0]
                    d = _pair(getattr(module, "dilation", 1))[0]
                    start = start - p * jump
                    size = size + d * (k - 1) * jump
                    jump = jump * s
                    rows.append((name, size, jump, start))
            return rows
        """,
    "the centre of unit 0, converted to its first pixel": """
        def receptive_fields(layers):
            size, jump, centre, rows = 1, 1, 0.0, []
            for name, module in layers:
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                    pick = lambda v: v[0] if isinstance(v, tuple) else v
                    k = pick(getattr(module, "dilation", 1)) * (pick(module.kernel_size) - 1) + 1
                    centre += ((k - 1) / 2 - pick(module.padding)) * jump
                    size += (k - 1) * jump
                    jump *= pick(module.stride)
                    rows.append((name, size, jump, round(centre - (size - 1) / 2)))
            return rows
        """,
    "measured with the gradients of an all-ones twin": """
        def receptive_fields(layers):
            rows, twin = [], []
            for name, module in layers:
                if not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                    continue
                ones = nn.Conv2d(1, 1, module.kernel_size, module.stride, module.padding, getattr(module, "dilation", 1), bias=False)
                nn.init.ones_(ones.weight)
                twin.append(ones.double().requires_grad_(False))
                side = 64
                while True:
                    x = torch.ones(2, 1, side, side, dtype=torch.float64, requires_grad=True)
                    y = nn.Sequential(*twin)(x) if side >= 16 * sum(t.kernel_size[0] for t in twin) else None
                    if y is not None and y.shape[-1] > 2:
                        c = y.shape[-1] // 2
                        (g,) = torch.autograd.grad(y[0, 0, c, c] + y[1, 0, c, c + 1], x)
                        r = g[0, 0].sum(1).nonzero()[:, 0]
                        a, b = g[0, 0].sum(0).nonzero()[:, 0], g[1, 0].sum(0).nonzero()[:, 0]
                        if r[0] > 0 and b[-1] < side - 1 and side >= 4 * int(r[-1] - r[0] + 1):
                            jump = int(b[0] - a[0])
                            rows.append((name, int(r[-1] - r[0]) + 1, jump, int(r[0]) - c * jump))
                            break
                    side *= 2
            return rows
        """,
}
BUGS["receptive_fields"] = {
    "dilation ignored": ("""
        def receptive_fields(layers):
            size, jump, start, rows = 1, 1, 0, []
            for name, module in layers:
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                    pick = lambda v: v[0] if isinstance(v, tuple) else v
                    k, s, p = pick(module.kernel_size), pick(module.stride), pick(module.padding)
                    size, start, jump = size + (k - 1) * jump, start - p * jump, jump * s
                    rows.append((name, size, jump, start))
            return rows
        """, {"test_receptive_fields": "sizes are wrong"}),
    "start is the centre of the field": ("""
        def receptive_fields(layers):
            size, jump, start, rows = 1, 1, 0, []
            for name, module in layers:
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                    pick = lambda v: v[0] if isinstance(v, tuple) else v
                    k = pick(getattr(module, "dilation", 1)) * (pick(module.kernel_size) - 1) + 1
                    start -= pick(module.padding) * jump
                    size += (k - 1) * jump
                    jump *= pick(module.stride)
                    rows.append((name, size, jump, start + (size - 1) // 2))
            return rows
        """, {"test_receptive_fields": "starts are wrong"}),
    "jump multiplied before the size grows": ("""
        def receptive_fields(layers):
            size, jump, start, rows = 1, 1, 0, []
            for name, module in layers:
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                    pick = lambda v: v[0] if isinstance(v, tuple) else v
                    k = pick(getattr(module, "dilation", 1)) * (pick(module.kernel_size) - 1) + 1
                    jump *= pick(module.stride)
                    start -= pick(module.padding) * jump
                    size += (k - 1) * jump
                    rows.append((name, size, jump, start))
            return rows
        """, {"test_receptive_fields": "sizes are wrong"}),
    "average pooling skipped": ("""
        def receptive_fields(layers):
            size, jump, start, rows = 1, 1, 0, []
            for name, module in layers:
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
                    pick = lambda v: v[0] if isinstance(v, tuple) else v
                    k = pick(getattr(module, "dilation", 1)) * (pick(module.kernel_size) - 1) + 1
                    start, size, jump = start - pick(module.padding) * jump, size + (k - 1) * jump, jump * pick(module.stride)
                    rows.append((name, size, jump, start))
            return rows
        """, {"test_receptive_fields": "wrong layers"}),
    "kernel_size[0] also on the pools' ints": ("""
        def receptive_fields(layers):
            size, jump, start, rows = 1, 1, 0, []
            for name, module in layers:
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                    k, s, p = module.kernel_size[0], module.stride[0], module.padding[0]
                    size, start, jump = size + (k - 1) * jump, start - p * jump, jump * s
                    rows.append((name, size, jump, start))
            return rows
        """, {"test_receptive_fields": "raised TypeError"}),
}

ALTERNATIVES["top_patches"] = {
    "F.pad the chosen images, sort, divmod": """
        def top_patches(activations, images, field, k):
            size, jump, start = field
            peaks, flat = activations.reshape(len(activations), -1).max(dim=1)
            scores, order = torch.sort(peaks, descending=True)
            patches, positions = [], []
            for n in order[:k].tolist():
                row, column = divmod(int(flat[n]), activations.shape[-1])
                padded = F.pad(images[n], (size, size, size, size))
                top, left = start + row * jump + size, start + column * jump + size
                patches.append(padded[:, top:top + size, left:left + size])
                positions.append((n, row, column))
            return torch.stack(patches), scores[:k], torch.tensor(positions)
        """,
    "pixel loops in float64, numpy argmax, int32 positions": """
        def top_patches(activations, images, field, k):
            size, jump, start = field
            best = []
            for n, grid in enumerate(activations.double().numpy()):
                row, column = np.unravel_index(grid.argmax(), grid.shape)
                best.append((grid[row, column], n, int(row), int(column)))
            best = sorted(best, reverse=True)[:k]
            patches = torch.zeros(k, images.shape[1], size, size, dtype=torch.float64)
            for i, (_, n, row, column) in enumerate(best):
                for r in range(size):
                    for c in range(size):
                        y, x = start + row * jump + r, start + column * jump + c
                        if 0 <= y < images.shape[-2] and 0 <= x < images.shape[-1]:
                            patches[i, :, r, c] = images[n, :, y, x].double()
            scores = torch.tensor([score for score, *_ in best]).to(activations.dtype)
            positions = torch.tensor([(n, row, column) for _, n, row, column in best], dtype=torch.int32)
            return patches.to(images.dtype), scores, positions
        """,
    "F.pad the whole batch once, amax and argmax, returns a list": """
        def top_patches(activations, images, field, k):
            size, jump, start = field
            h, w = activations.shape[-2:]
            peaks = activations.amax(dim=(1, 2))
            order = peaks.argsort(descending=True)[:k]
            where = activations.flatten(1).argmax(dim=1)[order]
            rows, columns = where // w, where % w
            padded = F.pad(images[order], (size, size, size, size))
            patches = torch.stack([
                padded[i, :, start + int(r) * jump + size:start + int(r) * jump + 2 * size,
                       start + int(c) * jump + size:start + int(c) * jump + 2 * size]
                for i, (r, c) in enumerate(zip(rows, columns))
            ])
            return [patches, peaks[order], torch.stack([order, rows, columns], dim=1)]
        """,
}
_TOP_PATCHES_POSITIONS = """    size, jump, start = field
            w = activations.shape[-1]
            peaks, flat = activations.flatten(1).max(dim=1)
            scores, order = peaks.topk(k)
            rows, columns = flat[order] // w, flat[order] % w
        """
BUGS["top_patches"] = {
    "top-k over every position": ("""
        def top_patches(activations, images, field, k):
            size, jump, start = field
            n, h, w = activations.shape
            scores, flat = activations.flatten().topk(k)
            order, rows, columns = flat // (h * w), (flat % (h * w)) // w, flat % w
            padded = F.pad(images, (size, size, size, size))
            patches = torch.stack([padded[i, :, start + r * jump + size:start + r * jump + 2 * size,
                                          start + c * jump + size:start + c * jump + 2 * size]
                                   for i, r, c in zip(order.tolist(), rows.tolist(), columns.tolist())])
            return patches, scores, torch.stack([order, rows, columns], dim=1)
        """, {"test_top_patches": "one unit per image"}),
    "rows and columns swapped in the positions": ("""
        def top_patches(activations, images, field, k):
        """ + _TOP_PATCHES_POSITIONS + """    padded = F.pad(images, (size, size, size, size))
            patches = torch.stack([padded[n, :, start + r * jump + size:start + r * jump + 2 * size,
                                          start + c * jump + size:start + c * jump + 2 * size]
                                   for n, r, c in zip(order.tolist(), rows.tolist(), columns.tolist())])
            return patches, scores, torch.stack([order, columns, rows], dim=1)
        """, {"test_top_patches": "at its position"}),
    "the field's start ignored": ("""
        def top_patches(activations, images, field, k):
        """ + _TOP_PATCHES_POSITIONS + """    padded = F.pad(images, (size, size, size, size))
            patches = torch.stack([padded[n, :, r * jump + size:r * jump + 2 * size, c * jump + size:c * jump + 2 * size]
                                   for n, r, c in zip(order.tolist(), rows.tolist(), columns.tolist())])
            return patches, scores, torch.stack([order, rows, columns], dim=1)
        """, {"test_top_patches_crops": "not the receptive fields"}),
    "clipped at the border, not padded": ("""
        def top_patches(activations, images, field, k):
        """ + _TOP_PATCHES_POSITIONS + """    patches = []
            for n, r, c in zip(order.tolist(), rows.tolist(), columns.tolist()):
                top, left = start + r * jump, start + c * jump
                patches.append(images[n, :, max(top, 0):top + size, max(left, 0):left + size])
            return patches, scores, torch.stack([order, rows, columns], dim=1)
        """, {"test_top_patches_crops": "shape"}),
    "smallest score first": ("""
        def top_patches(activations, images, field, k):
        """ + _TOP_PATCHES_POSITIONS + """    padded = F.pad(images, (size, size, size, size))
            patches = torch.stack([padded[n, :, start + r * jump + size:start + r * jump + 2 * size,
                                          start + c * jump + size:start + c * jump + 2 * size]
                                   for n, r, c in zip(order.tolist(), rows.tolist(), columns.tolist())])
            return patches.flip(0), scores.flip(0), torch.stack([order, rows, columns], dim=1).flip(0)
        """, {"test_top_patches": "largest first"}),
}

# 08_dissection -------------------------------------------------------------------------------------------------

ALTERNATIVES["unit_thresholds"] = {
    "kthvalue at ceil(q * M)": """
        def unit_thresholds(activations, q=0.995):
            values = activations.transpose(0, 1).reshape(activations.shape[1], -1)
            k = int(np.ceil(q * values.shape[1]))
            return values.kthvalue(k, dim=1).values
        """,
    "numpy percentile, back to a tensor": """
        def unit_thresholds(activations, q=0.995):
            values = np.moveaxis(activations.numpy(), 1, 0).reshape(activations.shape[1], -1)
            return torch.from_numpy(np.percentile(values, 100 * q, axis=1)).float()
        """,
    "the smallest of the top (1 - q) share, unit by unit": """
        def unit_thresholds(activations, q=0.995):
            thresholds = []
            for k in range(activations.shape[1]):
                values = activations[:, k].flatten()
                top = max(1, round((1 - q) * values.numel()))
                thresholds.append(values.topk(top).values[-1])
            return torch.stack(thresholds)
        """,
    "float64 quantile on a permuted copy": """
        def unit_thresholds(activations, q=0.995):
            values = activations.permute(1, 0, 2, 3).double().flatten(1)
            return values.quantile(q, dim=1).to(activations.dtype)
        """,
}
BUGS["unit_thresholds"] = {
    "the wrong end (q = 0.005)": ("""
        def unit_thresholds(activations, q=0.995):
            return torch.quantile(activations.transpose(0, 1).flatten(1), 1 - q, dim=1)
        """, {"test_unit_thresholds": "wrong end"}),
    "a quantile per image, averaged": ("""
        def unit_thresholds(activations, q=0.995):
            return torch.quantile(activations.flatten(2), q, dim=2).mean(dim=0)
        """, {"test_unit_thresholds": "per image"}),
    "a threshold per image and unit": ("""
        def unit_thresholds(activations, q=0.995):
            return torch.quantile(activations.flatten(2), q, dim=2)
        """, {"test_unit_thresholds": "per image and unit"}),
    "one threshold for all units": ("""
        def unit_thresholds(activations, q=0.995):
            return torch.quantile(activations.flatten(), q).repeat(activations.shape[1])
        """, {"test_unit_thresholds": "one threshold for all units"}),
    "the quantile after upsampling 16 times": ("""
        def unit_thresholds(activations, q=0.995):
            upsampled = F.interpolate(activations, scale_factor=16, mode="bilinear", align_corners=False)
            return torch.quantile(upsampled.transpose(0, 1).flatten(1), q, dim=1)
        """, {"test_unit_thresholds": "not the q quantiles"}),
    "flatten(1) mixes the units of an image": ("""
        def unit_thresholds(activations, q=0.995):
            return torch.quantile(activations.flatten(1), q, dim=1)[: activations.shape[1]]
        """, {"test_unit_thresholds": "not the q quantiles"}),
}

ALTERNATIVES["dissection_iou"] = {
    "all images at once, einsum over floats": """
        def dissection_iou(activations, thresholds, concept_masks):
            up = F.interpolate(activations, size=concept_masks.shape[-2:], mode="bilinear", align_corners=False)
            on = (up >= thresholds.view(1, -1, 1, 1)).float()
            masks = concept_masks.float()
            inter = torch.einsum("nkhw,nchw->kc", on, masks)
            union = on.sum((0, 2, 3))[:, None] + masks.sum((0, 2, 3))[None, :] - inter
            return inter / union
        """,
    "a loop over units and concepts, chunks of 3 images, logical_and / logical_or": """
        def dissection_iou(activations, thresholds, concept_masks):
            K, C = activations.shape[1], concept_masks.shape[1]
            inter, union = torch.zeros(K, C), torch.zeros(K, C)
            for start in range(0, len(activations), 3):
                up = F.interpolate(activations[start:start + 3], size=tuple(concept_masks.shape[-2:]),
                                   mode="bilinear", align_corners=False)
                for k in range(K):
                    on = up[:, k] >= thresholds[k]
                    for c in range(C):
                        concept = concept_masks[start:start + 3, c]
                        inter[k, c] += torch.logical_and(on, concept).sum()
                        union[k, c] += torch.logical_or(on, concept).sum()
            return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))
        """,
    "strict > and numpy sums, one image at a time": """
        def dissection_iou(activations, thresholds, concept_masks):
            H, W = concept_masks.shape[-2:]
            K, C = activations.shape[1], concept_masks.shape[1]
            inter, on_total, concept_total = np.zeros((K, C)), np.zeros(K), np.zeros(C)
            for n in range(len(activations)):
                up = F.interpolate(activations[n:n + 1].double(), size=(H, W), mode="bilinear", align_corners=False)
                on = (up[0] > thresholds.double().view(-1, 1, 1)).numpy().reshape(K, -1).astype(np.float64)
                concept = concept_masks[n].numpy().reshape(C, -1).astype(np.float64)
                inter += on @ concept.T
                on_total += on.sum(1)
                concept_total += concept.sum(1)
            return torch.tensor(inter / (on_total[:, None] + concept_total[None, :] - inter), dtype=torch.float64)
        """,
    "broadcast (n, K, C, H, W) booleans over chunks of 2": """
        def dissection_iou(activations, thresholds, concept_masks):
            inter = union = 0
            for a, m in zip(activations.split(2), concept_masks.split(2)):
                up = F.interpolate(a, size=m.shape[-2:], mode="bilinear", align_corners=False)
                on = (up >= thresholds[None, :, None, None]).unsqueeze(2)
                inter = inter + (on & m.unsqueeze(1)).sum(dim=(0, 3, 4))
                union = union + (on | m.unsqueeze(1)).sum(dim=(0, 3, 4))
            return inter.double() / union.double()
        """,
}
_DISSECTION = """
        def dissection_iou(activations, thresholds, concept_masks):
            up = F.interpolate(activations, size=concept_masks.shape[-2:], mode="bilinear", align_corners=False)
            on = (up >= thresholds.view(1, -1, 1, 1)).float()
            masks = concept_masks.float()
            inter = torch.einsum("nkhw,nchw->kc", on, masks)
            return inter / (on.sum((0, 2, 3))[:, None] + masks.sum((0, 2, 3))[None, :] - inter)
"""
"""A correct dissection_iou that the bugs below change in one place."""


def _dissection(old: str, new: str) -> str:
    assert old in _DISSECTION, old
    return _DISSECTION.replace(old, new)


BUGS["dissection_iou"] = {
    "the mean of per-image IoUs": ("""
        def dissection_iou(activations, thresholds, concept_masks):
            up = F.interpolate(activations, size=concept_masks.shape[-2:], mode="bilinear", align_corners=False)
            on = (up >= thresholds.view(1, -1, 1, 1)).unsqueeze(2)
            masks = concept_masks.unsqueeze(1)
            inter, union = (on & masks).sum((3, 4)).float(), (on | masks).sum((3, 4)).float()
            return (inter / union.clamp_min(1)).mean(0)
        """, {"test_dissection_iou": "mean of per-image IoUs"}),
    "nearest-neighbour upsampling": (_dissection('mode="bilinear", align_corners=False', 'mode="nearest"'),
        {"test_dissection_iou": "nearest-neighbour"}),
    "align_corners=True": (_dissection('align_corners=False', 'align_corners=True'),
        {"test_dissection_iou": "align_corners=True"}),
    "masks brought down to the maps instead": ("""
        def dissection_iou(activations, thresholds, concept_masks):
            masks = (F.adaptive_avg_pool2d(concept_masks.float(), activations.shape[-2:]) >= 0.5).float()
            on = (activations >= thresholds.view(1, -1, 1, 1)).float()
            inter = torch.einsum("nkhw,nchw->kc", on, masks)
            return inter / (on.sum((0, 2, 3))[:, None] + masks.sum((0, 2, 3))[None, :] - inter)
        """, {"test_dissection_iou": "maps' resolution"}),
    "the Dice coefficient": (_dissection("return inter / (", "return 2 * inter / (").replace(" - inter)", ")"),
        {"test_dissection_iou": "Dice"}),
    "union without subtracting the intersection": ("""
        def dissection_iou(activations, thresholds, concept_masks):
            up = F.interpolate(activations, size=concept_masks.shape[-2:], mode="bilinear", align_corners=False)
            on = (up >= thresholds.view(1, -1, 1, 1)).float()
            masks = concept_masks.float()
            inter = torch.einsum("nkhw,nchw->kc", on, masks)
            return inter / (on.sum((0, 2, 3))[:, None] + masks.sum((0, 2, 3))[None, :])
        """, {"test_dissection_iou": "counts the pixels of the intersection once"}),
    "thresholds recomputed after upsampling (the given ones ignored)": ("""
        def dissection_iou(activations, thresholds, concept_masks):
            up = F.interpolate(activations, size=concept_masks.shape[-2:], mode="bilinear", align_corners=False)
            own = torch.quantile(up.transpose(0, 1).flatten(1), 0.995, dim=1)
            on = (up >= own.view(1, -1, 1, 1)).float()
            masks = concept_masks.float()
            inter = torch.einsum("nkhw,nchw->kc", on, masks)
            return inter / (on.sum((0, 2, 3))[:, None] + masks.sum((0, 2, 3))[None, :] - inter)
        """, {"test_dissection_iou": "wrong IoU"}),
}

# 09_embeddings -------------------------------------------------------------------------------------------------

ALTERNATIVES["nearest_neighbours"] = {
    "cosine_similarity broadcast, stable descending sort of similarities": """
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                similarity = F.cosine_similarity(query[:, None, :], gallery[None, :, :], dim=2)
                similarity, order = torch.sort(similarity, dim=1, descending=True, stable=True)
                return order[:, :k], 1 - similarity[:, :k]
            if metric == "l2":
                d = (query[:, None, :] - gallery[None, :, :]).pow(2).sum(dim=2).sqrt()
                d, order = torch.sort(d, dim=1, stable=True)
                return order[:, :k], d[:, :k]
            raise ValueError("metric must be 'cosine' or 'l2'")
        """,
    "numpy in float64, argsort kind='stable'": """
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            q, g = query.double().numpy(), gallery.double().numpy()
            if metric == "cosine":
                q = q / np.linalg.norm(q, axis=1, keepdims=True)
                g = g / np.linalg.norm(g, axis=1, keepdims=True)
                d = 1 - q @ g.T
            elif metric == "l2":
                d = np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(axis=2))
            else:
                raise ValueError(f"unknown metric {metric}")
            order = np.argsort(d, axis=1, kind="stable")[:, :k]
            return torch.from_numpy(order), torch.from_numpy(np.take_along_axis(d, order, axis=1)).to(query.dtype)
        """,
    "a loop over the queries, sorted by (distance, index)": """
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric not in ("cosine", "l2"):
                raise ValueError(metric)
            rows_i, rows_d = [], []
            for q in query:
                if metric == "cosine":
                    d = 1 - (gallery @ q) / (gallery.norm(dim=1) * q.norm())
                else:
                    d = (gallery - q).norm(dim=1)
                best = sorted(range(len(gallery)), key=lambda j: (d[j].item(), j))[:k]
                rows_i.append(best)
                rows_d.append(d[best])
            return torch.tensor(rows_i), torch.stack(rows_d)
        """,
    "squared distances sorted, square root of the k kept, stable topk by a tiny index offset": """
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                q, g = query / query.norm(dim=1, keepdim=True), gallery / gallery.norm(dim=1, keepdim=True)
                d = 1 - q @ g.T
            elif metric == "l2":
                d = torch.cdist(query, gallery).pow(2)
            else:
                raise ValueError("metric must be 'cosine' or 'l2'")
            d_sorted, order = d.sort(dim=1, stable=True)
            d_sorted = d_sorted[:, :k]
            return order[:, :k], d_sorted.clamp_min(0).sqrt() if metric == "l2" else d_sorted
        """,
}
BUGS["nearest_neighbours"] = {
    "squared L2 distances": ("""
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                d = 1 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T
            elif metric == "l2":
                d = torch.cdist(query, gallery) ** 2
            else:
                raise ValueError(metric)
            d, order = torch.sort(d, dim=1, stable=True)
            return order[:, :k], d[:, :k]
        """, {"test_nearest_neighbours": "not its square"}),
    "dot product without normalising the gallery": ("""
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                d = 1 - F.normalize(query, dim=1) @ gallery.T
            elif metric == "l2":
                d = torch.cdist(query, gallery)
            else:
                raise ValueError(metric)
            d, order = torch.sort(d, dim=1, stable=True)
            return order[:, :k], d[:, :k]
        """, {"test_nearest_neighbours": "not the 5 nearest"}),
    "the farthest rows (descending sort)": ("""
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                d = 1 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T
            elif metric == "l2":
                d = torch.cdist(query, gallery)
            else:
                raise ValueError(metric)
            d, order = torch.sort(d, dim=1, descending=True, stable=True)
            return order[:, :k], d[:, :k]
        """, {"test_nearest_neighbours": "nearest gallery rows"}),
    "returns cosine similarities, not distances": ("""
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                s = F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T
                s, order = torch.sort(s, dim=1, descending=True, stable=True)
                return order[:, :k], s[:, :k]
            if metric == "l2":
                d, order = torch.sort(torch.cdist(query, gallery), dim=1, stable=True)
                return order[:, :k], d[:, :k]
            raise ValueError(metric)
        """, {"test_nearest_neighbours": "1 - cosine similarity"}),
    "topk: ties in any order": ("""
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                d = 1 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T
            elif metric == "l2":
                d = torch.cdist(query, gallery)
            else:
                raise ValueError(metric)
            d, order = d.topk(k, dim=1, largest=False)
            return order, d
        """, {"test_nearest_neighbours_conventions": "smaller first"}),
    "normalises the caller's tensors in place": ("""
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                query /= query.norm(dim=1, keepdim=True)
                gallery /= gallery.norm(dim=1, keepdim=True)
                d = 1 - query @ gallery.T
            elif metric == "l2":
                d = torch.cdist(query, gallery)
            else:
                raise ValueError(metric)
            d, order = torch.sort(d, dim=1, stable=True)
            return order[:, :k], d[:, :k]
        """, {"test_nearest_neighbours_conventions": "changes the caller's query"}),
    "any metric but cosine is L2": ("""
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "cosine":
                d = 1 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T
            else:
                d = torch.cdist(query, gallery)
            d, order = torch.sort(d, dim=1, stable=True)
            return order[:, :k], d[:, :k]
        """, {"test_nearest_neighbours_conventions": "should raise ValueError"}),
}

ALTERNATIVES["knn_accuracy"] = {
    "bincount per row, numpy float": """
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
            correct = 0
            for row, label in zip(train_labels[indices], test_labels):
                correct += int(torch.bincount(row).argmax() == label)
            return np.float64(correct / len(test_labels))
        """,
    "scikit-learn's KNeighborsClassifier": """
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            from sklearn.neighbors import KNeighborsClassifier

            names = {"cosine": "cosine", "l2": "euclidean"}
            classifier = KNeighborsClassifier(n_neighbors=k, metric=names[metric], algorithm="brute")
            classifier.fit(train_feats.double().numpy(), train_labels.numpy())
            return float(classifier.score(test_feats.double().numpy(), test_labels.numpy()))
        """,
    "a Counter, most_common on sorted labels, float() of the mean": """
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            from collections import Counter

            indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
            predicted = []
            for row in train_labels[indices].tolist():
                counts = Counter(sorted(row))
                best = max(counts.values())
                predicted.append(min(label for label, count in counts.items() if count == best))
            return float((torch.tensor(predicted) == test_labels).double().mean())
        """,
    "scatter_add_ of votes": """
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
            votes = torch.zeros(len(test_feats), int(train_labels.max()) + 1)
            votes.scatter_add_(1, train_labels[indices], torch.ones(indices.shape))
            return (votes.argmax(dim=1) == test_labels).sum().item() / len(test_labels)
        """,
}
BUGS["knn_accuracy"] = {
    "a tie of votes goes to the nearest neighbour": ("""
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
            predicted = []
            for row in train_labels[indices].tolist():
                counts = {label: row.count(label) for label in row}
                predicted.append(max(row, key=lambda label: counts[label]))  # the first of the most voted
            return (torch.tensor(predicted) == test_labels).float().mean().item()
        """, {"test_knn_accuracy": "smallest label"}),
    "the number of correct rows, not the share": ("""
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
            votes = F.one_hot(train_labels[indices], int(train_labels.max()) + 1).sum(dim=1)
            return float((votes.argmax(dim=1) == test_labels).sum())
        """, {"test_knn_accuracy": "not a count"}),
    "the nearest neighbour only, whatever k": ("""
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            indices, _ = nearest_neighbours(test_feats, train_feats, 1, metric)
            return (train_labels[indices[:, 0]] == test_labels).float().mean().item()
        """, {"test_knn_accuracy": "wrong accuracy"}),
    "metric ignored (always cosine)": ("""
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            indices, _ = nearest_neighbours(test_feats, train_feats, k, "cosine")
            votes = F.one_hot(train_labels[indices], int(train_labels.max()) + 1).sum(dim=1)
            return (votes.argmax(dim=1) == test_labels).float().mean().item()
        """, {"test_knn_accuracy": "metric='l2'"}),
    "the mean label, rounded": ("""
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
            predicted = train_labels[indices].float().mean(dim=1).round().long()
            return (predicted == test_labels).float().mean().item()
        """, {"test_knn_accuracy": "wrong accuracy"}),
}

# 10_class_visualization ----------------------------------------------------------------------------------------

_VIS_HEAD = """
        def class_visualization(model, start, classes, steps, lr, l2_reg, max_jitter, blur_every, blur_sigma, generator):
            low, high = PIXEL_LOW.to(start.dtype), PIXEL_HIGH.to(start.dtype)
            x = start.detach().clone()
            with helpers.evaluating(model), torch.enable_grad():
                for t in range(1, steps + 1):
                    dy, dx = torch.randint(-max_jitter, max_jitter + 1, (2,), generator=generator).tolist()
                    rolled = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).requires_grad_()
"""
_VIS_TAIL = """
                    x = torch.maximum(torch.minimum(x, high), low)
                    if blur_every > 0 and t % blur_every == 0:
                        x = helpers.gaussian_blur(x, blur_sigma)
            return x
"""


def _vis(middle: str, head: str = _VIS_HEAD, tail: str = _VIS_TAIL) -> str:
    """A class_visualization whose gradient and step (the lines after the roll) are ``middle``."""
    return head + textwrap.indent(textwrap.dedent(middle).strip("\n"), " " * 20) + "\n" + tail


_VIS_STEP = """
    objective = model(rolled).gather(1, classes[:, None]).sum() - l2_reg * rolled.pow(2).sum()
    (grad,) = torch.autograd.grad(objective, rolled)
    step = lr * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    x = torch.roll(rolled.detach() + step, shifts=(-dy, -dx), dims=(2, 3))
"""

ALTERNATIVES["class_visualization"] = {
    "the penalty's gradient -2 lambda x by hand": _vis("""
        (grad,) = torch.autograd.grad(model(rolled).gather(1, classes[:, None]).sum(), rolled)
        grad = grad - 2 * l2_reg * rolled.detach()
        step = lr * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x = torch.roll(rolled.detach() + step, shifts=(-dy, -dx), dims=(2, 3))
        """),
    "the gradient rolled back, the step on the unrolled image": _vis("""
        objective = model(rolled).gather(1, classes[:, None]).sum() - l2_reg * (rolled ** 2).sum()
        (grad,) = torch.autograd.grad(objective, rolled)
        grad = torch.roll(grad, shifts=(-dy, -dx), dims=(2, 3))
        x = x + lr * F.normalize(grad.flatten(1), dim=1).view_as(grad)
        """),
    "one image at a time, backward(inputs=...), a loss to minimise": _vis("""
        steps_taken = []
        for n in range(len(rolled)):
            image = rolled[n:n + 1].detach().requires_grad_()
            loss = -(model(image)[0, classes[n]] - l2_reg * image.pow(2).sum())
            loss.backward(inputs=[image])          # only image.grad is written
            grad = -image.grad
            steps_taken.append(image.detach() + lr * grad / grad.norm())
        x = torch.roll(torch.cat(steps_taken), shifts=(-dy, -dx), dims=(2, 3))
        """),
    "torch.clamp with tensor bounds, the blur imported from torchvision.transforms": """
        def class_visualization(model, start, classes, steps, lr, l2_reg, max_jitter, blur_every, blur_sigma, generator):
            from torchvision import transforms

            x = start.clone()
            was_training = model.training
            model.eval()
            try:
                for t in range(1, steps + 1):
                    offsets = torch.randint(-max_jitter, max_jitter + 1, (2,), generator=generator)
                    dy, dx = int(offsets[0]), int(offsets[1])
                    rolled = torch.roll(x, (dy, dx), (2, 3)).requires_grad_(True)
                    with torch.enable_grad():
                        score = model(rolled)[torch.arange(len(classes)), classes].sum()
                        (grad,) = torch.autograd.grad(score - l2_reg * torch.sum(rolled * rolled), rolled)
                    norms = torch.linalg.vector_norm(grad, dim=(1, 2, 3), keepdim=True)
                    x = torch.roll(rolled.detach() + lr * grad / norms, (-dy, -dx), (2, 3))
                    x = torch.clamp(x, min=PIXEL_LOW.to(x.dtype), max=PIXEL_HIGH.to(x.dtype))
                    if blur_every and t % blur_every == 0:
                        x = transforms.functional.gaussian_blur(x, [5, 5], [blur_sigma, blur_sigma])
            finally:
                model.train(was_training)
            return x.detach()
        """,
}
BUGS["class_visualization"] = {
    "ascent on the softmax probability": (_vis("""
        objective = model(rolled).softmax(1).gather(1, classes[:, None]).sum() - l2_reg * rolled.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, rolled)
        step = lr * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x = torch.roll(rolled.detach() + step, shifts=(-dy, -dx), dims=(2, 3))
        """), {"test_class_visualization": "other images"}),
    "descent instead of ascent": (_vis("""
        objective = model(rolled).gather(1, classes[:, None]).sum() - l2_reg * rolled.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, rolled)
        step = lr * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x = torch.roll(rolled.detach() - step, shifts=(-dy, -dx), dims=(2, 3))
        """), {"test_class_visualization": "downhill"}),
    "the jitter never undone": (_vis("""
        objective = model(rolled).gather(1, classes[:, None]).sum() - l2_reg * rolled.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, rolled)
        x = rolled.detach() + lr * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        """), {"test_class_visualization": "other images"}),
    "the penalty added instead of subtracted": (_vis("""
        objective = model(rolled).gather(1, classes[:, None]).sum() + l2_reg * rolled.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, rolled)
        step = lr * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x = torch.roll(rolled.detach() + step, shifts=(-dy, -dx), dims=(2, 3))
        """), {"test_class_visualization": "wrong sign"}),
    "one norm for the whole batch": (_vis("""
        objective = model(rolled).gather(1, classes[:, None]).sum() - l2_reg * rolled.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, rolled)
        x = torch.roll(rolled.detach() + lr * grad / grad.norm(), shifts=(-dy, -dx), dims=(2, 3))
        """), {"test_class_visualization": "other images"}),
    "the blur at steps 0, k, 2k ... (t from 0)": (_vis(_VIS_STEP, tail=_VIS_TAIL.replace(
        "t % blur_every == 0", "(t - 1) % blur_every == 0")), {"test_class_visualization": "other images"}),
    "the model left in the caller's mode (train mode)": (_vis(_VIS_STEP, head=_VIS_HEAD.replace(
        "with helpers.evaluating(model), torch.enable_grad():", "with torch.enable_grad():")),
        {"test_class_visualization_side_effects": "eval mode"}),
    "backward() leaves gradients in the parameters": (_vis("""
        objective = model(rolled).gather(1, classes[:, None]).sum() - l2_reg * rolled.pow(2).sum()
        objective.backward()
        grad = rolled.grad
        step = lr * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x = torch.roll(rolled.detach() + step, shifts=(-dy, -dx), dims=(2, 3))
        """), {"test_class_visualization_side_effects": "leaves gradients"}),
    "the caller's start updated in place": (_vis("""
        objective = model(rolled).gather(1, classes[:, None]).sum() - l2_reg * rolled.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, rolled)
        step = lr * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x.copy_(torch.roll(rolled.detach() + step, shifts=(-dy, -dx), dims=(2, 3)))  # x is start itself
        """, head=_VIS_HEAD.replace("x = start.detach().clone()", "x = start.detach()")),
        {"test_class_visualization_side_effects": "changes the values"}),
}

_FOOL = """
        def fool(model, image, target, step, max_steps):
            low, high = PIXEL_LOW.to(image.dtype), PIXEL_HIGH.to(image.dtype)
            x = image.detach().clone()
            with helpers.evaluating(model), torch.enable_grad():
                for n in range(max_steps + 1):
                    x.requires_grad_()
                    scores = model(x[None])[0]
                    if scores.argmax().item() == target or n == max_steps:
                        return x.detach(), n
                    (grad,) = torch.autograd.grad(scores[target], x)
                    x = torch.maximum(torch.minimum(x.detach() + step * grad / grad.norm(), high), low)
"""

ALTERNATIVES["fool"] = {
    "a while loop, the prediction under no_grad": """
        def fool(model, image, target, step, max_steps):
            x, n = image.clone(), 0
            with helpers.evaluating(model):
                while n < max_steps:
                    with torch.no_grad():
                        if model(x[None]).argmax(1).item() == target:
                            break
                    x = x.requires_grad_()
                    with torch.enable_grad():
                        (grad,) = torch.autograd.grad(model(x[None])[0, target], x)
                    x = x.detach() + step * grad / torch.linalg.vector_norm(grad)
                    x = torch.clamp(x, min=PIXEL_LOW.to(x.dtype), max=PIXEL_HIGH.to(x.dtype))
                    n += 1
            return x.detach(), n
        """,
    "backward(inputs=...) on a fresh leaf, F.normalize": """
        def fool(model, image, target, step, max_steps):
            low, high = PIXEL_LOW.to(image.dtype), PIXEL_HIGH.to(image.dtype)
            x = image.detach().clone()
            model_was_training = model.training
            model.eval()
            for n in range(max_steps + 1):
                leaf = x.clone().requires_grad_(True)
                with torch.enable_grad():
                    scores = model(leaf.unsqueeze(0)).squeeze(0)
                if int(torch.argmax(scores)) == target:
                    break
                if n == max_steps:
                    break
                scores[target].backward(inputs=[leaf])
                direction = F.normalize(leaf.grad.flatten(), dim=0).view_as(leaf)
                x = (x + step * direction).clamp(min=low, max=high)
            model.train(model_was_training)
            return x, n
        """,
    "a while loop on helpers.predict, the count kept in a tensor": """
        def fool(model, image, target, step, max_steps):
            x = image.clone()
            steps = torch.tensor(0)
            while helpers.predict(model, x[None]).argmax().item() != target and steps < max_steps:
                with helpers.evaluating(model), torch.enable_grad():
                    leaf = x.requires_grad_()
                    (grad,) = torch.autograd.grad(model(leaf[None])[0][target], leaf)
                x = torch.max(torch.min(x.detach() + step * grad / grad.norm(), PIXEL_HIGH.to(x.dtype)),
                              PIXEL_LOW.to(x.dtype))
                steps += 1
            return x, int(steps)
        """,
}
BUGS["fool"] = {
    "no stopping rule: every step taken": (_FOOL.replace(
        "if scores.argmax().item() == target or n == max_steps:", "if n == max_steps:"), {"test_fool": "takes all"}),
    "the count off by one": (_FOOL.replace("return x.detach(), n", "return x.detach(), n + 1"),
                             {"test_fool": "steps"}),
    "the prediction read only after a step": ("""
        def fool(model, image, target, step, max_steps):
            low, high = PIXEL_LOW.to(image.dtype), PIXEL_HIGH.to(image.dtype)
            x = image.detach().clone()
            with helpers.evaluating(model), torch.enable_grad():
                for n in range(1, max_steps + 1):
                    x.requires_grad_()
                    (grad,) = torch.autograd.grad(model(x[None])[0, target], x)
                    x = torch.maximum(torch.minimum(x.detach() + step * grad / grad.norm(), high), low)
                    if model(x[None]).argmax().item() == target:
                        break
            return x.detach(), n
        """, {"test_fool": "already predicts"}),
    "a plain gradient step, not normalised": (_FOOL.replace("step * grad / grad.norm()", "step * grad"),
                                              {"test_fool": "fool("}),
    "ascent on the softmax probability": (_FOOL.replace(
        "torch.autograd.grad(scores[target], x)", "torch.autograd.grad(scores.softmax(0)[target], x)"),
        {"test_fool": "fool("}),
    "no clamp to valid pixels": (_FOOL.replace(
        "torch.maximum(torch.minimum(x.detach() + step * grad / grad.norm(), high), low)",
        "x.detach() + step * grad / grad.norm()"), {"test_fool": "fool("}),
    "the model left in train mode": (_FOOL.replace(
        "with helpers.evaluating(model), torch.enable_grad():", "with torch.enable_grad():"),
        {"test_fool_side_effects": "eval mode"}),
    "backward() leaves gradients in the parameters": (_FOOL.replace(
        "(grad,) = torch.autograd.grad(scores[target], x)", "scores[target].backward()\n"
        "                    grad = x.grad"), {"test_fool_side_effects": "leaves gradients"}),
}

# 11_occlusion --------------------------------------------------------------------------------------------------

ALTERNATIVES["occlusion_drops"] = {
    "masks blended into the copies, the mode saved and restored by hand": """
        def occlusion_drops(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
            height, width = image.shape[-2:]
            rows = int(np.ceil((height - window) / stride)) + 1
            cols = int(np.ceil((width - window) / stride)) + 1
            masks = torch.zeros(rows * cols, 1, height, width, dtype=image.dtype)
            for n in range(rows * cols):
                r, c = divmod(n, cols)
                masks[n, :, r * stride : r * stride + window, c * stride : c * stride + window] = 1
            was_training = model.training
            model.eval()
            with torch.no_grad():
                clean = model(image[None])[0, class_idx]
                scores = torch.cat([model(image * (1 - m) + fill * m)[:, class_idx] for m in masks.split(batch_size)])
            model.train(was_training)
            return (clean - scores).reshape(rows, cols)
        """,
    "the clean image in the first batch, explicit clipping with min()": """
        def occlusion_drops(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
            height, width = image.shape[-2:]
            tops = list(range(0, height - window + stride, stride))
            lefts = list(range(0, width - window + stride, stride))
            copies = [image.clone()]
            for top in tops:
                for left in lefts:
                    copy = image.clone()
                    copy[:, top : min(top + window, height), left : min(left + window, width)] = fill
                    copies.append(copy)
            with helpers.evaluating(model), torch.no_grad():
                scores = torch.cat([model(torch.stack(copies[i : i + batch_size]))[:, class_idx]
                                    for i in range(0, len(copies), batch_size)])
            return (scores[0] - scores[1:]).view(len(tops), len(lefts))
        """,
    "all copies first with unfold-free indexing, then torch.split": """
        def occlusion_drops(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
            h, w = image.shape[1:]
            rows, cols = -(-(h - window) // stride) + 1, -(-(w - window) // stride) + 1
            copies = image.expand(rows * cols, *image.shape).clone()
            for i in range(rows):
                for j in range(cols):
                    copies[i * cols + j, :, i * stride : i * stride + window, j * stride : j * stride + window] = fill
            with helpers.evaluating(model), torch.inference_mode():
                clean = model(image.unsqueeze(0))[:, class_idx]
                occluded = torch.cat([model(batch)[:, class_idx] for batch in torch.split(copies, batch_size)])
            return (clean - occluded).reshape(rows, cols).clone()
        """,
}
_OCCLUSION = """
        def occlusion_drops(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
            h, w = image.shape[1:]
            rows, cols = -(-(h - window) // stride) + 1, -(-(w - window) // stride) + 1
            copies = image.repeat(rows * cols, 1, 1, 1)
            for n, copy in enumerate(copies):
                r, c = divmod(n, cols)
                copy[:, r * stride : r * stride + window, c * stride : c * stride + window] = fill
            with helpers.evaluating(model), torch.no_grad():
                clean = model(image[None])[0, class_idx]
                scores = torch.cat([model(b)[:, class_idx] for b in copies.split(batch_size)])
            return (clean - scores).view(rows, cols)
"""
"""A correct occlusion_drops that each bug below changes in one place."""


def _occlusion(old: str, new: str) -> str:
    assert old in _OCCLUSION, old
    return _OCCLUSION.replace(old, new)


BUGS["occlusion_drops"] = {
    "the sign reversed": (_occlusion("return (clean - scores)", "return (scores - clean)"),
                          {"test_occlusion_drops": "sign reversed"}),
    "floor instead of ceil: the clipped last windows are missing": (_occlusion(
        "rows, cols = -(-(h - window) // stride) + 1, -(-(w - window) // stride) + 1",
        "rows, cols = (h - window) // stride + 1, (w - window) // stride + 1"), {"test_occlusion_drops": "has shape"}),
    "the softmax probability instead of the logit": (_occlusion(
        "model(image[None])[0, class_idx]", "model(image[None]).softmax(1)[0, class_idx]").replace(
        "model(b)[:, class_idx]", "model(b).softmax(1)[:, class_idx]"), {"test_occlusion_drops": "wrong values"}),
    "only the first colour channel filled": (_occlusion("copy[:, r * stride", "copy[0, r * stride"),
                                             {"test_occlusion_drops": "wrong values"}),
    "one forward pass per copy": ("""
        def occlusion_drops(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
            h, w = image.shape[1:]
            rows, cols = -(-(h - window) // stride) + 1, -(-(w - window) // stride) + 1
            drops = torch.zeros(rows, cols, dtype=image.dtype)
            with helpers.evaluating(model), torch.no_grad():
                clean = model(image[None])[0, class_idx]
                for r in range(rows):
                    for c in range(cols):
                        copy = image.clone()
                        copy[:, r * stride : r * stride + window, c * stride : c * stride + window] = fill
                        drops[r, c] = clean - model(copy[None])[0, class_idx]
            return drops
        """, {"test_occlusion_drops_batched": "batch_size"}),
    "the model's mode left as it is (train mode uses batch statistics)": (_occlusion(
        "with helpers.evaluating(model), torch.no_grad():", "with torch.no_grad():"),
        {"test_occlusion_drops_batched": "eval mode"}),
}

ALTERNATIVES["occlusion_map"] = {
    "a transposed convolution with a kernel of ones": """
        def occlusion_map(drops, window, stride, size):
            kernel = torch.ones(1, 1, window, window, dtype=drops.dtype)
            sums = F.conv_transpose2d(drops[None, None], kernel, stride=stride)[0, 0, : size[0], : size[1]]
            counts = F.conv_transpose2d(torch.ones_like(drops)[None, None], kernel, stride=stride)
            return sums / counts[0, 0, : size[0], : size[1]]
        """,
    "F.fold of the repeated drops": """
        def occlusion_map(drops, window, stride, size):
            rows, cols = drops.shape
            full = ((rows - 1) * stride + window, (cols - 1) * stride + window)
            patches = drops.reshape(1, 1, rows * cols).expand(1, window * window, rows * cols)
            sums = F.fold(patches, full, window, stride=stride)
            counts = F.fold(torch.ones_like(patches), full, window, stride=stride)
            return (sums / counts)[0, 0, : size[0], : size[1]]
        """,
    "numpy, pixel by pixel, in float64": """
        def occlusion_map(drops, window, stride, size):
            d = drops.double().numpy()
            out = np.zeros(size)
            for i in range(size[0]):
                for j in range(size[1]):
                    rs = [r for r in range(d.shape[0]) if r * stride <= i < r * stride + window]
                    cs = [c for c in range(d.shape[1]) if c * stride <= j < c * stride + window]
                    out[i, j] = d[np.ix_(rs, cs)].mean()
            return torch.from_numpy(out).to(drops.dtype)
        """,
}
BUGS["occlusion_map"] = {
    "the sums, not divided by the number of windows": ("""
        def occlusion_map(drops, window, stride, size):
            sums = torch.zeros(size, dtype=drops.dtype)
            for r in range(drops.shape[0]):
                for c in range(drops.shape[1]):
                    sums[r * stride : r * stride + window, c * stride : c * stride + window] += drops[r, c]
            return sums
        """, {"test_occlusion_map": "divide"}),
    "the last window written over the others": ("""
        def occlusion_map(drops, window, stride, size):
            heat = torch.zeros(size, dtype=drops.dtype)
            for r in range(drops.shape[0]):
                for c in range(drops.shape[1]):
                    heat[r * stride : r * stride + window, c * stride : c * stride + window] = drops[r, c]
            return heat
        """, {"test_occlusion_map": "wrong values"}),
    "the grid stretched to the image size (bilinear)": ("""
        def occlusion_map(drops, window, stride, size):
            return F.interpolate(drops[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        """, {"test_occlusion_map": "wrong values"}),
    "windows placed every `window` pixels instead of every `stride`": ("""
        def occlusion_map(drops, window, stride, size):
            sums = torch.zeros(size, dtype=drops.dtype)
            counts = torch.zeros(size, dtype=drops.dtype)
            for r in range(drops.shape[0]):
                for c in range(drops.shape[1]):
                    sums[r * window : r * window + window, c * window : c * window + window] += drops[r, c]
                    counts[r * window : r * window + window, c * window : c * window + window] += 1
            return sums / counts.clamp_min(1)
        """, {"test_occlusion_map": "wrong values"}),
}

# 12_attributions -----------------------------------------------------------------------------------------------

ALTERNATIVES["smoothgrad"] = {
    "one copy at a time, gradients summed by hand, the mode saved and restored": """
        def smoothgrad(model, image, class_idx, samples, sigma, generator):
            noise = sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)
            was_training = model.training
            model.eval()
            total = torch.zeros_like(image)
            for i in range(samples):
                x = (image + noise[i]).detach().requires_grad_(True)
                total += torch.autograd.grad(model(x[None])[0, class_idx], x)[0]
            model.train(was_training)
            return total / samples
        """,
    "grad_outputs of ones instead of a sum, the total divided by the count": """
        def smoothgrad(model, image, class_idx, samples, sigma, generator):
            noise = sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)
            with helpers.evaluating(model):
                x = (image.unsqueeze(0) + noise).clone().requires_grad_()
                scores = model(x)
                grads = torch.autograd.grad(scores[:, class_idx], x, grad_outputs=torch.ones(samples, dtype=x.dtype))[0]
            return grads.sum(0) / samples
        """,
    "the gradient of the mean score, two copies per batch": """
        def smoothgrad(model, image, class_idx, samples, sigma, generator):
            noise = sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)
            parts = []
            with helpers.evaluating(model):
                for chunk in (image + noise).split(2):
                    x = chunk.detach().requires_grad_()
                    parts.append(torch.autograd.grad(model(x)[:, class_idx].mean(), x)[0] * len(chunk))
            return torch.cat(parts).sum(0) / samples
        """,
}
_SMOOTHGRAD = """
        def smoothgrad(model, image, class_idx, samples, sigma, generator):
            noise = sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)
            with helpers.evaluating(model), torch.enable_grad():
                copies = (image.detach() + noise).requires_grad_()
                (grad,) = torch.autograd.grad(model(copies)[:, class_idx].sum(), copies)
            return grad.mean(dim=0)
"""
"""A correct smoothgrad that each bug below changes in one place."""


def _smoothgrad(old: str, new: str) -> str:
    assert old in _SMOOTHGRAD, old
    return _SMOOTHGRAD.replace(old, new)


BUGS["smoothgrad"] = {
    "sigma forgotten: noise of standard deviation 1": (_smoothgrad("noise = sigma * torch.randn", "noise = torch.randn"),
                                                        {"test_smoothgrad": "wrong values"}),
    "sigma used as the variance": (_smoothgrad("noise = sigma * torch.randn", "noise = sigma ** 2 * torch.randn"),
                                   {"test_smoothgrad": "wrong values"}),
    "the magnitudes averaged (abs before the mean)": (_smoothgrad("return grad.mean(dim=0)",
                                                                  "return grad.abs().mean(dim=0)"),
                                                      {"test_smoothgrad": "wrong values"}),
    "the sum of the gradients, not their mean": (_smoothgrad("return grad.mean(dim=0)", "return grad.sum(dim=0)"),
                                                 {"test_smoothgrad": "wrong values"}),
    "the softmax probability instead of the logit": (_smoothgrad(
        "model(copies)[:, class_idx]", "model(copies).softmax(1)[:, class_idx]"), {"test_smoothgrad": "wrong values"}),
    "the model's mode left as it is": (_smoothgrad("with helpers.evaluating(model), torch.enable_grad():",
                                                   "with torch.enable_grad():"),
                                       {"test_smoothgrad_side_effects": "eval mode"}),
    ".backward() into the parameters' .grad": (_smoothgrad(
        "(grad,) = torch.autograd.grad(model(copies)[:, class_idx].sum(), copies)",
        "model(copies)[:, class_idx].sum().backward()\n                grad = copies.grad"),
        {"test_smoothgrad_side_effects": "leaves gradients"}),
}

ALTERNATIVES["integrated_gradients"] = {
    "all path points in one batch": """
        def integrated_gradients(model, image, class_idx, baseline, steps):
            alphas = (torch.arange(steps, dtype=image.dtype) + 0.5) / steps
            with helpers.evaluating(model):
                path = (baseline + alphas[:, None, None, None] * (image - baseline)).requires_grad_()
                (grad,) = torch.autograd.grad(model(path)[:, class_idx].sum(), path)
            return (image - baseline) * grad.mean(0)
        """,
    "one point at a time, alphas from linspace, the mode saved and restored": """
        def integrated_gradients(model, image, class_idx, baseline, steps):
            alphas = torch.linspace(0.5 / steps, 1 - 0.5 / steps, steps, dtype=torch.float64)
            was_training = model.training
            model.eval()
            total = torch.zeros_like(image)
            for alpha in alphas.tolist():
                x = (baseline + alpha * (image - baseline)).detach().requires_grad_(True)
                total = total + torch.autograd.grad(model(x[None])[0, class_idx], x)[0]
            model.train(was_training)
            return (image - baseline) * total / steps
        """,
    "captum's IntegratedGradients, riemann_middle": """
        def integrated_gradients(model, image, class_idx, baseline, steps):
            from captum.attr import IntegratedGradients
            with helpers.evaluating(model):
                ig = IntegratedGradients(model).attribute(image[None], baselines=baseline[None], target=class_idx,
                                                          n_steps=steps, method="riemann_middle")
            return ig[0].detach()
        """,
}
_IG = """
        def integrated_gradients(model, image, class_idx, baseline, steps):
            alphas = (torch.arange(steps, dtype=image.dtype) + 0.5) / steps
            total = torch.zeros_like(image)
            with helpers.evaluating(model), torch.enable_grad():
                for chunk in alphas.split(8):
                    path = (baseline + chunk.view(-1, 1, 1, 1) * (image - baseline)).detach().requires_grad_()
                    (grad,) = torch.autograd.grad(model(path)[:, class_idx].sum(), path)
                    total += grad.sum(dim=0)
            return (image - baseline) * total / steps
"""
"""A correct integrated_gradients that each bug below changes in one place."""


def _ig(old: str, new: str) -> str:
    assert old in _IG, old
    return _IG.replace(old, new)


BUGS["integrated_gradients"] = {
    "left Riemann sum (alpha = k / m)": (_ig("(torch.arange(steps, dtype=image.dtype) + 0.5) / steps",
                                             "torch.arange(steps, dtype=image.dtype) / steps"),
                                         {"test_integrated_gradients": "wrong values"}),
    "not multiplied by (x - x')": (_ig("return (image - baseline) * total / steps", "return total / steps"),
                                   {"test_integrated_gradients": "wrong values"}),
    "multiplied by x instead of (x - x')": (_ig("return (image - baseline) * total / steps",
                                                "return image * total / steps"),
                                            {"test_integrated_gradients": "wrong values"}),
    "the sum of the gradients, not their mean": (_ig("return (image - baseline) * total / steps",
                                                     "return (image - baseline) * total"),
                                                 {"test_integrated_gradients": "wrong values"}),
    "the model's mode left as it is": (_ig("with helpers.evaluating(model), torch.enable_grad():",
                                           "with torch.enable_grad():"),
                                       {"test_integrated_gradients_side_effects": "eval mode"}),
    ".backward() into the parameters' .grad": (_ig(
        "(grad,) = torch.autograd.grad(model(path)[:, class_idx].sum(), path)",
        "model(path)[:, class_idx].sum().backward()\n                    grad = path.grad"),
        {"test_integrated_gradients_side_effects": "leaves gradients"}),
}

# 13_sanity_checks ---------------------------------------------------------------------------------------------

ALTERNATIVES["rank_correlation"] = {
    "scipy's spearmanr, pair by pair": """
        def rank_correlation(maps_a, maps_b):
            from scipy.stats import spearmanr

            return torch.tensor([spearmanr(a.flatten().numpy(), b.flatten().numpy())[0] for a, b in zip(maps_a, maps_b)])
        """,
    "scipy's rankdata and numpy's corrcoef, in float32": """
        def rank_correlation(maps_a, maps_b):
            from scipy.stats import rankdata

            a = rankdata(maps_a.flatten(1).numpy(), axis=1)
            b = rankdata(maps_b.flatten(1).numpy(), axis=1)
            return torch.tensor([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)], dtype=torch.float32)
        """,
    "ranks by pairwise comparisons, all maps at once": """
        def rank_correlation(maps_a, maps_b):
            def ranks(v):  # (N, n): values below, plus half of the equal ones (itself included), plus 1/2
                below = (v[:, None, :] < v[:, :, None]).sum(-1)
                equal = (v[:, None, :] == v[:, :, None]).sum(-1)
                return (below + (equal + 1) / 2).double()

            r, q = ranks(maps_a.flatten(1)), ranks(maps_b.flatten(1))
            r, q = r - r.mean(1, keepdim=True), q - q.mean(1, keepdim=True)
            return (r * q).sum(1) / (r.norm(dim=1) * q.norm(dim=1))
        """,
    "sort, then the average position of each run of equal values": """
        def rank_correlation(maps_a, maps_b):
            def ranks(v):
                values, order = torch.sort(v)
                result = torch.empty(len(v), dtype=torch.float64)
                i = 0
                while i < len(v):
                    j = i
                    while j + 1 < len(v) and values[j + 1] == values[i]:
                        j += 1
                    result[order[i : j + 1]] = (i + j) / 2 + 1
                    i = j + 1
                return result

            out = []
            for a, b in zip(maps_a.flatten(1), maps_b.flatten(1)):
                out.append(torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1])
            return torch.stack(out)
        """,
}
_RANKS = """
        def rank_correlation(maps_a, maps_b):
            def ranks(v):
                _, inverse, counts = torch.unique(v, return_inverse=True, return_counts=True)
                return (counts.cumsum(0) - (counts - 1) / 2).double()[inverse]

            out = []
            for a, b in zip(maps_a.flatten(1).double(), maps_b.flatten(1).double()):
                r, q = ranks(a), ranks(b)
                out.append(torch.corrcoef(torch.stack([r, q]))[0, 1])
            return torch.stack(out)
"""
"""A correct rank_correlation that each bug below changes in one place."""


def _ranks(old: str, new: str) -> str:
    assert old in _RANKS, old
    return _RANKS.replace(old, new)


BUGS["rank_correlation"] = {
    "ordinal ranks: tied values ranked one after the other": (_ranks(
        "_, inverse, counts = torch.unique(v, return_inverse=True, return_counts=True)\n"
        "                return (counts.cumsum(0) - (counts - 1) / 2).double()[inverse]",
        "return torch.argsort(torch.argsort(v)).double()"), {"test_rank_correlation": "average of the ranks"}),
    "the lowest rank of each tie instead of the average": (_ranks(
        "(counts.cumsum(0) - (counts - 1) / 2)", "(counts.cumsum(0) - (counts - 1))"),
        {"test_rank_correlation": "average of the ranks"}),
    "Pearson's correlation of the values, not of their ranks": (_ranks("r, q = ranks(a), ranks(b)", "r, q = a, b"),
                                                                {"test_rank_correlation": "wrong values"}),
    "one correlation over all the maps at once": (_ranks(
        "zip(maps_a.flatten(1).double(), maps_b.flatten(1).double())",
        "zip(maps_a.flatten()[None].double(), maps_b.flatten()[None].double())"), {"test_rank_correlation": "has shape"}),
    "Spearman's shortcut 1 - 6 sum d^2 / (n (n^2 - 1)), which needs distinct values": (_ranks(
        "out.append(torch.corrcoef(torch.stack([r, q]))[0, 1])",
        "out.append(1 - 6 * (r - q).pow(2).sum() / (len(r) * (len(r) ** 2 - 1)))"),
        {"test_rank_correlation": "tied values"}),
}

ALTERNATIVES["perturbation_curve"] = {
    "a boolean mask grown pixel by pixel, the mode saved and restored by hand": """
        def perturbation_curve(model, start, end, saliency, class_idx, step, batch_size=16):
            h, w = saliency.shape
            order = torch.argsort(saliency.reshape(-1), descending=True)
            counts = list(range(0, h * w, step)) + [h * w]
            was_training = model.training
            model.eval()
            results = []
            with torch.no_grad():
                for i in range(0, len(counts), batch_size):
                    batch = []
                    for count in counts[i : i + batch_size]:
                        mask = torch.zeros(h * w)
                        mask[order[:count]] = 1
                        mask = mask.view(1, h, w).to(start.dtype)
                        batch.append(start * (1 - mask) + end * mask)
                    results.append(F.softmax(model(torch.stack(batch)), dim=1)[:, class_idx])
            model.train(was_training)
            return torch.cat(results)
        """,
    "numpy's stable argsort of the negated map, all images first, then torch.split": """
        def perturbation_curve(model, start, end, saliency, class_idx, step, batch_size=16):
            n = saliency.numel()
            order = torch.from_numpy(np.argsort(-saliency.flatten().numpy(), kind="stable"))
            steps = int(np.ceil(n / step))
            images = start.repeat(steps + 1, 1, 1, 1).reshape(steps + 1, start.shape[0], n)
            flat_end = end.reshape(end.shape[0], n)
            for k in range(1, steps + 1):
                chosen = order[: min(k * step, n)]
                images[k][:, chosen] = flat_end[:, chosen]
            images = images.reshape(steps + 1, *start.shape)
            with helpers.evaluating(model), torch.inference_mode():
                probs = [torch.softmax(model(chunk), dim=-1)[:, class_idx] for chunk in torch.split(images, batch_size)]
            return torch.cat(probs).clone()
        """,
    "the first and last images on their own, the steps between in batches": """
        def perturbation_curve(model, start, end, saliency, class_idx, step, batch_size=16):
            n = saliency.numel()
            rank = torch.empty(n, dtype=torch.long)
            rank[saliency.flatten().argsort(descending=True)] = torch.arange(n)
            rank = rank.view_as(saliency)
            inner = [k * step for k in range(1, -(-n // step))]
            with helpers.evaluating(model), torch.no_grad():
                p = lambda x: model(x).softmax(1)[:, class_idx]
                first, last = p(start[None]), p(end[None])
                middle = [p(torch.stack([torch.where(rank < c, end, start) for c in inner[i : i + batch_size]]))
                          for i in range(0, len(inner), batch_size)]
            return torch.cat([first, *middle, last])
        """,
    "float64 softmax, the caller's dtype back": """
        def perturbation_curve(model, start, end, saliency, class_idx, step, batch_size=16):
            n = saliency.numel()
            order = torch.argsort(saliency.flatten(), descending=True, stable=True)
            position = torch.empty_like(order)
            position[order] = torch.arange(n)
            counts = [min(k * step, n) for k in range(-(-n // step) + 1)]
            out = []
            with helpers.evaluating(model), torch.no_grad():
                for i in range(0, len(counts), batch_size):
                    batch = torch.stack([torch.where((position < c).view_as(saliency), end, start)
                                         for c in counts[i : i + batch_size]])
                    out.append(model(batch).double().softmax(1)[:, class_idx])
            return torch.cat(out).to(start.dtype)
        """,
}
_CURVE = """
        def perturbation_curve(model, start, end, saliency, class_idx, step, batch_size=16):
            n = saliency.numel()
            order = torch.argsort(saliency.flatten(), descending=True)
            counts = [min(k * step, n) for k in range(-(-n // step) + 1)]
            images = []
            for count in counts:
                taken = torch.zeros(n, dtype=torch.bool)
                taken[order[:count]] = True
                images.append(torch.where(taken.view(saliency.shape), end, start))
            images = torch.stack(images)
            with helpers.evaluating(model), torch.no_grad():
                return torch.cat([model(b).softmax(1)[:, class_idx] for b in images.split(batch_size)])
"""
"""A correct perturbation_curve that each bug below changes in one place."""


def _curve(old: str, new: str) -> str:
    assert old in _CURVE, old
    return _CURVE.replace(old, new)


BUGS["perturbation_curve"] = {
    "the least salient pixels first": (_curve("descending=True", "descending=False"),
                                       {"test_perturbation_curve": "decreasing saliency"}),
    "the logit instead of the softmax probability": (_curve("model(b).softmax(1)[:, class_idx]", "model(b)[:, class_idx]"),
                                                     {"test_perturbation_curve": "wrong values"}),
    "floor instead of ceil: the last, shorter step is missing": (_curve(
        "range(-(-n // step) + 1)", "range(n // step + 1)"), {"test_perturbation_curve": "has shape"}),
    "the probability of the predicted class instead of class_idx": (_curve(
        "model(b).softmax(1)[:, class_idx]", "model(b).softmax(1).amax(1)"), {"test_perturbation_curve": "wrong values"}),
    "one forward pass per image": (_curve(
        "for b in images.split(batch_size)", "for b in images.split(1)"), {"test_perturbation_curve_batched": "batch_size"}),
    "the model's mode left as it is (train mode uses batch statistics)": (_curve(
        "with helpers.evaluating(model), torch.no_grad():", "with torch.no_grad():"),
        {"test_perturbation_curve_batched": "eval mode"}),
    "the caller's start changed in place, step after step": (_curve(
        "images.append(torch.where(taken.view(saliency.shape), end, start))",
        "start[:, taken.view(saliency.shape)] = end[:, taken.view(saliency.shape)]\n"
        "                images.append(start.clone())"), {"test_perturbation_curve_batched": "caller's image"}),
}

ALTERNATIVES["curve_area"] = {
    "torch.trapezoid over the fractions, a 0-d tensor": """
        def curve_area(curve, step, pixels):
            x = (torch.arange(len(curve), dtype=torch.float64) * step).clamp(max=pixels) / pixels
            return torch.trapezoid(curve.double(), x)
        """,
    "scikit-learn's auc": """
        def curve_area(curve, step, pixels):
            from sklearn.metrics import auc

            x = [min(k * step, pixels) / pixels for k in range(len(curve))]
            return auc(x, curve.tolist())
        """,
    "a loop over the trapezoids, in float32": """
        def curve_area(curve, step, pixels):
            area = 0.0
            for k in range(len(curve) - 1):
                width = (min((k + 1) * step, pixels) - k * step) / pixels
                area += width * (curve[k] + curve[k + 1]) / 2
            return area
        """,
    "RISE's formula for equal steps, the last trapezoid corrected": """
        def curve_area(curve, step, pixels):
            c = curve.double()
            full = (len(c) - 2) * step / pixels  # the equal steps
            last = 1 - full
            return float((c[:-1].sum() - c[0] / 2 - c[-2] / 2) * step / pixels + last * (c[-2] + c[-1]) / 2)
        """,
}
_AREA = """
        def curve_area(curve, step, pixels):
            x = np.minimum(np.arange(len(curve)) * step, pixels) / pixels
            return float(np.trapezoid(curve.double().numpy(), x))
"""
"""A correct curve_area that each bug below changes in one place."""


def _area(old: str, new: str) -> str:
    assert old in _AREA, old
    return _AREA.replace(old, new)


BUGS["curve_area"] = {
    "the points spaced evenly: the shorter last step ignored": (_area(
        "x = np.minimum(np.arange(len(curve)) * step, pixels) / pixels", "x = np.linspace(0, 1, len(curve))"),
        {"test_curve_area": "evenly"}),
    "the pixel counts, not their fraction": (_area(
        "x = np.minimum(np.arange(len(curve)) * step, pixels) / pixels", "x = np.minimum(np.arange(len(curve)) * step, pixels)"),
        {"test_curve_area": "wrong values"}),
    "the mean of the points instead of the trapezoids": (_area(
        "return float(np.trapezoid(curve.double().numpy(), x))", "return float(curve.double().mean())"),
        {"test_curve_area": "wrong values"}),
    "the steps without the clip at the last pixel": (_area(
        "x = np.minimum(np.arange(len(curve)) * step, pixels) / pixels", "x = np.arange(len(curve)) * step / pixels"),
        {"test_curve_area": "wrong values"}),
}

# 14_shortcut ---------------------------------------------------------------------------------------------------

ALTERNATIVES["locate_cue"] = {
    "a loop over the cells, float64": """
        def locate_cue(maps, grid):
            n, h, w = maps.shape
            maps = maps.double()
            shares = torch.zeros(n, grid, grid, dtype=torch.float64)
            for r in range(grid):
                for c in range(grid):
                    shares[:, r, c] = maps[:, r * h // grid : (r + 1) * h // grid, c * w // grid : (c + 1) * w // grid].sum((1, 2))
            totals = maps.sum((1, 2))
            for i in range(n):
                if totals[i] > 0:
                    shares[i] /= totals[i]
            best = int(shares.mean(0).argmax())
            return best // grid, best % grid
        """,
    "average pooling over the cells, NaN set to 0": """
        def locate_cue(maps, grid):
            n, h, w = maps.shape
            cells = F.avg_pool2d(maps[:, None].double(), (h // grid, w // grid))[:, 0]
            shares = torch.nan_to_num(cells / cells.sum((1, 2), keepdim=True), nan=0.0)
            row, col = divmod(shares.mean(0).argmax().item(), grid)
            return int(row), int(col)
        """,
    "maps of zeros left out of the mean (nanmean), in numpy": """
        def locate_cue(maps, grid):
            n, h, w = maps.shape
            sums = maps.double().numpy().reshape(n, grid, h // grid, grid, w // grid).sum(axis=(2, 4))
            totals = sums.sum(axis=(1, 2))
            shares = sums[totals > 0] / totals[totals > 0, None, None]
            row, col = np.unravel_index(np.argmax(shares.mean(axis=0)), (grid, grid))
            return int(row), int(col)
        """,
}
_LOCATE = """
        def locate_cue(maps, grid):
            n, h, w = maps.shape
            sums = maps.double().reshape(n, grid, h // grid, grid, w // grid).sum((2, 4))
            totals = sums.sum((1, 2), keepdim=True)
            shares = torch.where(totals > 0, sums / totals.clamp_min(1e-300), torch.zeros_like(sums))
            row, col = divmod(int(shares.mean(0).argmax()), grid)
            return row, col
"""
"""A correct locate_cue that each bug below changes in one place."""


def _locate(old: str, new: str) -> str:
    assert old in _LOCATE, old
    return _LOCATE.replace(old, new)


BUGS["locate_cue"] = {
    "the heat summed over all maps (a loud map decides)": (_locate(
        "shares = torch.where(totals > 0, sums / totals.clamp_min(1e-300), torch.zeros_like(sums))", "shares = sums"),
        {"test_locate_cue": "loudest map"}),
    "(column, row) returned": (_locate("return row, col", "return col, row"), {"test_locate_cue": "(column, row)"}),
    "a map of zeros divided by its total": (_locate(
        "shares = torch.where(totals > 0, sums / totals.clamp_min(1e-300), torch.zeros_like(sums))",
        "shares = sums / totals"), {"test_locate_cue": "map of zeros"}),
    "the cells cut in the wrong order by reshape": (_locate(
        "reshape(n, grid, h // grid, grid, w // grid).sum((2, 4))", "reshape(n, grid, grid, h // grid, w // grid).sum((3, 4))"),
        {"test_locate_cue": "another cell"}),
}

ALTERNATIVES["cue_class"] = {
    "one image at a time, the mode set and restored by hand": """
        def cue_class(model, images, cell, grid):
            h, w = images.shape[-2] // grid, images.shape[-1] // grid
            was_training = model.training
            model.eval()
            found = []
            with torch.no_grad():
                for image in images:
                    hidden = image.clone()
                    hidden[:, cell[0] * h : (cell[0] + 1) * h, cell[1] * w : (cell[1] + 1) * w] = 0.0
                    found.append(int((model(image[None]) - model(hidden[None]))[0].argmax()))
            model.train(was_training)
            return torch.tensor(found, dtype=torch.int64)
        """,
    "a multiplicative mask, clean and occluded in one batch": """
        def cue_class(model, images, cell, grid):
            h, w = images.shape[-2] // grid, images.shape[-1] // grid
            keep = torch.ones(images.shape[-2:], dtype=images.dtype)
            keep[cell[0] * h : (cell[0] + 1) * h, cell[1] * w : (cell[1] + 1) * w] = 0
            with helpers.evaluating(model), torch.no_grad():
                scores = model(torch.cat([images, images * keep]))
            clean, occluded = scores.split(len(images))
            return (clean - occluded).argmax(dim=1).long()
        """,
    "helpers.predict for both, torch.max": """
        def cue_class(model, images, cell, grid):
            r, c = cell
            h, w = images.shape[2] // grid, images.shape[3] // grid
            occluded = images.clone()
            occluded[:, :, r * h : r * h + h, c * w : c * w + w] = 0
            drops = helpers.predict(model, images) - helpers.predict(model, occluded)
            return torch.max(drops, dim=1).indices
        """,
}
_CUE_CLASS = """
        def cue_class(model, images, cell, grid):
            h, w = images.shape[-2] // grid, images.shape[-1] // grid
            occluded = images.clone()
            occluded[..., cell[0] * h : (cell[0] + 1) * h, cell[1] * w : (cell[1] + 1) * w] = 0
            with helpers.evaluating(model), torch.no_grad():
                drops = model(images) - model(occluded)
            return drops.argmax(1)
"""
"""A correct cue_class that each bug below changes in one place."""


def _cue_class(old: str, new: str) -> str:
    assert old in _CUE_CLASS, old
    return _CUE_CLASS.replace(old, new)


BUGS["cue_class"] = {
    "the smallest drop": (_cue_class("return drops.argmax(1)", "return drops.argmin(1)"),
                          {"test_cue_class": "smallest drop"}),
    "the prediction on the occluded images": (_cue_class("return drops.argmax(1)", "return model(occluded).argmax(1)"
                                              ).replace("drops = model(images) - model(occluded)", "drops = None"),
                                              {"test_cue_class": "prediction on the occluded images"}),
    "the model's mode left as it is (train mode uses batch statistics)": (_cue_class(
        "with helpers.evaluating(model), torch.no_grad():", "with torch.no_grad():"), {"test_cue_class": "eval mode"}),
    "row and column of the cell swapped": (_cue_class(
        "occluded[..., cell[0] * h : (cell[0] + 1) * h, cell[1] * w : (cell[1] + 1) * w] = 0",
        "occluded[..., cell[1] * h : (cell[1] + 1) * h, cell[0] * w : (cell[0] + 1) * w] = 0"),
        {"test_cue_class": "wrong classes"}),
}

ALTERNATIVES["augmentation"] = {
    "a random hue alone": """
        def augmentation():
            from torchvision.transforms import v2
            return v2.ColorJitter(hue=0.5)
        """,
    "flips and grayscale most of the time": """
        def augmentation():
            from torchvision.transforms import v2
            return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), v2.RandomGrayscale(p=0.8)])
        """,
    "an affine move and a random hue": """
        def augmentation():
            from torchvision.transforms import v2
            return v2.Compose([v2.RandomAffine(degrees=20, translate=(0.1, 0.1)), v2.ColorJitter(hue=0.4)])
        """,
    "mild crops, brightness and hue (v2.RandomChoice of two)": """
        def augmentation():
            from torchvision.transforms import v2
            return v2.Compose([
                v2.RandomResizedCrop(128, scale=(0.6, 1.0)),
                v2.RandomChoice([v2.ColorJitter(brightness=0.3, hue=0.5), v2.Grayscale(num_output_channels=3)]),
            ])
        """,
}
BUGS["augmentation"] = {
    "flips and rotations only: the disc moves, its colour still names the class": ("""
        def augmentation():
            from torchvision.transforms import v2
            return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), v2.RandomRotation(30)])
        """, {"test_augmentation": "still signals its class"}),
    "brightness and contrast: the hue stays": ("""
        def augmentation():
            from torchvision.transforms import v2
            return v2.ColorJitter(brightness=0.5, contrast=0.4, saturation=0.2)
        """, {"test_augmentation": "still signals its class"}),
    "the image transformed, the masks left behind": ("""
        def augmentation():
            from torchvision.transforms import v2
            image_only = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=30), v2.ColorJitter(hue=0.5)])
            return lambda image, masks: (image_only(image), masks)
        """, {"test_augmentation": "off the pixels they mark"}),
    "a smaller crop: the image changes size": ("""
        def augmentation():
            from torchvision.transforms import v2
            return v2.Compose([v2.RandomCrop(96), v2.ColorJitter(hue=0.5)])
        """, {"test_augmentation": "keep the size"}),
    "RandomResizedCrop's default scale: objects cut out": ("""
        def augmentation():
            from torchvision.transforms import v2
            return v2.Compose([v2.RandomResizedCrop(128), v2.ColorJitter(hue=0.5)])
        """, {"test_augmentation": "cuts most of the object out"}),
}

# --- more alternatives and bugs for 07-14: at least four of each per graded function -----------------------------

ALTERNATIVES["top_patches"]["adaptive_max_pool2d with indices, a zero canvas per patch"] = """
        def top_patches(activations, images, field, k):
            size, jump, start = field
            n, h, w = activations.shape
            peaks, where = F.adaptive_max_pool2d(activations[:, None], 1, return_indices=True)
            peaks, where = peaks.flatten(), where.flatten()
            scores, order = torch.sort(peaks, descending=True, stable=True)
            scores, order = scores[:k], order[:k]
            rows, columns = where[order] // w, where[order] % w
            patches = torch.zeros(k, images.shape[1], size, size, dtype=images.dtype)
            for i in range(k):
                top, left = start + int(rows[i]) * jump, start + int(columns[i]) * jump
                for r in range(max(0, -top), min(size, images.shape[-2] - top)):
                    c0, c1 = max(0, -left), min(size, images.shape[-1] - left)
                    patches[i, :, r, c0:c1] = images[order[i], :, top + r, left + c0 : left + c1]
            return patches, scores, torch.stack([order, rows, columns], dim=1)
        """
BUGS["top_patches"]["each chosen image's map set to -inf in the caller's activations"] = ("""
        def top_patches(activations, images, field, k):
            size, jump, start = field
            w = activations.shape[-1]
            chosen = []
            for _ in range(k):  # the strongest image, then it is struck out
                n = int(activations.flatten(1).amax(1).argmax())
                flat = int(activations[n].flatten().argmax())
                chosen.append((float(activations[n].flatten()[flat]), n, flat // w, flat % w))
                activations[n] = float("-inf")
            padded = F.pad(images, (size, size, size, size))
            patches = torch.stack([padded[n, :, start + r * jump + size:start + r * jump + 2 * size,
                                          start + c * jump + size:start + c * jump + 2 * size] for _, n, r, c in chosen])
            scores = torch.tensor([s for s, *_ in chosen], dtype=activations.dtype)
            return patches, scores, torch.tensor([(n, r, c) for _, n, r, c in chosen])
        """, {"test_top_patches": "changes the activations"})

BUGS["knn_accuracy"]["a one-element tensor, not a Python float"] = ("""
        def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
            indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
            votes = F.one_hot(train_labels[indices], int(train_labels.max()) + 1).sum(1)
            return (votes.argmax(1) == test_labels).double().mean()
        """, {"test_knn_accuracy": "python float"})

# dissection_iou: "all at once" is the mistake the text forbids, not an alternative
BUGS["dissection_iou"]["all images at once, einsum over floats"] = (
    ALTERNATIVES["dissection_iou"].pop("all images at once, einsum over floats"),
    {"test_dissection_iou": "MB in one tensor"})
ALTERNATIVES["dissection_iou"]["chunks of 8 in float64, logical_and and logical_or counted per pair"] = """
        def dissection_iou(activations, thresholds, concept_masks):
            k, c = len(thresholds), concept_masks.shape[1]
            inter = torch.zeros(k, c, dtype=torch.float64)
            union = torch.zeros(k, c, dtype=torch.float64)
            for start in range(0, len(activations), 8):
                a = activations[start : start + 8].double()
                up = F.interpolate(a, size=concept_masks.shape[-2:], mode="bilinear", align_corners=False)
                on = up >= thresholds.double().view(1, -1, 1, 1)
                masks = concept_masks[start : start + 8]
                for unit in range(k):
                    for concept in range(c):
                        inter[unit, concept] += torch.logical_and(on[:, unit], masks[:, concept]).sum()
                        union[unit, concept] += torch.logical_or(on[:, unit], masks[:, concept]).sum()
            return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))
        """

ALTERNATIVES["nearest_neighbours"]["the hint's torch.cdist for L2, 1 - cosine_similarity, argsort stable"] = """
        def nearest_neighbours(query, gallery, k, metric="cosine"):
            if metric == "l2":
                d = torch.cdist(query, gallery)
            elif metric == "cosine":
                d = 1 - F.cosine_similarity(query[:, None, :], gallery[None, :, :], dim=-1)
            else:
                raise ValueError(f"unknown metric {metric!r}")
            order = torch.argsort(d, dim=1, stable=True)[:, :k]
            return order, torch.gather(d, 1, order)
        """

ALTERNATIVES["fool"]["torch.func.grad of the target logit, clamp with tensor bounds, the mode by hand"] = """
        def fool(model, image, target, step, max_steps):
            low, high = PIXEL_LOW.to(image.dtype), PIXEL_HIGH.to(image.dtype)
            was_training = model.training
            model.eval()
            try:
                logit = lambda x: model(x[None])[0, target]
                x = image.detach().clone()
                for n in range(max_steps):
                    with torch.no_grad():
                        if model(x[None]).argmax(1).item() == target:
                            return x, n
                    grad = torch.func.grad(logit)(x).detach()
                    x = torch.clamp(x + step * grad / grad.norm(), low, high).detach()
                return x, max_steps
            finally:
                model.train(was_training)
        """

ALTERNATIVES["occlusion_drops"]["a deep copy of the model in eval mode, the caller's model untouched"] = """
        def occlusion_drops(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
            net = copy.deepcopy(model).eval()
            h, w = image.shape[-2:]
            rows, cols = -(-(h - window) // stride) + 1, -(-(w - window) // stride) + 1
            corners = [(r * stride, c * stride) for r in range(rows) for c in range(cols)]
            with torch.no_grad():
                clean = net(image[None])[0, class_idx]
                scores = []
                for i in range(0, len(corners), batch_size):
                    batch = image.repeat(len(corners[i : i + batch_size]), 1, 1, 1)
                    for copy_, (top, left) in zip(batch, corners[i : i + batch_size]):
                        copy_[:, top : top + window, left : left + window] = fill
                    scores.append(net(batch)[:, class_idx])
            return (clean - torch.cat(scores)).view(rows, cols)
        """
BUGS["occlusion_drops"]["the caller's image occluded in place, one window after the other"] = ("""
        def occlusion_drops(model, image, class_idx, window, stride, fill=0.0, batch_size=8):
            h, w = image.shape[1:]
            rows, cols = -(-(h - window) // stride) + 1, -(-(w - window) // stride) + 1
            with helpers.evaluating(model), torch.no_grad():
                clean = model(image[None])[0, class_idx]
                copies = []
                for n in range(rows * cols):
                    r, c = divmod(n, cols)
                    image[:, r * stride : r * stride + window, c * stride : c * stride + window] = fill
                    copies.append(image.clone())
                scores = torch.cat([model(b)[:, class_idx] for b in torch.stack(copies).split(batch_size)])
            return (clean - scores).view(rows, cols)
        """, {"test_occlusion_drops": "caller's image"})

ALTERNATIVES["occlusion_map"]["separable counts (rows times columns), sums with index_add_"] = """
        def occlusion_map(drops, window, stride, size):
            rows, cols = drops.shape
            cover_r = torch.zeros(rows, size[0], dtype=drops.dtype)
            cover_c = torch.zeros(cols, size[1], dtype=drops.dtype)
            for r in range(rows):
                cover_r[r, r * stride : r * stride + window] = 1
            for c in range(cols):
                cover_c[c, c * stride : c * stride + window] = 1
            sums = cover_r.T @ drops @ cover_c
            counts = cover_r.sum(0)[:, None] * cover_c.sum(0)[None, :]
            return sums / counts
        """

ALTERNATIVES["smoothgrad"]["torch.func: vmap of grad over the noisy copies"] = """
        def smoothgrad(model, image, class_idx, samples, sigma, generator):
            noise = sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)
            with helpers.evaluating(model):
                score = lambda x: model(x[None])[0, class_idx]
                grads = torch.func.vmap(torch.func.grad(score))(image.detach() + noise)
            return grads.mean(0).detach()
        """
BUGS["smoothgrad"]["the generator ignored: noise from the global generator"] = (_smoothgrad(
    "torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)",
    "torch.randn((samples, *image.shape), dtype=image.dtype)"), {"test_smoothgrad": "from the generator"})

ALTERNATIVES["integrated_gradients"]["torch.func.grad per path point, trapezoid-free midpoints in float64"] = """
        def integrated_gradients(model, image, class_idx, baseline, steps):
            with helpers.evaluating(model):
                score = lambda x: model(x[None])[0, class_idx]
                total = torch.zeros_like(image, dtype=torch.float64)
                for k in range(steps):
                    alpha = (k + 0.5) / steps
                    total += torch.func.grad(score)(baseline + alpha * (image - baseline)).detach().double()
            return ((image - baseline).double() * total / steps).to(image.dtype)
        """

ALTERNATIVES["perturbation_curve"]["a deep copy in eval mode, the order from a stable descending sort"] = """
        def perturbation_curve(model, start, end, saliency, class_idx, step, batch_size=16):
            net = copy.deepcopy(model).eval()
            n = saliency.numel()
            _, order = torch.sort(saliency.flatten(), descending=True, stable=True)
            flat_start, flat_end = start.flatten(1), end.flatten(1)
            images = []
            for k in range(-(-n // step) + 1):
                image = flat_start.clone()
                chosen = order[: min(k * step, n)]
                image[:, chosen] = flat_end[:, chosen]
                images.append(image.view_as(start))
            with torch.no_grad():
                return torch.cat([net(torch.stack(images[i : i + batch_size])).softmax(-1)[:, class_idx]
                                  for i in range(0, len(images), batch_size)])
        """
BUGS["perturbation_curve"]["the caller's start changed in place, step after step"] = (
    BUGS["perturbation_curve"]["the caller's start changed in place, step after step"][0],
    {"test_perturbation_curve": "caller's"})
BUGS["perturbation_curve"]["pixels ranked by |saliency|"] = (_curve(
    "torch.argsort(saliency.flatten(), descending=True)", "torch.argsort(saliency.flatten().abs(), descending=True)"),
    {"test_perturbation_curve": "|saliency|"})

ALTERNATIVES["curve_area"]["the hint's torch.trapezoid, the fractions in float32"] = """
        def curve_area(curve, step, pixels):
            fractions = torch.tensor([min(k * step, pixels) / pixels for k in range(len(curve))])
            return float(torch.trapezoid(curve, fractions.to(curve.dtype)) if curve.dtype == torch.float32
                         else torch.trapezoid(curve.float(), fractions))
        """

ALTERNATIVES["locate_cue"]["unfold into cells, nan_to_num of the shares"] = """
        def locate_cue(maps, grid):
            n, h, w = maps.shape
            cells = F.unfold(maps[:, None].double(), kernel_size=(h // grid, w // grid), stride=(h // grid, w // grid))
            sums = cells.sum(1)  # (n, grid * grid), row-major cells
            shares = torch.nan_to_num(sums / sums.sum(1, keepdim=True), nan=0.0)
            best = int(torch.argmax(shares.mean(0)))
            return best // grid, best % grid
        """
ALTERNATIVES["cue_class"]["a boolean cell mask and torch.where, a deep copy in eval mode, batches of 4"] = """
        def cue_class(model, images, cell, grid):
            net = copy.deepcopy(model).eval()
            h, w = images.shape[-2] // grid, images.shape[-1] // grid
            inside = torch.zeros(images.shape[-2:], dtype=torch.bool)
            inside[cell[0] * h : (cell[0] + 1) * h, cell[1] * w : (cell[1] + 1) * w] = True
            found = []
            with torch.no_grad():
                for batch in images.split(4):
                    drops = net(batch) - net(torch.where(inside, torch.zeros_like(batch), batch))
                    found.append(drops.argmax(dim=1))
            return torch.cat(found)
        """

# --- the cases ------------------------------------------------------------------------------------------------

XFAIL: dict[str, str] = {}  # "function/kind/label": the reason (a finding the checks do not handle yet)


def _cases():
    for functions in FUNCTIONS.values():
        for function in functions:
            alternatives = {"the solution cell": None, **ALTERNATIVES.get(function, {})}
            for label, source in alternatives.items():
                yield _param(function, "alternative", label, source, {})
            for label, (source, lost) in BUGS.get(function, {}).items():
                yield _param(function, "bug", label, source, lost)


def _param(function, kind, label, source, lost):
    case_id = f"{function}/{kind}/{label}"
    marks = [pytest.mark.xfail(strict=True, reason=XFAIL[case_id])] if case_id in XFAIL else []
    return pytest.param(function, source, lost, id=case_id, marks=marks)


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: plt.close("all"))
    yield
    plt.close("all")


@pytest.mark.parametrize(("function", "source", "lost"), list(_cases()))
def test_scoring(function: str, source: str | None, lost: dict[str, str]) -> None:
    source = solution_source(function) if source is None else source
    cells = {cell.grade_id: cell.points for cell in graded_cells(function)}
    assert set(lost) <= set(cells), f"the case names cells that do not check {function}: {set(lost) - set(cells)}"
    verdicts = score(function, source)

    failed = {grade_id for grade_id, message in verdicts.items() if message is not None}
    points = sum(cells[grade_id] for grade_id in cells if grade_id not in failed)
    expected_points = sum(cells[grade_id] for grade_id in cells if grade_id not in lost)
    assert failed == set(lost), f"cells failed: { {g: verdicts[g] for g in failed} }; expected to fail: {sorted(lost)}"
    assert points == expected_points
    for grade_id, phrase in lost.items():
        assert phrase.lower() in verdicts[grade_id].lower(), (
            f"{grade_id}: the message does not name the wrong part ({phrase!r}): {verdicts[grade_id]!r}"
        )


def test_the_table_covers_every_graded_function_and_cell() -> None:
    for notebook, functions in FUNCTIONS.items():
        cells, _ = _read(notebook)
        assert cells, notebook
        checked = {grade_id for f in functions for grade_id in (c.grade_id for c in graded_cells(f))}
        assert checked == {cell.grade_id for cell in cells}, f"{notebook}: graded cells of no listed function"
        least = 4 if notebook >= "07" else 3  # 07-14: at least four correct alternatives and four bugs each
        for function in functions:
            assert len(ALTERNATIVES[function]) >= least, function
            assert len(BUGS[function]) >= least, function
            lost_cells = {grade_id for _, lost in BUGS[function].values() for grade_id in lost}
            assert lost_cells, function
            for _, lost in BUGS[function].values():
                assert lost, f"{function}: a bug that loses no cell"
