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

Each check is a :class:`~grader_tests.recording.HiddenCheck`: its probe does all of the above in the student's
kernel and writes down what happened (what was appended, the output after the hook, figures opened, hook counts,
what the recorder received); its judge rebuilds the hidden model and tensors and makes every comparison.
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

from .common import HIDDEN_SEED, hidden_images, hidden_model, tolerance
from .recording import Foreign, Observations, Recorded, call, call_keeping, hidden_check, restore, returned, snapshot

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


DTYPES = (torch.float32, torch.float64)


def _describe(value: Any) -> str:
    if isinstance(value, Recorded):
        return f"a tensor of shape {tuple(value.tensor.shape)}"
    if isinstance(value, Foreign):
        return f"a {value.type_name}"
    return f"a {type(value).__name__}"


def _matches(value: Any, expected: torch.Tensor) -> bool:
    """Whether a recorded tensor is ``expected`` (up to the float error of computing it again in the judge)."""
    return (
        isinstance(value, Recorded)
        and value.tensor.shape == expected.shape
        and torch.allclose(value.tensor.to(expected.dtype), expected, **tolerance(expected))
    )


def _probe_direct_call(hook: Callable[..., Any], activation_list: list, dtype: torch.dtype) -> Observations:
    """Call the hook as PyTorch would, on a 4-D output, then change the output in place like an in-place ReLU."""
    conv, x, output = _hidden_tensors(dtype)
    start = len(activation_list)
    with _Figures() as figures:
        outcome = call(hook, "hidden.conv", conv, (x,), output)
    stored = activation_list[-1] if len(activation_list) > start else None
    facts = {
        "call": outcome, "grew": len(activation_list) - start, "output": snapshot(output), "stored": snapshot(stored),
        "figures": figures.opened,
    }
    with torch.no_grad():
        output.relu_()  # what the next layer does in a model with ReLU(inplace=True)
    facts["stored_after_relu"] = snapshot(stored)
    return facts


def _judge_direct_call(facts: Observations, dtype: torch.dtype) -> None:
    _, x, output = _hidden_tensors(dtype)
    output = output.detach()
    returned(facts["call"], "show_activations_hook(name, module, input, output)")
    if (grew := facts["grew"]) != 1:
        raise AssertionError(
            f"one call of show_activations_hook with a 4-D output should append exactly one activation to "
            f"activation_list; the list grew by {grew}"
        )
    stored = restore(facts["stored"])
    if not _matches(restore(facts["output"]), output):
        raise AssertionError("show_activations_hook changed the layer's output: the hook should only look at it")
    if not isinstance(stored, Recorded):
        raise AssertionError(f"show_activations_hook appended {_describe(stored)}; it should append a tensor")
    if tuple(stored.tensor.shape) == tuple(x.shape) and torch.allclose(stored.tensor.to(dtype), x):
        raise AssertionError("show_activations_hook stored the layer's input; it should store the layer's output")
    if tuple(stored.tensor.shape) != tuple(output.shape):
        raise AssertionError(
            f"show_activations_hook stored a tensor of shape {tuple(stored.tensor.shape)} for an output of shape "
            f"{tuple(output.shape)}: store the whole 4-D output (N, C, H, W)"
        )
    if not _matches(stored, output):
        raise AssertionError("show_activations_hook stored a tensor of the right shape but not the layer's output")
    if stored.requires_grad or stored.has_history:
        raise AssertionError(
            "the activation stored by show_activations_hook still carries autograd history: detach it, or every "
            "stored activation keeps its forward graph alive"
        )
    if facts["figures"] == 0:
        raise AssertionError("show_activations_hook should also draw the activation (with plot_activations)")
    if not torch.equal(restore(facts["stored_after_relu"]).tensor, stored.tensor):
        raise AssertionError(
            "the activation stored by show_activations_hook changed when the layer's output was modified in place "
            "afterwards (as ReLU(inplace=True) does): store a copy that does not share memory with the output"
        )


def _non_4d_logits() -> torch.Tensor:
    return torch.randn(2, 6, generator=torch.Generator().manual_seed(HIDDEN_SEED))


def _probe_ignores_non_4d(hook: Callable[..., Any], activation_list: list) -> Observations:
    start = len(activation_list)
    logits = _non_4d_logits()
    with _Figures():
        outcome = call(hook, "fc", nn.Identity(), (logits,), logits)
    return {"call": outcome, "grew": len(activation_list) - start}


def _judge_ignores_non_4d(facts: Observations) -> None:
    returned(facts["call"], "show_activations_hook on a 2-D output (N, classes)")
    if facts["grew"] != 0:
        raise AssertionError("show_activations_hook should store only 4-D outputs (N, C, H, W); it stored a 2-D one")


