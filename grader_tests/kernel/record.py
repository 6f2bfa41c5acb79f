"""The probe's half of a hidden check: call the student's functions quietly, write down what happened, publish it.

A hidden test cell calls a :class:`Probe`, ``check_saliency_map(saliency_map)``. Inside a grading kernel
(``NBGRADER_EXECUTION=autograde``) the probe's observations leave the kernel as one display output of type
:data:`RECORD_MIME`, and the trusted judge of the same name (:mod:`grader_tests.judges`) decides in the grading
process, after the kernel has gone. Anywhere else (pytest, ``nbgrader validate``, an instructor's kernel) the
probe hands its observations to the judge at once, through the same bytes, and the judge raises
``AssertionError``.

Observations are plain data: tensors, numbers, strings, lists and dicts of them, saved with ``torch.save`` and
loaded by the judge with ``weights_only=True`` (no pickled code runs there).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator
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


def encode(name: str, observations: Observations) -> str:
    """A record: the check's name and its observations as base64 text."""
    buffer = io.BytesIO()
    torch.save({"check": name, "observations": observations}, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Probe:
    """The kernel's half of a hidden check, named ``<topic>.<check>`` like its judge in ``grader_tests.judges``."""

    def __init__(self, name: str, probe: Callable[..., Observations]) -> None:
        self.name, self.probe = name, probe
        self.__doc__ = probe.__doc__

    def __repr__(self) -> str:
        return f"Probe({self.name!r})"

    def __call__(self, *student_objects: Any) -> None:
        payload = encode(self.name, self.probe(*student_objects))
        if recording():  # the trusted judge decides, after the kernel is gone
            from IPython.display import publish_display_data

            publish_display_data({RECORD_MIME: payload, "text/plain": "(hidden check recorded)"})
            return
        from grader_tests.judges import judge_now  # outside grading only: a grading kernel cannot import it

        judge_now(self.name, payload)


def probe(function: Callable[..., Observations]) -> Probe:
    """Make ``check_x`` of ``grader_tests/kernel/<topic>.py`` the probe of the judge ``<topic>.check_x``."""
    return Probe(f"{function.__module__.rpartition('.')[2]}.{function.__name__}", function)
