"""The references of notebook 04_activations are right, and its hidden checks accept correct answers and reject
wrong ones. The student-like hooks below use a module-level ``activation_list``, as the notebook does."""

import functools
import operator

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader_tests.judges import activations as grader
from grader_tests.kernel import activations as probes
from helpers.models import VGG11GAP
from helpers.plotting import plot_activations

activation_list: list = []
_ORIGINAL_SHOW = plt.show


@pytest.fixture(autouse=True)
def _fresh_state():
    activation_list.clear()
    yield
    activation_list.clear()
    plt.close("all")


# --- the references -------------------------------------------------------------------------------------


def test_reference_hook_stores_the_pre_relu_output_even_with_an_inplace_relu():
    """conv -> ReLU(inplace=True): the stored conv output keeps its negatives and equals F.conv2d by hand."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(2, 3, 8, 8)
    stored: list = []
    handle = conv.register_forward_hook(functools.partial(grader.show_activations_hook, stored, "conv"))
    try:
        out = model(x)
    finally:
        handle.remove()
    expected = F.conv2d(x, conv.weight, conv.bias, padding=1).detach()
    assert len(stored) == 1
    torch.testing.assert_close(stored[0], expected)
    assert stored[0].min() < 0 and out.min() == 0  # the ReLU rewrote the output, not the stored copy
    assert not stored[0].requires_grad
    assert plt.gcf()._suptitle.get_text() == "Activations on: conv"


def test_reference_hook_ignores_outputs_that_are_not_4d():
    stored: list = []
    before = len(plt.get_fignums())
    grader.show_activations_hook(stored, "fc", nn.Identity(), (torch.zeros(2, 6),), torch.zeros(2, 6))
    assert stored == [] and len(plt.get_fignums()) == before


def test_reference_registration_binds_each_name_and_removes_cleanly():
    model = VGG11GAP(6, width=1 / 16).eval()
    seen = []
    handles = grader.register_activation_hooks(model, ["backbone.conv1", "backbone.bn4_1"], lambda name, m, i, o: seen.append((name, tuple(o.shape))))
    assert probes.count_hooks(model) == 2
    assert len(model.backbone.conv1._forward_hooks) == 1 and len(model.backbone.bn4_1._forward_hooks) == 1
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert seen == [("backbone.conv1", (1, 4, 32, 32)), ("backbone.bn4_1", (1, 32, 4, 4))]
    for handle in handles:
        handle.remove()
    assert probes.count_hooks(model) == 0


def test_count_hooks_counts_every_kind():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    handles = [
        model[0].register_forward_hook(lambda *a: None),
        model[1].register_forward_pre_hook(lambda *a: None),
        model[0].register_full_backward_hook(lambda *a: None),
    ]
    assert probes.count_hooks(model) == 3
    for handle in handles:
        handle.remove()
    assert probes.count_hooks(model) == 0


# --- student-like hooks ---------------------------------------------------------------------------------


def hook_like_the_notebook(name, module, input, output):
    if output.dim() == 4:
        activation_list.append(output.detach().clone())
        plot_activations(output, f"Activations on: {name}")


def hook_clone_then_detach(name, module, input, output):
    if len(output.shape) == 4:
        activation_list.append(output.clone().detach())
        fig, ax = plt.subplots()
        ax.imshow(output[0, 0].detach().numpy())


def hook_via_numpy(name, module, input, output):
    if isinstance(output, torch.Tensor) and output.ndim == 4:
        activation_list.append(torch.tensor(np.array(output.detach().numpy())))
        plot_activations(output, name)


def hook_data_clone_returning_output(name, module, input, output):
    if output.dim() == 4:
        activation_list.append(output.data.clone())
        plot_activations(output.data, name)
    return output  # returning the output itself changes nothing


def hook_showing_the_figure(name, module, input, output):
    if output.dim() == 4:
        activation_list.append(output.detach().clone())
        plot_activations(output, f"Activations on: {name}")
        plt.show()  # in a notebook this displays the figure and closes it


def hook_with_print(name, module, input, output):
    print(name, output.shape)  # prints are fine: the check runs the hook quietly
    hook_like_the_notebook(name, module, input, output)


def hook_returning_output(name, module, input, output):
    """The seed's hook_feat style: returning the output object itself changes nothing."""
    if output.dim() == 4:
        activation_list.append(output.detach().clone())
        plot_activations(output, name)
    return output