IN_A_MODEL = ("backbone.conv1", "backbone.bn4_1")
"""The layers of the float64 model that the hook is registered on (with partial) in the last stage."""


def _model_and_images() -> tuple[nn.Module, torch.Tensor]:
    return hidden_model(dtype=torch.float64), hidden_images(n=1, dtype=torch.float64)


def _probe_in_a_model(hook: Callable[..., Any], activation_list: list) -> Observations:
    """Registered with partial on a float64 model: one forward pass; its logits and what the hook appended."""
    model, images = _model_and_images()
    start = len(activation_list)
    handles = []
    try:
        with _Figures():
            for name in IN_A_MODEL:
                handles.append(model.get_submodule(name).register_forward_hook(functools.partial(hook, name)))
            outcome = call(model, images)
    finally:
        for handle in handles:
            handle.remove()
    return {"logits": outcome, "stored": snapshot(activation_list[start:])}


def _judge_in_a_model(facts: Observations) -> None:
    """Stores each layer's output, in forward order, in float64; the model's output unchanged."""
    model, images = _model_and_images()
    with torch.no_grad(), capture_activations(model, list(IN_A_MODEL)) as expected:
        reference_logits = model(images)
    logits = returned(facts["logits"], "a forward pass of a model with show_activations_hook registered")
    if not _matches(logits, reference_logits):
        raise AssertionError("show_activations_hook changed the model's output: a forward hook should return None")
    stored = restore(facts["stored"])
    if len(stored) != len(IN_A_MODEL):
        raise AssertionError(
            f"with show_activations_hook on {len(IN_A_MODEL)} layers, one forward pass should append "
            f"{len(IN_A_MODEL)} activations; it appended {len(stored)}"
        )
    for name, tensor in zip(IN_A_MODEL, stored):
        if not isinstance(tensor, Recorded) or tuple(tensor.tensor.shape) != tuple(expected[name].shape):
            raise AssertionError(f"the activation stored for {name} is {_describe(tensor)}, expected the layer's 4-D output")
        if tensor.tensor.dtype != torch.float64 or not torch.allclose(tensor.tensor, expected[name]):
            raise AssertionError(
                f"the activation stored for {name} in a float64 model differs from the layer's output "
                "(keep its values and its dtype)"
            )


def _probe_show_activations_hook(hook: Callable[..., Any], activation_list: list) -> Observations:
    """Every stage runs (a failed one does not stop the next); what they append is taken out of the list again,
    and the figures they open are closed."""
    if not isinstance(activation_list, list):
        return {"not_a_list": type(activation_list).__name__}
    start = len(activation_list)
    try:
        return {
            "not_a_list": None,
            "direct": [_probe_direct_call(hook, activation_list, dtype) for dtype in DTYPES],
            "non_4d": _probe_ignores_non_4d(hook, activation_list),
            "model": _probe_in_a_model(hook, activation_list),
        }
    finally:
        del activation_list[start:]


@hidden_check(_probe_show_activations_hook)
def check_show_activations_hook(observations: Observations) -> None:
    """Grade the student's hook; the notebook passes ``activation_list``, the list the hook appends to.

    The stages fail in order: direct calls (float32, float64), a 2-D output, registered in a float64 model.
    """
    if (type_name := observations["not_a_list"]) is not None:
        raise AssertionError(f"activation_list should be a list, got {type_name}")
    for dtype, facts in zip(DTYPES, observations["direct"], strict=True):
        _judge_direct_call(facts, dtype)
    _judge_ignores_non_4d(observations["non_4d"])
    _judge_in_a_model(observations["model"])


# --- the registration -----------------------------------------------------------------------------------


