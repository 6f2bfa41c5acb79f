"""Hidden checks in two halves: a *probe* that runs in the student's kernel, a *judge* that runs where no student
code ever ran.

Why: a check that compares inside the student's kernel can be fooled by the student's own code (replace
``torch.allclose``, ``torch.testing.assert_close``, ``numpy.testing`` or IPython's error hooks and every comparison
passes). So a :class:`HiddenCheck` is split:

* ``probe(*student_objects) -> Observations`` calls the student's functions on hidden inputs and writes down raw
  facts only: returned tensors, error messages, hook counts, train flags. It compares nothing.
* ``judge(observations)`` computes the references and makes every comparison. It never sees a student object,
  only the observations, decoded from bytes with ``torch.load(weights_only=True)`` (no pickled code runs).

During ``nbgrader autograde`` (``NBGRADER_EXECUTION=autograde``) the hidden test cell publishes the encoded
observations as a display output of type :data:`RECORD_MIME`; :mod:`grader_tests.nbgrader_plugins` judges them
in nbgrader's own process after the kernel has finished and removes them from the notebook. Anywhere else
(``pytest``, ``nbgrader validate``, an instructor's kernel) the check judges at once and raises
``AssertionError``; the observations still take the same round trip through bytes, so the tests exercise the
path grading uses. Student code can still write fake observations, but faking the right ones means computing the
right answer on inputs it never saw.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

RECORD_MIME = "application/vnd.visualizing-cnns.hidden-check+base64"
"""MIME type of the display output that carries a probe's observations out of the kernel."""

Observations = dict[str, Any]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Run student code without warnings or prints reaching stderr/stdout (nbgrader scores any stderr as 0)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def recording() -> bool:
    """Whether hidden checks only record here (inside a kernel that ``nbgrader autograde`` started)."""
    return os.environ.get("NBGRADER_EXECUTION") == "autograde"


# --- what a probe may write down ------------------------------------------------------------------------------


def snapshot(value: Any) -> Any:
    """A serialisable copy of a student's value: tensors detached and cloned (their ``requires_grad`` and
    ``grad_fn`` noted), containers element by element, anything else reduced to its type name."""
    if isinstance(value, torch.Tensor):
        return {
            "tensor": value.detach().clone(),
            "requires_grad": bool(value.requires_grad),
            "has_history": value.grad_fn is not None,
        }
    if value is None:
        return None
    for plain in (bool, int, float, str):  # numpy scalars subclass these: store the plain value
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, (list, tuple)):
        return {"sequence": [snapshot(item) for item in value], "type": type(value).__name__}
    return {"type": type(value).__name__}


def restore(value: Any) -> Any:
    """The judge's view of a :func:`snapshot`: tensors back (with a ``requires_grad`` flag the judge can read),
    sequences as lists, foreign objects as :class:`Foreign`."""
    if isinstance(value, dict) and "tensor" in value:
        return Recorded(value["tensor"], value["requires_grad"], value["has_history"])
    if isinstance(value, dict) and "sequence" in value:
        items = [restore(item) for item in value["sequence"]]
        return tuple(items) if value["type"] == "tuple" else items
    if isinstance(value, dict):
        return Foreign(value.get("type", "object"))
    return value


@dataclass(frozen=True)
class Recorded:
    """A tensor the student's code returned, as the judge sees it."""

    tensor: torch.Tensor
    requires_grad: bool
    has_history: bool


@dataclass(frozen=True)
class Foreign:
    """A value of a type the judge does not rebuild (a numpy array, a custom object): only its type name."""

    type_name: str


def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a student's function quietly and note what happened: ``{"value": snapshot}`` or ``{"error": text}``.

    ``NotImplementedError`` is noted as such, so the judge can say "not implemented yet".
    """
    return call_keeping(function, *args, **kwargs)[0]


def call_keeping(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    """:func:`call`, and the raw value too (``None`` after an error) for the probe to act on later."""
    try:
        with quiet():
            value = function(*args, **kwargs)
            return {"value": snapshot(value)}, value
    except NotImplementedError:
        return {"error": "not implemented"}, None
    except Exception as error:  # noqa: BLE001 - any failure of student code is an observation
        return {"error": f"{type(error).__name__}: {error}"}, None


def returned(outcome: dict[str, Any], what: str) -> Any:
    """The judge's side of :func:`call`: the restored value, or an AssertionError that says what went wrong."""
    if "error" not in outcome:
        return restore(outcome["value"])
    if outcome["error"] == "not implemented":
        raise AssertionError(f"{what} is not implemented yet (it still raises NotImplementedError)")
    raise AssertionError(f"{what} raised {outcome['error']} on new inputs")


# --- the check itself ----------------------------------------------------------------------------------------


class HiddenCheck:
    """A hidden check as a notebook calls it, ``check_vis_gradcam(vis_gradcam)``: probe, then judge."""

    def __init__(self, name: str, probe: Callable[..., Observations], judge: Callable[[Observations], None]) -> None:
        self.name, self.probe, self.judge = name, probe, judge
        self.__doc__ = judge.__doc__

    def __repr__(self) -> str:
        return f"HiddenCheck({self.name!r})"

    def __call__(self, *student_objects: Any) -> None:
        payload = encode(self.name, self.probe(*student_objects))
        if recording():  # the trusted judge decides, after the kernel is gone
            _publish(payload)
            return
        _, observations = decode(payload)
        self.judge(observations)


def hidden_check(probe: Callable[..., Observations]) -> Callable[[Callable[[Observations], None]], HiddenCheck]:
    """Pair a judge with its probe: ``@hidden_check(_probe_x)`` over ``def check_x(observations): ...``."""

    def wrap(judge: Callable[[Observations], None]) -> HiddenCheck:
        return HiddenCheck(f"{judge.__module__}.{judge.__name__}", probe, judge)

    return wrap


def encode(name: str, observations: Observations) -> str:
    buffer = io.BytesIO()
    torch.save({"check": name, "observations": observations}, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode(payload: str) -> tuple[str, Observations]:
    """Bytes from a kernel back to ``(check name, observations)``; refuses anything but data (weights_only)."""
    record = torch.load(io.BytesIO(base64.b64decode(payload)), weights_only=True)
    if not isinstance(record, dict) or not isinstance(record.get("check"), str):
        raise ValueError("not a hidden-check record")
    return record["check"], record.get("observations", {})


def _publish(payload: str) -> None:
    from IPython.display import publish_display_data

    publish_display_data({RECORD_MIME: payload, "text/plain": "(hidden check recorded)"})


def find_check(name: str) -> HiddenCheck:
    """The trusted :class:`HiddenCheck` called ``name`` (``grader_tests.<module>.<check>``)."""
    module_name, _, attribute = name.rpartition(".")
    if not module_name.startswith("grader_tests."):
        raise LookupError(f"{name} is not a hidden check")
    check = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(check, HiddenCheck):
        raise LookupError(f"{name} is not a hidden check")
    return check


def judge(name: str, observations: Observations) -> str | None:
    """Judge recorded observations with the trusted check: ``None`` if they pass, else the reason."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            find_check(name).judge(observations)
    except AssertionError as failure:
        return str(failure) or "the hidden check failed"
    except Exception as error:  # noqa: BLE001 - malformed observations are a failed check, not a crash
        return f"the recorded results could not be checked ({type(error).__name__}: {error})"
    return None