CORRECT_HOOKS = {
    "returns output itself": hook_returning_output,
    "reference": functools.partial(grader.show_activations_hook, activation_list),
    "like the notebook": hook_like_the_notebook,
    "clone().detach()": hook_clone_then_detach,
    "numpy copy": hook_via_numpy,
    ".data.clone(), returns output": hook_data_clone_returning_output,
    "prints": hook_with_print,
    "calls plt.show()": hook_showing_the_figure,
}


@pytest.mark.parametrize("hook", CORRECT_HOOKS.values(), ids=CORRECT_HOOKS.keys())
def test_check_show_activations_hook_accepts_correct_hooks(hook, monkeypatch):
    def inline_show(*args, **kwargs):  # like the notebook's inline backend: display, then close
        plt.close("all")

    monkeypatch.setattr(plt, "show", inline_show)
    activation_list.append("an earlier entry")
    figures = set(plt.get_fignums())
    probes.check_show_activations_hook(hook, activation_list)
    assert activation_list == ["an earlier entry"]  # what the check appended is gone again
    assert set(plt.get_fignums()) == figures  # and the figures it opened are closed
    assert plt.show is inline_show  # and plt.show is the one it found


def _plotting(store):
    """A hook that stores ``store(output, input)`` for 4-D outputs and plots like the notebook."""

    def hook(name, module, input, output):
        if output.dim() == 4:
            activation_list.append(store(output, input))
            plot_activations(output, name)

    return hook


def hook_without_plot(name, module, input, output):
    if output.dim() == 4:
        activation_list.append(output.detach().clone())


def hook_storing_everything(name, module, input, output):
    activation_list.append(output.detach().clone())
    if output.dim() == 4:
        plot_activations(output, name)


def hook_appending_twice(name, module, input, output):
    hook_like_the_notebook(name, module, input, output)
    if output.dim() == 4:
        activation_list.append(output.detach().clone())


def hook_returning_relu(name, module, input, output):
    hook_like_the_notebook(name, module, input, output)
    return output.relu()


def hook_returning_a_detached_copy(name, module, input, output):
    hook_like_the_notebook(name, module, input, output)
    return output.detach().clone()  # same values, but it replaces the output and cuts the graph


def hook_returning_what_it_stored(name, module, input, output):
    if output.dim() == 4:
        activation_list.append(output.detach().clone())
        plot_activations(output, name)
        return activation_list[-1]
    return None


def hook_returning_a_number(name, module, input, output):
    hook_like_the_notebook(name, module, input, output)
    return len(activation_list)


def hook_detaching_the_output_in_place(name, module, input, output):
    if output.dim() == 4:
        activation_list.append(output.detach_().clone())
        plot_activations(output, name)


def hook_modifying_output(name, module, input, output):
    hook_like_the_notebook(name, module, input, output)
    with torch.no_grad():
        output.mul_(2)


def hook_rebinding_the_list(name, module, input, output):
    global activation_list
    if output.dim() == 4:
        activation_list = activation_list + [output.detach().clone()]  # a new list: the notebook's list is untouched
        plot_activations(output, name)


def hook_stub(name, module, input, output):
    raise NotImplementedError


WRONG_HOOKS = {
    "stores the input": (_plotting(lambda out, inp: inp[0].detach().clone()), "input"),
    "stores the input tuple": (_plotting(lambda out, inp: inp), "should append a tensor"),
    "stores the output itself": (_plotting(lambda out, inp: out), "autograd history"),
    "stores a clone that is not detached": (_plotting(lambda out, inp: out.clone()), "autograd history"),
    "stores a detached view": (_plotting(lambda out, inp: out.detach()), "modified in place"),
    "stores .data (a view)": (_plotting(lambda out, inp: out.data), "modified in place"),
    "stores the first image only": (_plotting(lambda out, inp: out[0].detach().clone()), "whole 4-D output"),
    "stores the ReLU of the output": (_plotting(lambda out, inp: out.detach().relu()), "not the layer's output"),
    "stores a float32 copy": (_plotting(lambda out, inp: out.detach().to(torch.float32, copy=True)), "dtype"),
    "no figure": (hook_without_plot, "draw"),
    "stores 2-D outputs too": (hook_storing_everything, "only 4-D"),
    "appends twice": (hook_appending_twice, "exactly one"),
    "returns a new output": (hook_returning_relu, "returns a tensor of shape"),
    "returns a detached copy": (hook_returning_a_detached_copy, "return nothing"),
    "returns its stored copy": (hook_returning_what_it_stored, "PyTorch replaces the layer's output"),
    "returns a number": (hook_returning_a_number, "returns a int"),
    "detaches the output in place": (hook_detaching_the_output_in_place, "cut the layer's output from the autograd"),
    "modifies the output in place": (hook_modifying_output, "changed the layer's output"),
    "appends to a new list": (hook_rebinding_the_list, "grew by 0"),
    "stub": (hook_stub, "not implemented yet"),
}


