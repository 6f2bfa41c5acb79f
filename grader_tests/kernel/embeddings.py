"""Probes of ``09_embeddings``: the student's ``nearest_neighbours`` and ``knn_accuracy`` on feature vectors the
student never saw. They record what the functions return (indices, distances, accuracies) and whether the
caller's tensors came back unchanged. Judged in :mod:`grader_tests.judges.embeddings`, against scikit-learn.

The hidden features are random vectors from the hidden seed: Gaussian ones, non-negative ones (like features
after a ReLU and global average pooling), float64 ones, and for the tie rule small integer vectors with exact
duplicates, whose distances are the same bit for bit however they are computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .inputs import HIDDEN_SEED
from .record import Observations, call, call_keeping, probe

METRICS = ("cosine", "l2")

# --- hidden inputs --------------------------------------------------------------------------------------

VALUE_CASES: tuple[tuple[str, int, int, int, int, str, torch.dtype], ...] = (
    # (kind, queries, gallery, dim, k, metric, dtype)
    ("gaussian", 7, 40, 16, 5, "cosine", torch.float32),
    ("gaussian", 7, 40, 16, 5, "l2", torch.float32),
    ("relu", 5, 60, 32, 8, "cosine", torch.float32),
    ("relu", 5, 60, 32, 8, "l2", torch.float32),
    ("gaussian", 4, 25, 300, 1, "cosine", torch.float64),
    ("relu", 4, 25, 300, 3, "l2", torch.float64),
)
"""Cases of the value check: random query and gallery features."""


def features(kind: str, n: int, dim: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, dim)`` hidden features: ``"gaussian"``, or ``"relu"`` (non-negative, with exact zeros, none all zero)."""
    generator = torch.Generator().manual_seed(HIDDEN_SEED + seed)
    x = torch.randn(n, dim, generator=generator, dtype=torch.float64) + 0.3
    if kind == "relu":
        x = x.clamp_min(0)
        x[:, 0] += 0.5  # no vector is all zero
    return x.to(dtype)


def value_case(index: int) -> tuple[torch.Tensor, torch.Tensor, int, str]:
    """``(query, gallery, k, metric)`` of :data:`VALUE_CASES` ``[index]``."""
    kind, queries, gallery, dim, k, metric, dtype = VALUE_CASES[index]
    return features(kind, queries, dim, 2 * index, dtype), features(kind, gallery, dim, 2 * index + 1, dtype), k, metric


