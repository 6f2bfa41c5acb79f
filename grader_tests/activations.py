"""Reference implementations and hidden checks of notebook ``04_activations``. Instructor-only: never released.

Conventions (stated in the notebook):

* ``show_activations_hook(name, module, input, output)`` is a forward hook whose first argument is bound with
  ``functools.partial``. For a 4-D ``output (N, C, H, W)`` it appends ``output.detach().clone()`` (the whole
  batch) to the notebook's ``activation_list`` and draws it with ``plot_activations``; other outputs are ignored.
  It returns ``None``: the forward pass goes on unchanged. The clone is required: the output tensor flows on
  into the next layer, and an in-place op there (``ReLU(inplace=True)``, as in the seed's model) would rewrite a
  stored view. The detach is required: a stored tensor with autograd history keeps the graph of every forward
  pass alive.
* ``register_activation_hooks(model, names)`` registers ``functools.partial(show_activations_hook, name)`` as a
  forward hook on ``model.get_submodule(name)`` for each dotted ``name`` (``"backbone.conv1"``) and returns the
  handles in the order of ``names``. Removing them leaves no hook behind.

The notebook's hook appends to a notebook-global list. The checks therefore receive that list object and look at
what the student's hook put there (and take it out again afterwards), and they call the hook directly with a
module, an input and an output they made. For the registration, the check swaps the notebook's global
``show_activations_hook`` for a recorder while it runs, so it grades the registration on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from helpers.hooks import capture_activations
from helpers.plotting import plot_activations

from .common import HIDDEN_SEED, hidden_images, hidden_model, quiet, run_student

# --- references -----------------------------------------------------------------------------------------


def show_activations_hook(
    activation_list: list[torch.Tensor], name: str, module: nn.Module, input: tuple, output: Any, *, plot: bool = True
) -> None:
    """The notebook's hook with its list made explicit: bind ``activation_list`` (and ``name``) with ``partial``."""
    if isinstance(output, torch.Tensor) and output.dim() == 4:
        activation_list.append(output.detach().clone())
        if plot:
            plot_activations(output, f"Activations on: {name}")


def register_activation_hooks(model: nn.Module, names: Sequence[str], hook: Callable[..., Any]) -> list[RemovableHandle]:
    """Register ``partial(hook, name)`` on each submodule ``name`` of ``model``; return the handles in order."""
    return [model.get_submodule(name).register_forward_hook(functools.partial(hook, name)) for name in names]


def count_hooks(model: nn.Module) -> int:
    """Forward, forward-pre and backward hooks on all modules of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


# --- helpers of the checks ------------------------------------------------------------------------------


class _Figures:
    """Counts the figures opened inside the block and closes them (the notebook's own figures stay open).

    ``plt.show`` does nothing inside the block: in a notebook it would display and close the student's figure
    (the inline backend closes figures once shown), and the check could no longer see that one was drawn.
    """

    def __enter__(self) -> _Figures:
        self.before = set(plt.get_fignums())
        self.opened = 0
        self._show = plt.show
        plt.show = lambda *args, **kwargs: None
        return self

    def __exit__(self, *exc: object) -> None:
        plt.show = self._show
        new = [n for n in plt.get_fignums() if n not in self.before]
        self.opened = len(new)
        for number in new:
            plt.close(number)


def _hidden_tensors(dtype: torch.dtype = torch.float32) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A conv module, its input ``(2, 2, 6, 7)`` and its output ``(2, 3, 6, 7)`` with autograd history."""
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED + 5)
        conv = nn.Conv2d(2, 3, kernel_size=3, padding=1).to(dtype)
        x = torch.randn(2, 2, 6, 7, dtype=dtype)
    with torch.enable_grad():
        output = conv(x)
    return conv, x, output


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _check_direct_call(hook: Callable[..., Any], activation_list: list, dtype: torch.dtype) -> None:
    """Call the hook as PyTorch would, on a 4-D output, then change the output in place like an in-place ReLU."""
    conv, x, output = _hidden_tensors(dtype)
    original = output.detach().clone()
    start = len(activation_list)
    with _Figures() as figures:
        run_student(hook, "hidden.conv", conv, (x,), output, what="show_activations_hook(name, module, input, output)")
    grew = len(activation_list) - start
    if grew != 1:
        raise AssertionError(
            f"one call of show_activations_hook with a 4-D output should append exactly one activation to "
            f"activation_list; the list grew by {grew}"
        )
    stored = activation_list[-1]
    if not torch.equal(output.detach(), original):
        raise AssertionError("show_activations_hook changed the layer's output: the hook should only look at it")
    if not isinstance(stored, torch.Tensor):
        raise AssertionError(f"show_activations_hook appended {_describe(stored)}; it should append a tensor")
    if tuple(stored.shape) == tuple(x.shape) and torch.allclose(stored.detach().to(dtype), x):
        raise AssertionError("show_activations_hook stored the layer's input; it should store the layer's output")
    if tuple(stored.shape) != tuple(output.shape):
        raise AssertionError(
            f"show_activations_hook stored a tensor of shape {tuple(stored.shape)} for an output of shape "
            f"{tuple(output.shape)}: store the whole 4-D output (N, C, H, W)"
        )
    if not torch.allclose(stored.detach().to(dtype), original):
        raise AssertionError("show_activations_hook stored a tensor of the right shape but not the layer's output")
    if stored.requires_grad or stored.grad_fn is not None:
        raise AssertionError(
            "the activation stored by show_activations_hook still carries autograd history: detach it, or every "
            "stored activation keeps its forward graph alive"
        )
    if figures.opened == 0:
        raise AssertionError("show_activations_hook should also draw the activation (with plot_activations)")
    kept = stored.detach().clone()
    with torch.no_grad():
        output.relu_()  # what the next layer does in a model with ReLU(inplace=True)
    if not torch.equal(stored.detach(), kept):
        raise AssertionError(
            "the activation stored by show_activations_hook changed when the layer's output was modified in place "
            "afterwards (as ReLU(inplace=True) does): store a copy that does not share memory with the output"
        )


