"""The judges of the hidden checks and the reference implementations they compare with. Grading process only.

Each ``grader_tests/judges/<topic>.py`` holds the references of one notebook and one judge per probe of
``grader_tests/kernel/<topic>.py``, with the same name: ``@judge`` over ``def check_x(observations)``. A judge
rebuilds the hidden inputs, computes the reference and raises ``AssertionError`` with a message for the student
when the observations do not match.

A reference depends only on the hidden case, never on the student: a judge module computes it once per process in a
small ``functools.cache`` function keyed by the case (``@reference``, ``_x_reference(index)``) and reuses it for
every student the grading process judges. Callers only read what such a function returns; what explains a wrong
answer from the student's own values is computed afresh. :func:`warm` computes every reference at once: a grading
worker does so as it starts, before its first task.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import pkgutil
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from grader_tests.kernel.record import Observations

from .records import decode

Judge = Callable[[Observations], None]

_JUDGES: dict[str, Judge] = {}
_NAME = re.compile(r"(?P<topic>[a-z0-9_]+)\.check_[a-z0-9_]+")


_REFERENCES: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
_Reference = TypeVar("_Reference", bound=Callable[..., Any])


def reference(cases: Iterable[Any] | None = None) -> Callable[[_Reference], _Reference]:
    """``functools.cache`` for a reference computed from a hidden case alone, registered for :func:`warm`:
    ``@reference(range(len(X_CASES)))`` over ``def _x_reference(index)``, ``@reference()`` over a function of no
    arguments."""
    arguments = ((),) if cases is None else tuple((case,) for case in cases)

    def register(function: _Reference) -> _Reference:
        cached = functools.cache(function)
        _REFERENCES.extend((cached, args) for args in arguments)
        return cached  # type: ignore[return-value]

    return register


def warm() -> None:
    """Compute every judge's references now (a few seconds), so that no student's grading waits for them."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    for cached, args in _REFERENCES:
        cached(*args)


def judge(function: Judge) -> Judge:
    """Register ``check_x`` of ``grader_tests/judges/<topic>.py`` as the judge of records named ``<topic>.check_x``."""
    _JUDGES[f"{function.__module__.rpartition('.')[2]}.{function.__name__}"] = function
    return function


def find(name: str) -> Judge:
    """The judge called ``name`` (``<topic>.check_x``); ``LookupError`` for anything else."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise LookupError(f"{name!r} is not a hidden check")
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module(f"{__name__}.{match['topic']}")
    if name not in _JUDGES:
        raise LookupError(f"{name!r} is not a hidden check")
    return _JUDGES[name]


def verdict(name: str, observations: Observations) -> str | None:
    """Judge observations with the trusted judge ``name``: ``None`` if they pass, else the reason."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            find(name)(observations)
    except AssertionError as failure:
        return str(failure) or "the hidden check failed"
    except Exception as error:  # noqa: BLE001 - malformed observations are a failed check, not a crash
        return f"the recorded results could not be checked ({type(error).__name__}: {error})"
    return None


def judge_now(name: str, payload: str) -> None:
    """Outside grading: judge a probe's record at once; ``AssertionError`` with the reason if it fails."""
    recorded_name, observations = decode(payload)
    assert recorded_name == name
    find(name)(observations)