def tie_case(metric: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(query, gallery, k)`` with exact ties: small integer vectors, the gallery holding exact copies of some
    rows (and, for L2, rows at the same distance from the query), shuffled by a fixed permutation."""
    generator = torch.Generator().manual_seed(HIDDEN_SEED + 40)
    base = torch.randint(0, 10, (6, 8), generator=generator).double()
    base[:, 0] += 1  # no zero vector; distinct rows are far from any tie (tests/test_embeddings_checks.py)
    rows = [base[i % 6] for i in (0, 1, 2, 0, 3, 0, 1, 4, 5, 2, 1, 3)]
    query = torch.stack([base[0], base[1], base[3]])
    if metric == "l2":  # the query's coordinates 1 and 2 swapped: the same L2 distance to every query below
        swapped = [row.clone() for row in rows[:4]]
        for row in swapped:
            row[[1, 2]] = row[[2, 1]]
        rows += swapped
        query = query.clone()
        query[:, 2] = query[:, 1]
    gallery = torch.stack(rows)
    order = torch.randperm(len(gallery), generator=generator)
    return query.float(), gallery[order].float(), 6


def knn_case(index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, str]:
    """``(train_feats, train_labels, test_feats, test_labels, k, metric)`` of :data:`KNN_CASES` ``[index]``:
    clustered features (one centre per class, overlapping clusters) with labels in ``range(classes)``."""
    train_n, test_n, dim, classes, k, metric, dtype = KNN_CASES[index]
    generator = torch.Generator().manual_seed(HIDDEN_SEED + 60 + index)
    centres = torch.randn(classes, dim, generator=generator, dtype=torch.float64).abs() * 1.5
    train_labels = torch.randint(0, classes, (train_n,), generator=generator)
    test_labels = torch.randint(0, classes, (test_n,), generator=generator)
    train = (centres[train_labels] + torch.randn(train_n, dim, generator=generator, dtype=torch.float64)).clamp_min(0)
    test = (centres[test_labels] + torch.randn(test_n, dim, generator=generator, dtype=torch.float64)).clamp_min(0)
    train[:, 0] += 0.5
    test[:, 0] += 0.5
    return train.to(dtype), train_labels, test.to(dtype), test_labels, k, metric


KNN_CASES: tuple[tuple[int, int, int, int, int, str, torch.dtype], ...] = (
    # (train, test, dim, classes, k, metric, dtype)
    (60, 30, 8, 4, 1, "cosine", torch.float32),
    (60, 30, 8, 4, 5, "cosine", torch.float32),
    (60, 30, 8, 4, 4, "l2", torch.float32),
    (80, 41, 12, 6, 6, "cosine", torch.float64),
    (80, 41, 12, 6, 7, "l2", torch.float32),
    (50, 25, 6, 3, 2, "cosine", torch.float32),
)
"""Cases of the kNN check; even ``k`` makes vote ties (the smallest label wins)."""


# --- the probes ------------------------------------------------------------------------------------------


def _untouched(tensors: dict[str, torch.Tensor], originals: dict[str, torch.Tensor]) -> dict[str, bool]:
    return {name: bool(torch.equal(tensors[name], originals[name])) for name in tensors}


def _neighbours(
    student: Callable[..., Any], query: torch.Tensor, gallery: torch.Tensor, k: int, metric: str
) -> Observations:
    """One call on copies of ``query`` and ``gallery``: the returned value, and whether the copies are unchanged."""
    mine = {"query": query.clone(), "gallery": gallery.clone()}
    outcome = call(student, mine["query"], mine["gallery"], k, metric)
    return {"call": outcome, "untouched": _untouched(mine, {"query": query, "gallery": gallery})}


@probe
def check_nearest_neighbours(student: Callable[..., Any]) -> Observations:
    """``nearest_neighbours(query, gallery, k, metric)`` on unseen features, both metrics, float32 and float64."""
    return {"cases": [_neighbours(student, *value_case(i)) for i in range(len(VALUE_CASES))]}


@probe
def check_nearest_neighbours_conventions(student: Callable[..., Any]) -> Observations:
    """The conventions, on galleries with exact ties: the order of every gallery row (``k`` = the gallery size)
    and of the first ``k``, the caller's tensors unchanged, an unknown metric refused with ``ValueError``."""
    ties = {}
    for metric in METRICS:
        query, gallery, k = tie_case(metric)
        ties[metric] = {
            "all": _neighbours(student, query, gallery, len(gallery), metric),
            "top": _neighbours(student, query, gallery, k, metric),
        }
    query, gallery, _, _ = value_case(0)
    outcome, _ = call_keeping(student, query.clone(), gallery.clone(), 3, "manhattan")
    raised = outcome.get("error", "")
    return {"ties": ties, "unknown_metric": {"error": raised, "raised_value_error": raised.startswith("ValueError")}}


def _float_facts(value: Any) -> tuple[str, float | None]:
    """An accuracy as plain data: its type's name and its value as a float where it has one (Python and numpy
    numbers, one-element tensors)."""
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        return type(value).__name__, None
    try:
        return type(value).__name__, float(value)
    except (TypeError, ValueError, RuntimeError):
        return type(value).__name__, None


@probe
def check_knn_accuracy(student: Callable[..., Any]) -> Observations:
    """``knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric)`` on unseen clustered
    features: odd and even ``k`` (vote ties), both metrics, float32 and float64."""

    def accuracy(*case: Any) -> tuple[str, float | None]:
        return _float_facts(student(*case))

    return {"cases": [call(accuracy, *knn_case(index)) for index in range(len(KNN_CASES))]}