class _Recorder:
    """Stands in for the notebook's ``show_activations_hook``: records ``(name, module, snapshot of output)`` per
    call (snapshot at once, so nothing later in the forward pass can change it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, nn.Module, Any]] = []

    def __call__(self, name: Any, module: nn.Module, input: Any, output: Any) -> None:
        self.calls.append((name, module, snapshot(output)))


_MISSING = object()

REGISTRATION_CASES: tuple[tuple[str, ...], ...] = (
    ("backbone.conv1", "backbone.bn4_1"),
    ("backbone.bn5_2", "backbone.relu3_2", "fc"),
)


def _probe_registration(register: Callable[..., Any], recorder: _Recorder, names: Sequence[str]) -> Observations:
    """Register, count the hooks, run a forward pass (what the recorder received), remove the first handle, then
    the others, and run again. Stops after the call when no list or tuple of handles came back, and before the
    removals when a handle has no ``remove``."""
    model = hidden_model()
    images = hidden_images(n=1)
    modules = dict(model.named_modules())
    qualified = {id(module): name for name, module in modules.items()}
    outcome, handles = call_keeping(register, model, list(names))
    facts: Observations = {"call": outcome}
    try:
        if not isinstance(handles, (list, tuple)):
            return facts
        facts["removable"] = [callable(getattr(handle, "remove", None)) for handle in handles]
        facts["forward_hooks"] = {name: len(modules[name]._forward_hooks) for name in names}
        facts["hooks"] = count_hooks(model)
        recorder.calls.clear()
        with torch.no_grad():
            facts["logits"] = call(model, images)
        facts["calls"] = [
            {"name": snapshot(bound), "module": qualified.get(id(module)), "output": output}
            for bound, module, output in recorder.calls
        ]
        if not handles or not all(facts["removable"]):
            return facts
        call(handles[0].remove)
        facts["first_removed_leaves"] = len(modules[names[0]]._forward_hooks)
        for handle in handles[1:]:
            call(handle.remove)
        facts["hooks_after_removal"] = count_hooks(model)
        recorder.calls.clear()
        with torch.no_grad():
            call(model, images)
        facts["calls_after_removal"] = len(recorder.calls)
        return facts
    finally:
        for module in model.modules():
            module._forward_hooks.clear()


def _judge_registration(facts: Observations, names: Sequence[str]) -> None:
    model = hidden_model()
    images = hidden_images(n=1)
    with torch.no_grad(), capture_activations(model, list(names)) as expected:
        reference_logits = model(images)
    what = f"register_activation_hooks(model, {list(names)})"
    handles = returned(facts["call"], what)
    if not isinstance(handles, (list, tuple)) or len(handles) != len(names):
        raise AssertionError(f"{what} should return a list of {len(names)} handles, got {_describe(handles)}")
    if not all(facts["removable"]):
        raise AssertionError(f"{what} should return the handles that register_forward_hook gives back")
    for name in names:
        if (count := facts["forward_hooks"][name]) != 1:
            raise AssertionError(f"after {what}, {name} has {count} forward hooks, expected 1")
    if facts["hooks"] != len(names):
        raise AssertionError(f"{what} registered hooks on layers that are not in names (or hooks of another kind)")
    logits = returned(facts["logits"], f"a forward pass after {what}")
    if not _matches(logits, reference_logits):
        raise AssertionError(f"the hooks registered by {what} changed the model's output")
    calls = facts["calls"]
    if len(calls) != len(names):
        raise AssertionError(
            f"after {what}, one forward pass called show_activations_hook {len(calls)} times, expected "
            f"{len(names)} (once per layer); register show_activations_hook itself, with the name bound"
        )
    for name in names:
        on_module = [call for call in calls if call["module"] == name]
        if len(on_module) != 1:
            raise AssertionError(f"show_activations_hook was not called (once) for the module {name}")
        bound = restore(on_module[0]["name"])
        if bound != name:
            raise AssertionError(
                f"the hook on {name} called show_activations_hook with the name {bound!r}; bind each layer's "
                "own name (functools.partial)"
            )
        if not _matches(restore(on_module[0]["output"]), expected[name]):
            raise AssertionError(f"the hook on {name} did not pass the layer's output to show_activations_hook")
    if facts["first_removed_leaves"] != 0:
        raise AssertionError(
            f"removing the first handle returned by {what} should remove the hook on {names[0]}: return the "
            "handles in the order of names"
        )
    if facts["hooks_after_removal"] != 0:
        raise AssertionError(f"after removing every handle returned by {what}, hooks remain on the model")
    if facts["calls_after_removal"]:
        raise AssertionError(f"after removing the handles returned by {what}, show_activations_hook still runs")


def _probe_register_activation_hooks(register: Callable[..., Any]) -> Observations:
    """While the probe runs, the global ``show_activations_hook`` that ``register`` sees (the notebook's
    namespace) is a recorder, so the probe sees which name and which layer each registered hook passes on."""
    namespace = getattr(register, "__globals__", None)
    if namespace is None:
        return {"in_notebook": False}
    saved = namespace.get("show_activations_hook", _MISSING)
    recorder = _Recorder()
    namespace["show_activations_hook"] = recorder
    try:
        with _Figures():
            return {
                "in_notebook": True,
                "cases": [_probe_registration(register, recorder, names) for names in REGISTRATION_CASES],
            }
    finally:
        if saved is _MISSING:
            namespace.pop("show_activations_hook", None)
        else:
            namespace["show_activations_hook"] = saved


@hidden_check(_probe_register_activation_hooks)
def check_register_activation_hooks(observations: Observations) -> None:
    """Grade the student's ``register_activation_hooks`` on its own, whatever the state of the student's hook."""
    if not observations["in_notebook"]:
        raise AssertionError("register_activation_hooks should be a function defined in the notebook")
    for names, facts in zip(REGISTRATION_CASES, observations["cases"], strict=True):
        _judge_registration(facts, names)
