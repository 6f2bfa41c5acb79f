"""Reference implementations of notebook ``04_activations`` and the judges of its hidden checks. Instructor-only:
never released.

Conventions (stated in the notebook):

* ``show_activations_hook(name, module, input, output)`` is a forward hook whose first argument is bound with
  ``functools.partial``. For a 4-D ``output (N, C, H, W)`` it appends ``output.detach().clone()`` (the whole
  batch) to the notebook's ``activation_list`` and draws it with ``plot_activations``; other outputs are ignored.
  It returns ``None`` (returning ``output`` itself changes nothing either; anything else would replace the
  layer's output): the forward pass goes on unchanged. The clone is required: the output tensor flows on
  into the next layer, and an in-place op there (``ReLU(inplace=True)``, as in the assignment's model) would rewrite a
  stored view. The detach is required: a stored tensor with autograd history keeps the graph of every forward
  pass alive.
* ``register_activation_hooks(model, names)`` registers ``functools.partial(show_activations_hook, name)`` as a
  forward hook on ``model.get_submodule(name)`` for each dotted ``name`` (``"backbone.conv1"``) and returns the
  handles in the order of ``names``. Removing them leaves no hook behind.

The probes of :mod:`grader_tests.kernel.activations` run the student's hook and registration in the student's
kernel and write down what happened (what was appended, the output after the hook, figures opened, hook counts,
what the recorder that stands in for the hook received); the judges here rebuild the hidden model and tensors and
make every comparison.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from grader_tests.kernel.activations import DTYPES, IN_A_MODEL, REGISTRATION_CASES, hidden_tensors, model_and_images
from grader_tests.kernel.inputs import hidden_images, hidden_model
from grader_tests.kernel.record import Observations
from helpers.hooks import capture_activations
from helpers.plotting import plot_activations

from . import judge, reference
from .common import tolerance
from .records import Foreign, Recorded, restore, returned

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


# --- helpers of the judges ------------------------------------------------------------------------------


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


# --- the hook -------------------------------------------------------------------------------------------


def _judge_direct_call(facts: Observations, dtype: torch.dtype) -> None:
    _, x, output = hidden_tensors(dtype)
    output = output.detach()
    value = returned(facts["call"], "show_activations_hook(name, module, input, output)")
    if value is not None and not facts["returned_output"]:
        raise AssertionError(
            f"show_activations_hook returns {_describe(value)}: PyTorch replaces the layer's output with what a "
            "forward hook returns (a detached copy cuts the autograd graph of the rest of the model). The hook "
            "should only look at the output: return nothing"
        )
    if (grew := facts["grew"]) != 1:
        raise AssertionError(
            f"one call of show_activations_hook with a 4-D output should append exactly one activation to "
            f"activation_list; the list grew by {grew}"
        )
    stored = restore(facts["stored"])
    output_after = restore(facts["output"])
    if not _matches(output_after, output):
        raise AssertionError("show_activations_hook changed the layer's output: the hook should only look at it")
    if not output_after.has_history:
        raise AssertionError(
            "show_activations_hook cut the layer's output from the autograd graph (detach_() works in place): "
            "detach the copy you store, not the output"
        )
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


def _judge_ignores_non_4d(facts: Observations) -> None:
    returned(facts["call"], "show_activations_hook on a 2-D output (N, classes)")
    if facts["grew"] != 0:
        raise AssertionError("show_activations_hook should store only 4-D outputs (N, C, H, W); it stored a 2-D one")


def _outputs(
    model: nn.Module, images: torch.Tensor, names: Sequence[str]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(logits, {name: the output of layer name})`` of ``model`` on ``images``."""
    with torch.no_grad(), capture_activations(model, list(names)) as outputs:
        logits = model(images)
    return logits, outputs


@reference()
def _in_a_model_reference() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`_outputs` of the float64 hidden model at :data:`IN_A_MODEL`: computed once per process, as it depends
    only on the hidden case (callers only read it)."""
    return _outputs(*model_and_images(), IN_A_MODEL)


def _judge_in_a_model(facts: Observations) -> None:
    """Stores each layer's output, in forward order, in float64; the model's output unchanged."""
    reference_logits, expected = _in_a_model_reference()
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


@judge
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


@reference(REGISTRATION_CASES)
def _registration_reference(names: tuple[str, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`_outputs` of the hidden model at ``names``, one of :data:`REGISTRATION_CASES`: computed once per process,
    as it depends only on the hidden case (callers only read it)."""
    return _outputs(hidden_model(), hidden_images(n=1), names)


def _judge_registration(facts: Observations, names: tuple[str, ...]) -> None:
    reference_logits, expected = _registration_reference(names)
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


@judge
def check_register_activation_hooks(observations: Observations) -> None:
    """Grade the student's ``register_activation_hooks`` on its own, whatever the state of the student's hook."""
    if not observations["in_notebook"]:
        raise AssertionError("register_activation_hooks should be a function defined in the notebook")
    for names, facts in zip(REGISTRATION_CASES, observations["cases"], strict=True):
        _judge_registration(facts, names)
