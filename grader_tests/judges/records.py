"""The judge's view of a record: bytes from an untrusted kernel back to plain observations, and what a judge needs
to read a student's returned values. Nothing here runs student code (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from dataclasses import dataclass
from typing import Any

import torch

from grader_tests.kernel.record import Observations

MAX_RECORD_CHARS = 20_000_000
"""A record larger than this (base64 characters) is refused unread: probes record small tensors only."""

MAX_RECORD_ITEMS = 200_000
"""Values (containers, numbers, strings, tensors) a record may hold, counted each time they are reached: a record
that shares one list many times over (a "billion laughs") is refused, not walked for ever."""

MAX_TENSOR_BYTES = 4 * MAX_RECORD_CHARS
"""Bytes of all a record's tensors together, as the judge would hold them."""


def decode(payload: Any) -> tuple[str, Observations]:
    """A record from a kernel back to ``(check name, observations)``; refuses anything but bounded data.

    The memory it can cost is bounded before anything is loaded: the payload's length, then the archive that
    ``torch.save`` wrote, whose every entry must be stored as it is (``torch.save`` never compresses; a DEFLATE
    entry of 1 MB can inflate to a GB) and whose declared sizes must fit in the bytes received. After loading,
    every tensor must be a plain CPU tensor no larger than its storage, and the whole within
    :data:`MAX_TENSOR_BYTES` and :data:`MAX_RECORD_ITEMS`."""
    if not isinstance(payload, str) or len(payload) > MAX_RECORD_CHARS:
        raise ValueError("not a hidden-check record (wrong type or too large)")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not a hidden-check record ({error})") from None
    _check_archive(raw)
    record = torch.load(io.BytesIO(raw), weights_only=True, mmap=False)
    _check_bounded(record)
    if not isinstance(record, dict) or not isinstance(record.get("check"), str):
        raise ValueError("not a hidden-check record")
    observations = record.get("observations", {})
    if not isinstance(observations, dict):
        raise ValueError("not a hidden-check record (observations are not a dict)")
    return record["check"], observations


def _check_archive(raw: bytes) -> None:
    """Refuse a record that is not ``torch.save``'s zip of stored entries whose sizes fit in ``raw``."""
    try:
        entries = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ValueError(f"not a hidden-check record (not torch.save's archive: {error})") from None
    declared = 0
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != entry.compress_size:
            raise ValueError("not a hidden-check record (a compressed entry: torch.save stores them as they are)")
        declared += entry.file_size
    if declared > len(raw):
        raise ValueError("not a hidden-check record (its entries claim more bytes than it holds)")


def _check_bounded(record: Any) -> None:
    """Refuse a loaded record with too many values, a tensor that is not a plain CPU tensor within its storage,
    or too many bytes of tensors."""
    todo, items, tensor_bytes = [record], 0, 0
    while todo:
        value = todo.pop()
        items += 1
        if items > MAX_RECORD_ITEMS:
            raise ValueError(f"not a hidden-check record (more than {MAX_RECORD_ITEMS:,} values)")
        if isinstance(value, torch.Tensor):
            if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
                raise ValueError("not a hidden-check record (a tensor that is not a plain CPU tensor)")
            size = value.numel() * value.element_size()
            if size > value.untyped_storage().nbytes():
                raise ValueError("not a hidden-check record (a tensor larger than its storage)")
            tensor_bytes += size
            if tensor_bytes > MAX_TENSOR_BYTES:
                raise ValueError("not a hidden-check record (too many bytes of tensors)")
        elif isinstance(value, dict):
            todo += [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            todo += list(value)


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
