"""Probes of ``04_activations``: the student's ``show_activations_hook`` and ``register_activation_hooks``.

The notebook's hook appends to a notebook-global list. The hook's probe therefore receives that list object and
looks at what the student's hook put there (and takes it out again afterwards), and it calls the hook directly
with a module, an input and an output it made (what it returned, and the output afterwards), then registers it
(with ``functools.partial``) on a float64 model.

The registration is graded on its own, whatever the state of the student's hook (a stub that raises included):
after ``register_activation_hooks`` ran, the probe looks at the hook objects registered on the model's modules and
puts a :class:`_Recorder` in the place of each one that is the student's hook, recognised by identity however it
was bound: the notebook's ``show_activations_hook`` function object itself, or a ``functools.partial`` of it
(nested partials too, the partial built anywhere: in the function, at cell level, through a default argument or an
alias); the recorder receives the same arguments. A plain function registered as the hook that refers to the
student's hook through a default argument or a closure cell is replaced by a copy of it that refers to the
recorder instead, and while the probe runs forward passes the notebook's global ``show_activations_hook`` is the
recorder too (for hooks that look it up when they run, like a lambda). They record what was appended, what the
hook returned, the output after the hook, figures opened, hook counts and what the recorder received. Judged in
:mod:`grader_tests.judges.activations`.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self

import matplotlib.pyplot as plt
import torch
from torch import nn

from .inputs import HIDDEN_SEED, hidden_images, hidden_model
from .record import Observations, call, call_keeping, probe, snapshot

DTYPES = (torch.float32, torch.float64)

IN_A_MODEL = ("backbone.conv1", "backbone.bn2")
"""The layers of the float64 model that the hook is registered on (with partial) in the last stage: two early
ones, whose 4 and 8 channels the student's hook plots quickly (``bn4_1``'s 32 took a quarter of a second)."""

REGISTRATION_CASES: tuple[tuple[str, ...], ...] = (
    ("backbone.conv1", "backbone.bn4_1"),
    ("backbone.bn5_2", "backbone.relu3_2", "fc"),
)

_MISSING = object()

# --- hidden inputs --------------------------------------------------------------------------------------


def hidden_tensors(dtype: torch.dtype = torch.float32) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A conv module, its input ``(2, 2, 6, 7)`` and its output ``(2, 3, 6, 7)`` with autograd history."""
    with torch.random.fork_rng():
        torch.manual_seed(HIDDEN_SEED + 5)
        conv = nn.Conv2d(2, 3, kernel_size=3, padding=1).to(dtype)
        x = torch.randn(2, 2, 6, 7, dtype=dtype)
    with torch.enable_grad():
        output = conv(x)
    return conv, x, output


def _non_4d_logits() -> torch.Tensor:
    return torch.randn(2, 6, generator=torch.Generator().manual_seed(HIDDEN_SEED))


def model_and_images() -> tuple[nn.Module, torch.Tensor]:
    """The float64 hidden model and an image for it."""
    return hidden_model(dtype=torch.float64), hidden_images(n=1, dtype=torch.float64)


# --- helpers of the probes ------------------------------------------------------------------------------