@pytest.mark.parametrize(("hook", "message"), WRONG_HOOKS.values(), ids=WRONG_HOOKS.keys())
def test_check_show_activations_hook_rejects_wrong_hooks(hook, message):
    global activation_list
    notebook_list = activation_list
    try:
        with pytest.raises(AssertionError, match=message):
            probes.check_show_activations_hook(hook, notebook_list)
    finally:
        activation_list = notebook_list
    assert notebook_list == []
    assert plt.get_fignums() == []
    assert plt.show is _ORIGINAL_SHOW


def test_check_show_activations_hook_needs_the_list():
    with pytest.raises(AssertionError, match="should be a list"):
        probes.check_show_activations_hook(hook_like_the_notebook, None)


# --- student-like registrations -------------------------------------------------------------------------
# They look ``show_activations_hook`` up in this module's globals, as the notebook's function does in its own.


def show_activations_hook(name, module, input, output):  # the notebook's hook, not implemented yet
    raise NotImplementedError


def register_like_the_notebook(model, names):
    handles = []
    for name in names:
        module = model.get_submodule(name)
        handles.append(module.register_forward_hook(functools.partial(show_activations_hook, name)))
    return handles


def register_with_named_modules(model, names):
    modules = dict(model.named_modules())
    return tuple(modules[name].register_forward_hook(functools.partial(show_activations_hook, name)) for name in names)


def register_with_lambdas(model, names):
    handles = []
    for name in names:
        hook = lambda module, inp, out, name=name: show_activations_hook(name, module, inp, out)  # noqa: E731
        handles.append(operator.attrgetter(name)(model).register_forward_hook(hook))
    return handles


def register_reference(model, names):
    return grader.register_activation_hooks(model, names, show_activations_hook)


def register_with_a_default_argument(model, names, hook=show_activations_hook):
    """The hook bound when the function was defined: a global swap would not reach it."""
    return [model.get_submodule(name).register_forward_hook(functools.partial(hook, name)) for name in names]


hook_alias = show_activations_hook  # a cell-level alias


def register_through_an_alias(model, names):
    return [model.get_submodule(name).register_forward_hook(functools.partial(hook_alias, name)) for name in names]


bound_hook = functools.partial(show_activations_hook)  # a partial built at cell level
hook_for = functools.partial(functools.partial, show_activations_hook)  # hook_for(name) is the bound hook


def register_through_a_cell_level_partial(model, names):
    return [model.get_submodule(name).register_forward_hook(functools.partial(bound_hook, name)) for name in names]


def register_through_a_partial_factory(model, names):
    return [model.get_submodule(name).register_forward_hook(hook_for(name)) for name in names]


class _Partial(functools.partial):
    """A subclass: functools does not flatten it, so the probe sees partials nested in partials."""


def register_through_nested_partials(model, names):
    return [model.get_submodule(n).register_forward_hook(functools.partial(_Partial(show_activations_hook), n)) for n in names]


def register_with_a_closure(model, names, hook=show_activations_hook):
    def bound(name):
        def forward_hook(module, inp, out):
            return hook(name, module, inp, out)

        return forward_hook

    return [model.get_submodule(name).register_forward_hook(bound(name)) for name in names]


def register_with_lambdas_binding_the_hook(model, names):
    return [
        model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n, hook=show_activations_hook: hook(n, m, i, o))
        for n in names
    ]


CORRECT_REGISTRATIONS = {
    "default argument": register_with_a_default_argument,
    "alias": register_through_an_alias,
    "cell-level partial": register_through_a_cell_level_partial,
    "cell-level partial factory": register_through_a_partial_factory,
    "nested partials": register_through_nested_partials,
    "closure over a default argument": register_with_a_closure,
    "lambdas binding the hook": register_with_lambdas_binding_the_hook,
    "reference": register_reference,
    "like the notebook": register_like_the_notebook,
    "named_modules, tuple": register_with_named_modules,
    "lambdas with a default argument": register_with_lambdas,
}