def _check_ignores_non_4d(hook: Callable[..., Any], activation_list: list) -> None:
    start = len(activation_list)
    logits = torch.randn(2, 6, generator=torch.Generator().manual_seed(HIDDEN_SEED))
    with _Figures():
        run_student(hook, "fc", nn.Identity(), (logits,), logits, what="show_activations_hook on a 2-D output (N, classes)")
    if len(activation_list) != start:
        raise AssertionError("show_activations_hook should store only 4-D outputs (N, C, H, W); it stored a 2-D one")


def _check_in_a_model(hook: Callable[..., Any], activation_list: list) -> None:
    """Registered with partial on a float64 model: stores each layer's output, in forward order, output unchanged."""
    model = hidden_model(dtype=torch.float64)
    images = hidden_images(n=1, dtype=torch.float64)
    names = ["backbone.conv1", "backbone.bn4_1"]
    with torch.no_grad(), capture_activations(model, names) as expected:
        reference_logits = model(images)
    start = len(activation_list)
    handles = []
    try:
        with _Figures():
            for name in names:
                handles.append(model.get_submodule(name).register_forward_hook(functools.partial(hook, name)))
            logits = run_student(model, images, what="a forward pass of a model with show_activations_hook registered")
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(logits, torch.Tensor) or not torch.equal(logits, reference_logits):
        raise AssertionError("show_activations_hook changed the model's output: a forward hook should return None")
    stored = activation_list[start:]
    if len(stored) != len(names):
        raise AssertionError(
            f"with show_activations_hook on {len(names)} layers, one forward pass should append {len(names)} "
            f"activations; it appended {len(stored)}"
        )
    for name, tensor in zip(names, stored):
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(expected[name].shape):
            raise AssertionError(f"the activation stored for {name} is {_describe(tensor)}, expected the layer's 4-D output")
        if tensor.dtype != torch.float64 or not torch.allclose(tensor, expected[name]):
            raise AssertionError(
                f"the activation stored for {name} in a float64 model differs from the layer's output "
                "(keep its values and its dtype)"
            )


def check_show_activations_hook(hook: Callable[..., Any], activation_list: list) -> None:
    """Grade the student's hook; ``activation_list`` is the notebook's list the hook appends to.

    Whatever the check's calls append is taken out of the list again, and the figures they open are closed.
    """
    if not isinstance(activation_list, list):
        raise AssertionError(f"activation_list should be a list, got {type(activation_list).__name__}")
    start = len(activation_list)
    try:
        for dtype in (torch.float32, torch.float64):
            _check_direct_call(hook, activation_list, dtype)
        _check_ignores_non_4d(hook, activation_list)
        _check_in_a_model(hook, activation_list)
    finally:
        del activation_list[start:]


# --- the registration -----------------------------------------------------------------------------------