def count_hooks(model: nn.Module) -> int:
    """Forward, forward-pre and backward hooks on all modules of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


class _Figures:
    """Counts the figures opened inside the block and closes them (the notebook's own figures stay open).

    ``plt.show`` does nothing inside the block: in a notebook it would display and close the student's figure
    (the inline backend closes figures once shown), and the check could no longer see that one was drawn.
    """

    def __enter__(self) -> Self:
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


class _Recorder:
    """Stands in for the notebook's ``show_activations_hook``: records ``(name, module, snapshot of output)`` per
    call (snapshot at once, so nothing later in the forward pass can change it), and returns ``None``. It takes
    the arguments the notebook's hook takes, so a hook bound the wrong way fails here as it would there."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, nn.Module, Any]] = []

    def __call__(self, name: Any, module: nn.Module, input: Any, output: Any) -> None:
        self.calls.append((name, module, snapshot(output)))


def unbind(hook: Any) -> tuple[Any, tuple, dict[str, Any]]:
    """``(function, args, keywords)`` of a ``functools.partial`` (nested ones flattened, as calling them does);
    ``(hook, (), {})`` for anything else."""
    args: tuple = ()
    keywords: dict[str, Any] = {}
    while isinstance(hook, functools.partial):
        args, keywords = (*hook.args, *args), {**hook.keywords, **keywords}
        hook = hook.func
    return hook, args, keywords


def _cell_holds(cell: Any, target: Any) -> bool:
    try:
        return cell.cell_contents is target
    except ValueError:  # an empty cell
        return False


def stand_in(hook: Any, target: Any, recorder: _Recorder) -> Any:
    """What the probe registers in the place of ``hook``: a partial of the recorder with the same bound arguments
    where ``hook`` is ``target`` (the student's hook) or a partial of it; a copy of a plain function that refers
    to ``target`` through a default argument or a closure cell, with those references pointing to the recorder;
    ``None`` for any other hook (left in place)."""
    if target is _MISSING:
        return None
    function, args, keywords = unbind(hook)
    if function is target:
        return functools.partial(recorder, *args, **keywords)
    if not isinstance(hook, types.FunctionType):
        return None
    defaults, kwdefaults, closure = hook.__defaults__, hook.__kwdefaults__, hook.__closure__
    refers = (
        any(value is target for value in defaults or ())
        or any(value is target for value in (kwdefaults or {}).values())
        or any(_cell_holds(cell, target) for cell in closure or ())
    )
    if not refers:
        return None
    if defaults:
        defaults = tuple(recorder if value is target else value for value in defaults)
    if kwdefaults:
        kwdefaults = {key: recorder if value is target else value for key, value in kwdefaults.items()}
    if closure:
        closure = tuple(types.CellType(recorder) if _cell_holds(cell, target) else cell for cell in closure)
    copy = types.FunctionType(hook.__code__, hook.__globals__, hook.__name__, defaults, closure)
    copy.__kwdefaults__ = kwdefaults
    return copy


def _replace_student_hooks(model: nn.Module, target: Any, recorder: _Recorder) -> None:
    """Put a stand-in (:func:`stand_in`) in the place of each forward hook on ``model`` that is the student's
    hook, under the same key of the same dict: order and handles stay as the student's code left them."""
    for module in model.modules():
        for key, hook in list(module._forward_hooks.items()):
            replacement = stand_in(hook, target, recorder)
            if replacement is not None:
                module._forward_hooks[key] = replacement


@contextlib.contextmanager
def _global_hook(namespace: dict[str, Any], recorder: _Recorder) -> Iterator[None]:
    """The notebook's global ``show_activations_hook`` is ``recorder`` inside the block, and as before after it."""
    saved = namespace.get("show_activations_hook", _MISSING)
    namespace["show_activations_hook"] = recorder
    try:
        yield
    finally:
        if saved is _MISSING:
            namespace.pop("show_activations_hook", None)
        else:
            namespace["show_activations_hook"] = saved


# --- the hook -------------------------------------------------------------------------------------------


def _probe_direct_call(hook: Callable[..., Any], activation_list: list, dtype: torch.dtype) -> Observations:
    """Call the hook as PyTorch would, on a 4-D output (what it returned, and whether that is the output object
    itself), then change the output in place like an in-place ReLU."""
    conv, x, output = hidden_tensors(dtype)
    start = len(activation_list)
    with _Figures() as figures:
        outcome, value = call_keeping(hook, "hidden.conv", conv, (x,), output)
    stored = activation_list[-1] if len(activation_list) > start else None
    facts = {
        "call": outcome, "returned_output": value is output, "grew": len(activation_list) - start,
        "output": snapshot(output), "stored": snapshot(stored), "figures": figures.opened,
    }
    with torch.no_grad():
        output.relu_()  # what the next layer does in a model with ReLU(inplace=True)
    facts["stored_after_relu"] = snapshot(stored)
    return facts


def _probe_ignores_non_4d(hook: Callable[..., Any], activation_list: list) -> Observations:
    start = len(activation_list)
    logits = _non_4d_logits()
    with _Figures():
        outcome = call(hook, "fc", nn.Identity(), (logits,), logits)
    return {"call": outcome, "grew": len(activation_list) - start}


def _probe_in_a_model(hook: Callable[..., Any], activation_list: list) -> Observations:
    """Registered with partial on a float64 model: one forward pass; its logits and what the hook appended."""
    model, images = model_and_images()
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


@probe
def check_show_activations_hook(hook: Callable[..., Any], activation_list: list) -> Observations:
    """The student's hook, with ``activation_list``, the list the notebook's hook appends to: direct calls
    (float32, float64), a 2-D output, registered in a float64 model.

    Every stage runs (a failed one does not stop the next); what they append is taken out of the list again,
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


# --- the registration -----------------------------------------------------------------------------------


def _probe_registration(
    register: Callable[..., Any], namespace: dict[str, Any], recorder: _Recorder, names: Sequence[str]
) -> Observations:
    """Register, count the hooks, put the recorder in the place of the student's hook (:func:`stand_in`), run a
    forward pass (what the recorder received), remove the first handle, then the others, and run again. Stops
    after the call when no list or tuple of handles came back, and before the removals when a handle has no
    ``remove``."""
    model = hidden_model()
    images = hidden_images(n=1)
    modules = dict(model.named_modules())
    qualified = {id(module): name for name, module in modules.items()}
    # a notebook without the hook (its cell deleted) gets the recorder during the call, so registration is
    # still graded on its own; otherwise register sees the student's hook, and the probe recognises it afterwards
    missing = "show_activations_hook" not in namespace
    with _global_hook(namespace, recorder) if missing else contextlib.nullcontext():
        outcome, handles = call_keeping(register, model, list(names))
    facts: Observations = {"call": outcome}
    try:
        if not isinstance(handles, (list, tuple)):
            return facts
        facts["removable"] = [callable(getattr(handle, "remove", None)) for handle in handles]
        facts["forward_hooks"] = {name: len(modules[name]._forward_hooks) for name in names}
        facts["hooks"] = count_hooks(model)
        _replace_student_hooks(model, namespace.get("show_activations_hook", _MISSING), recorder)
        recorder.calls.clear()
        with torch.no_grad(), _global_hook(namespace, recorder):
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
        with torch.no_grad(), _global_hook(namespace, recorder):
            call(model, images)
        facts["calls_after_removal"] = len(recorder.calls)
        return facts
    finally:
        for module in model.modules():  # the probe's own model: every hook, the student's and the stand-ins, goes
            module._forward_hooks.clear()


@probe
def check_register_activation_hooks(register: Callable[..., Any]) -> Observations:
    """The student's ``register_activation_hooks`` on each of :data:`REGISTRATION_CASES`, on its own: whatever
    the student's hook does, the hooks it registered call a recorder in its place (see the module's docstring),
    so the probe sees which name and which layer each registered hook passes on."""
    namespace = getattr(register, "__globals__", None)
    if namespace is None:
        return {"in_notebook": False}
    recorder = _Recorder()
    with _Figures():
        return {
            "in_notebook": True,
            "cases": [_probe_registration(register, namespace, recorder, names) for names in REGISTRATION_CASES],
        }