@pytest.mark.parametrize("register", CORRECT_REGISTRATIONS.values(), ids=CORRECT_REGISTRATIONS.keys())
def test_check_register_accepts_correct_registrations_even_when_the_hook_is_a_stub(register):
    probes.check_register_activation_hooks(register)
    assert globals()["show_activations_hook"] is show_activations_hook  # the notebook's hook is put back
    with pytest.raises(NotImplementedError):
        show_activations_hook("x", None, None, None)


def register_late_binding(model, names):
    handles = []
    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(lambda m, i, o: show_activations_hook(name, m, i, o)))
    return handles


def register_short_names(model, names):
    return [
        model.get_submodule(n).register_forward_hook(functools.partial(show_activations_hook, n.split(".")[-1])) for n in names
    ]


def register_always_conv1(model, names):
    return [model.backbone.conv1.register_forward_hook(functools.partial(show_activations_hook, n)) for n in names]


def register_without_returning(model, names):
    for name in names:
        model.get_submodule(name).register_forward_hook(functools.partial(show_activations_hook, name))


def register_reversed(model, names):
    return register_like_the_notebook(model, names)[::-1]


def register_twice(model, names):
    handles = register_like_the_notebook(model, names)
    register_like_the_notebook(model, names)
    return handles


def register_pre_hooks(model, names):
    return [model.get_submodule(n).register_forward_pre_hook(functools.partial(show_activations_hook, n)) for n in names]


def register_own_hook(model, names):
    return [model.get_submodule(n).register_forward_hook(lambda m, i, o: None) for n in names]


def register_name_as_keyword(model, names):
    return [model.get_submodule(n).register_forward_hook(functools.partial(show_activations_hook, name=n)) for n in names]


def register_stub(model, names):
    raise NotImplementedError


WRONG_REGISTRATIONS = {
    "late-binding lambda (every hook gets the last name)": (register_late_binding, "bind each layer's own name"),
    "short names": (register_short_names, "bind each layer's own name"),
    "always conv1": (register_always_conv1, "forward hooks, expected 1"),
    "returns nothing": (register_without_returning, "list of"),
    "handles reversed": (register_reversed, "order of names"),
    "registers twice": (register_twice, "forward hooks, expected 1"),
    "forward pre-hooks": (register_pre_hooks, "forward hooks, expected 1"),
    "own hook instead of show_activations_hook": (register_own_hook, "called show_activations_hook 0 times"),
    "name bound as a keyword": (register_name_as_keyword, "raised TypeError"),
    "stub": (register_stub, "not implemented yet"),
}


@pytest.mark.parametrize(("register", "message"), WRONG_REGISTRATIONS.values(), ids=WRONG_REGISTRATIONS.keys())
def test_check_register_rejects_wrong_registrations(register, message):
    with pytest.raises(AssertionError, match=message):
        probes.check_register_activation_hooks(register)
    assert globals()["show_activations_hook"] is show_activations_hook


def test_check_register_restores_a_namespace_without_the_hook():
    namespace = {"functools": functools}
    exec(  # a notebook that never defined show_activations_hook
        "def register(model, names):\n"
        "    return [model.get_submodule(n).register_forward_hook(functools.partial(show_activations_hook, n)) for n in names]\n",
        namespace,
    )
    probes.check_register_activation_hooks(namespace["register"])
    assert "show_activations_hook" not in namespace


def test_check_register_does_not_call_the_students_hook_and_leaves_it_as_it_was():
    """The stub hook raises if called; a working hook would append and plot: neither may happen."""
    namespace = {"functools": functools, "calls": []}
    exec(  # noqa: S102 - a notebook's namespace of its own
        "def show_activations_hook(name, module, input, output):\n"
        "    calls.append(name)\n"
        "    raise NotImplementedError\n"
        "def register(model, names, hook=show_activations_hook):\n"
        "    return [model.get_submodule(n).register_forward_hook(functools.partial(hook, n)) for n in names]\n",
        namespace,
    )
    hook = namespace["show_activations_hook"]
    probes.check_register_activation_hooks(namespace["register"])
    assert namespace["calls"] == [] and namespace["show_activations_hook"] is hook
    assert namespace["register"].__defaults__ == (hook,)


def test_stand_in_recognises_the_hook_by_identity_only():
    recorder = probes._Recorder()
    assert probes.stand_in(functools.partial(hook_like_the_notebook, "x"), show_activations_hook, recorder) is None
    assert probes.stand_in(lambda m, i, o: None, show_activations_hook, recorder) is None
    standing = probes.stand_in(functools.partial(_Partial(show_activations_hook, "a"), "b"), show_activations_hook, recorder)
    assert standing.func is recorder and standing.args == ("a", "b")