class _Recorder:
    """Stands in for the notebook's ``show_activations_hook``: records ``(name, module, output)`` per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, nn.Module, Any]] = []

    def __call__(self, name: Any, module: nn.Module, input: Any, output: Any) -> None:
        self.calls.append((name, module, output.detach().clone() if isinstance(output, torch.Tensor) else output))


_MISSING = object()

REGISTRATION_CASES: tuple[tuple[str, ...], ...] = (
    ("backbone.conv1", "backbone.bn4_1"),
    ("backbone.bn5_2", "backbone.relu3_2", "fc"),
)


def _check_registration(register: Callable[..., Any], recorder: _Recorder, names: Sequence[str]) -> None:
    model = hidden_model()
    images = hidden_images(n=1)
    modules = dict(model.named_modules())
    with torch.no_grad(), capture_activations(model, list(names)) as expected:
        reference_logits = model(images)
    what = f"register_activation_hooks(model, {list(names)})"
    handles = run_student(register, model, list(names), what=what)
    try:
        if not isinstance(handles, (list, tuple)) or len(handles) != len(names):
            raise AssertionError(f"{what} should return a list of {len(names)} handles, got {_describe(handles)}")
        if not all(callable(getattr(handle, "remove", None)) for handle in handles):
            raise AssertionError(f"{what} should return the handles that register_forward_hook gives back")
        for name in names:
            if len(modules[name]._forward_hooks) != 1:
                raise AssertionError(
                    f"after {what}, {name} has {len(modules[name]._forward_hooks)} forward hooks, expected 1"
                )
        if count_hooks(model) != len(names):
            raise AssertionError(f"{what} registered hooks on layers that are not in names (or hooks of another kind)")
        recorder.calls.clear()
        with torch.no_grad():
            logits = run_student(model, images, what=f"a forward pass after {what}")
        if not isinstance(logits, torch.Tensor) or not torch.equal(logits, reference_logits):
            raise AssertionError(f"the hooks registered by {what} changed the model's output")
        if len(recorder.calls) != len(names):
            raise AssertionError(
                f"after {what}, one forward pass called show_activations_hook {len(recorder.calls)} times, expected "
                f"{len(names)} (once per layer); register show_activations_hook itself, with the name bound"
            )
        for name in names:
            calls = [call for call in recorder.calls if call[1] is modules[name]]
            if len(calls) != 1:
                raise AssertionError(f"show_activations_hook was not called (once) for the module {name}")
            bound, _, output = calls[0]
            if bound != name:
                raise AssertionError(
                    f"the hook on {name} called show_activations_hook with the name {bound!r}; bind each layer's "
                    "own name (functools.partial)"
                )
            if not isinstance(output, torch.Tensor) or not torch.equal(output, expected[name]):
                raise AssertionError(f"the hook on {name} did not pass the layer's output to show_activations_hook")
        handles[0].remove()
        if len(modules[names[0]]._forward_hooks) != 0:
            raise AssertionError(
                f"removing the first handle returned by {what} should remove the hook on {names[0]}: return the "
                "handles in the order of names"
            )
        for handle in handles[1:]:
            handle.remove()
        if count_hooks(model) != 0:
            raise AssertionError(f"after removing every handle returned by {what}, hooks remain on the model")
        recorder.calls.clear()
        with torch.no_grad():
            model(images)
        if recorder.calls:
            raise AssertionError(f"after removing the handles returned by {what}, show_activations_hook still runs")
    finally:
        for module in model.modules():
            module._forward_hooks.clear()


def check_register_activation_hooks(register: Callable[[nn.Module, Sequence[str]], Any]) -> None:
    """Grade the student's ``register_activation_hooks`` on its own, whatever the state of the student's hook.

    While the check runs, the global ``show_activations_hook`` that ``register`` sees (the notebook's namespace)
    is a recorder, so the check sees which name and which layer each registered hook passes on.
    """
    namespace = getattr(register, "__globals__", None)
    if namespace is None:
        raise AssertionError("register_activation_hooks should be a function defined in the notebook")
    saved = namespace.get("show_activations_hook", _MISSING)
    recorder = _Recorder()
    namespace["show_activations_hook"] = recorder
    try:
        with quiet(), _Figures():
            for names in REGISTRATION_CASES:
                _check_registration(register, recorder, names)
    finally:
        if saved is _MISSING:
            namespace.pop("show_activations_hook", None)
        else:
            namespace["show_activations_hook"] = saved
