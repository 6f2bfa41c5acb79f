"""The judge's view of a record: bytes from an untrusted kernel back to plain observations, and what a judge needs
to read a student's returned values. Nothing here runs student code (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

import torch

from grader_tests.kernel.record import Observations

MAX_RECORD_CHARS = 20_000_000
"""A record larger than this (base64 characters) is refused unread: probes record small tensors only."""


def decode(payload: Any) -> tuple[str, Observations]:
    """A record from a kernel back to ``(check name, observations)``; refuses anything but bounded data."""
    if not isinstance(payload, str) or len(payload) > MAX_RECORD_CHARS:
        raise ValueError("not a hidden-check record (wrong type or too large)")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not a hidden-check record ({error})") from None
    record = torch.load(io.BytesIO(raw), weights_only=True)
    if not isinstance(record, dict) or not isinstance(record.get("check"), str):
        raise ValueError("not a hidden-check record")
    observations = record.get("observations", {})
    if not isinstance(observations, dict):
        raise ValueError("not a hidden-check record (observations are not a dict)")
    return record["check"], observations


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


def restore(value: Any) -> Any:
    """The judge's view of a :func:`~grader_tests.kernel.record.snapshot`: tensors back (with a ``requires_grad``
    flag the judge can read), sequences as lists, foreign objects as :class:`Foreign`."""
    if isinstance(value, dict) and "tensor" in value:
        if not isinstance(value["tensor"], torch.Tensor):
            return Foreign(type(value["tensor"]).__name__)
        return Recorded(value["tensor"], bool(value.get("requires_grad")), bool(value.get("has_history")))
    if isinstance(value, dict) and "sequence" in value:
        items = [restore(item) for item in value["sequence"]]
        return tuple(items) if value.get("type") == "tuple" else items
    if isinstance(value, dict):
        return Foreign(str(value.get("type", "object")))
    return value


def returned(outcome: dict[str, Any], what: str) -> Any:
    """The judge's side of :func:`~grader_tests.kernel.record.call`: the restored value, or an AssertionError that
    says what went wrong."""
    if "error" not in outcome:
        return restore(outcome["value"])
    if outcome["error"] == "not implemented":
        raise AssertionError(f"{what} is not implemented yet (it still raises NotImplementedError)")
    raise AssertionError(f"{what} raised {outcome['error']} on new inputs")
