"""Notebook ``09_embeddings``: reference implementations and the judges of its hidden checks. Instructor-only:
never released.

Conventions (stated in the notebook):

* ``nearest_neighbours(query (Q, D), gallery (N, D), k, metric)`` returns ``(indices, distances)``, both
  ``(Q, k)``: for each query the ``k`` gallery rows nearest first, ``indices`` integers into the gallery and
  ``distances`` their distances. ``metric="cosine"``: ``1 - cos(q, g)``; ``metric="l2"``: ``||q - g||_2`` (not
  squared), as scikit-learn's ``"cosine"`` and ``"euclidean"``. Equal distances: the smaller gallery index first.
  The caller's tensors are left unchanged; any other metric raises ``ValueError``.
* ``knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine")``: the share of test
  rows whose majority label among their ``k`` nearest training rows is their label, a float in ``[0, 1]``; a tie
  of votes goes to the smallest label (scikit-learn's ``KNeighborsClassifier`` with uniform weights).

The probes of :mod:`grader_tests.kernel.embeddings` record what the student's functions return on unseen
features; the judges here compare with scikit-learn (``NearestNeighbors``, ``pairwise_distances``,
``KNeighborsClassifier``, brute force) and, for the tie rule, with the reference below.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from grader_tests.kernel.embeddings import KNN_CASES, METRICS, VALUE_CASES, knn_case, tie_case, value_case
from grader_tests.kernel.record import Observations

from . import judge, reference
from .records import Foreign, Recorded, returned

SKLEARN_METRIC = {"cosine": "cosine", "l2": "euclidean"}

# --- references -----------------------------------------------------------------------------------------


def distances(query: torch.Tensor, gallery: torch.Tensor, metric: str) -> torch.Tensor:
    """``(Q, N)`` distances: ``1 - cos`` or the Euclidean distance."""
    if metric == "cosine":
        return 1 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T
    if metric == "l2":
        return torch.cdist(query, gallery, compute_mode="donot_use_mm_for_euclid_dist")
    raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")


def nearest_neighbours(
    query: torch.Tensor, gallery: torch.Tensor, k: int, metric: str = "cosine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices, distances)``, each ``(Q, k)``: nearest first, equal distances by the smaller index (stable sort)."""
    d = distances(query, gallery, metric)
    d_sorted, order = torch.sort(d, dim=1, stable=True)
    return order[:, :k], d_sorted[:, :k]


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    k: int,
    metric: str = "cosine",
) -> float:
    """Accuracy of the majority vote of the ``k`` nearest training rows; vote ties to the smallest label."""
    indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
    votes = F.one_hot(train_labels[indices], int(train_labels.max()) + 1).sum(dim=1)  # (Q, classes)
    return (votes.argmax(dim=1) == test_labels).float().mean().item()  # argmax: the first maximum


# --- helpers of the judges ------------------------------------------------------------------------------


def _name(value: Any) -> str:
    if isinstance(value, Recorded):
        return f"a tensor of shape {tuple(value.tensor.shape)}"
    if isinstance(value, Foreign):
        return f"a {value.type_name}"
    return f"a {type(value).__name__}"


def _pair(outcome: dict[str, Any], what: str, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The returned ``(indices, distances)`` as tensors, after checking their types, shapes and dtypes."""
    value = returned(outcome, what)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise AssertionError(f"{what} should return a pair (indices, distances), got {_name(value)}")
    indices, dists = value
    for label, item in (("indices", indices), ("distances", dists)):
        if not isinstance(item, Recorded):
            raise AssertionError(f"{what}: {label} should be a torch.Tensor, got {_name(item)}")
        if tuple(item.tensor.shape) != shape:
            raise AssertionError(f"{what}: {label} has shape {tuple(item.tensor.shape)}, expected {shape} (queries, k)")
    if indices.tensor.is_floating_point() or indices.tensor.dtype == torch.bool or indices.tensor.is_complex():
        raise AssertionError(f"{what}: indices should be integers (int64), got {indices.tensor.dtype}")
    if not dists.tensor.is_floating_point():
        raise AssertionError(f"{what}: distances should be floats, got {dists.tensor.dtype}")
    return indices.tensor.long(), dists.tensor.double()


def _tolerance(reference: np.ndarray) -> float:
    """Absolute tolerance on distances: float32 arithmetic (``cdist``'s matrix-product path included)."""
    return 1e-4 * max(1.0, float(np.abs(reference).max()))


@reference(range(len(VALUE_CASES)))
def _sklearn_distances(index: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's distances on :data:`VALUE_CASES` ``[index]``: from every query to every gallery row ``(Q, N)``,
    and to its ``k`` nearest rows ``(Q, k)``. Computed once per process, as they depend only on the hidden case;
    read-only arrays."""
    from sklearn.metrics import pairwise_distances  # imported when needed: scipy's OpenBLAS threads slow torch down
    from sklearn.neighbors import NearestNeighbors

    query, gallery, k, metric = value_case(index)
    q, g = query.double().numpy(), gallery.double().numpy()
    every = pairwise_distances(q, g, metric=SKLEARN_METRIC[metric])  # (Q, N)
    nearest, _ = NearestNeighbors(n_neighbors=k, metric=SKLEARN_METRIC[metric], algorithm="brute").fit(g).kneighbors(q)
    every.flags.writeable = nearest.flags.writeable = False
    return every, nearest


def _assert_neighbours(indices: torch.Tensor, dists: torch.Tensor, index: int, k: int, metric: str, what: str) -> None:
    """The student's answer on :data:`VALUE_CASES` ``[index]`` against scikit-learn: valid indices, the k nearest
    (any order among equal distances), nearest first, and the distances of the returned rows."""
    every, nearest = _sklearn_distances(index)
    gallery_size = every.shape[1]
    tol = _tolerance(every)
    if indices.min() < 0 or indices.max() >= gallery_size:
        raise AssertionError(f"{what}: indices should index the gallery rows (0 .. {gallery_size - 1})")
    if any(len(set(row.tolist())) != len(row) for row in indices):
        raise AssertionError(f"{what}: a query gets the same gallery row twice; each neighbour should appear once")
    chosen = np.take_along_axis(every, indices.numpy(), axis=1)  # the true distances of the returned rows
    if np.abs(chosen - nearest).max() > tol:
        if np.abs(np.sort(chosen, axis=1) - nearest).max() <= tol:
            raise AssertionError(f"{what}: the neighbours are right but not in order: nearest first")
        raise AssertionError(
            f"{what}: the returned rows are not the {k} nearest gallery rows (compare the {metric} distance; "
            "the smallest distances first)"
        )
    if not torch.isfinite(dists).all():
        raise AssertionError(f"{what}: distances contain NaN or infinite values")
    if np.abs(dists.numpy() - chosen).max() > tol:
        detail = {"cosine": "1 - cosine similarity", "l2": "the Euclidean distance ||q - g||, not its square"}[metric]
        raise AssertionError(f"{what}: the neighbours are right but their distances are not ({detail})")


# --- the judges -----------------------------------------------------------------------------------------


@judge
def check_nearest_neighbours(observations: Observations) -> None:
    """Indices and distances on unseen features, both metrics, float32 and float64, against scikit-learn."""
    for index, facts in enumerate(observations["cases"]):
        query, gallery, k, metric = value_case(index)
        what = (
            f"nearest_neighbours(query {tuple(query.shape)}, gallery {tuple(gallery.shape)}, k={k}, metric={metric!r})"
        )
        indices, dists = _pair(facts["call"], what, (len(query), k))
        _assert_neighbours(indices, dists, index, k, metric, what)
    if len(observations["cases"]) != len(VALUE_CASES):
        raise AssertionError("nearest_neighbours: the check did not run on every case")


@judge
def check_nearest_neighbours_conventions(observations: Observations) -> None:
    """Ties to the smaller index, the caller's tensors unchanged, ``ValueError`` for an unknown metric.

    No reference here (whether the values are right is the value check's cell): the student's *own* distances
    decide which rows tie. With ``k`` equal to the gallery size every row comes back once, and rows of equal
    returned distance must come in increasing index order; the first ``k`` rows must be the first ``k`` of that
    order (so the tie at the ``k``-th place is broken the same way)."""
    for metric in METRICS:
        query, gallery, k = tie_case(metric)
        facts = observations["ties"][metric]
        for part in ("all", "top"):
            if not all(facts[part]["untouched"].values()):
                changed = [name for name, same in facts[part]["untouched"].items() if not same]
                raise AssertionError(
                    f"nearest_neighbours changes the caller's {' and '.join(changed)} (metric={metric!r}): normalise "
                    "or subtract into new tensors, not in place"
                )
        what = f"nearest_neighbours with k equal to the gallery size (metric={metric!r})"
        every, own = _pair(facts["all"]["call"], what, (len(query), len(gallery)))
        if any(sorted(row.tolist()) != list(range(len(gallery))) for row in every):
            raise AssertionError(f"{what} should return every gallery row once")
        tol = 1e-6 * max(1.0, float(own.abs().max()))
        for row, dists in zip(every, own):
            same = (dists[:, None] - dists[None, :]).abs() <= tol
            later = torch.ones_like(same).triu(1)
            if (same & later & (row[:, None] > row[None, :])).any():
                raise AssertionError(
                    f"nearest_neighbours (metric={metric!r}): rows at equal distance should come in the order of "
                    "their gallery index, the smaller first (a stable sort: torch.sort(..., stable=True) or "
                    "np.argsort(..., kind='stable'))"
                )
        what = f"nearest_neighbours on a gallery with exact ties (metric={metric!r}, k={k})"
        top, _ = _pair(facts["top"]["call"], what, (len(query), k))
        if not torch.equal(top, every[:, :k]):
            raise AssertionError(
                f"{what}: the first {k} neighbours differ from the first {k} with k equal to the gallery size; "
                "rows at equal distance should come in the order of their gallery index, the smaller first"
            )
    unknown = observations["unknown_metric"]
    if not unknown["raised_value_error"]:
        got = f"raised {unknown['error']}" if unknown["error"] else "returned a result"
        raise AssertionError(f"nearest_neighbours(..., metric='manhattan') should raise ValueError; it {got}")


def _accuracy(outcome: dict[str, Any], what: str) -> float:
    type_name, value = returned(outcome, what)
    if value is None:
        raise AssertionError(f"{what} should return a number (the share of correct test rows), got a {type_name}")
    return value


@reference(range(len(KNN_CASES)))
def _sklearn_accuracy(index: int) -> float:
    """scikit-learn's accuracy on :data:`KNN_CASES` ``[index]``: computed once per process, as it depends only on
    the hidden case."""
    from sklearn.neighbors import KNeighborsClassifier

    train, train_labels, test, test_labels, k, metric = knn_case(index)
    classifier = KNeighborsClassifier(n_neighbors=k, metric=SKLEARN_METRIC[metric], algorithm="brute")
    classifier.fit(train.double().numpy(), train_labels.numpy())
    return classifier.score(test.double().numpy(), test_labels.numpy())


@judge
def check_knn_accuracy(observations: Observations) -> None:
    """Accuracies on unseen clustered features against scikit-learn's ``KNeighborsClassifier`` (brute force,
    uniform weights): odd and even ``k``, both metrics."""
    if len(observations["cases"]) != len(KNN_CASES):
        raise AssertionError("knn_accuracy: the check did not run on every case")
    for index, outcome in enumerate(observations["cases"]):
        train, train_labels, test, test_labels, k, metric = knn_case(index)
        what = f"knn_accuracy(..., k={k}, metric={metric!r}) on {len(test)} test rows"
        value = _accuracy(outcome, what)
        expected = _sklearn_accuracy(index)
        if not 0 <= value <= 1:
            raise AssertionError(f"{what} returned {value:g}: an accuracy is a share in [0, 1], not a count")
        if abs(value - expected) > 1e-6:
            tie_rule = (
                abs(value - _accuracy_nearest_wins_ties(train, train_labels, test, test_labels, k, metric)) <= 1e-6
            )
            hint = ": a tie of votes goes to the smallest label" if tie_rule else ""
            raise AssertionError(f"{what} gives a wrong accuracy{hint}")


def _accuracy_nearest_wins_ties(
    train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor, k: int, metric: str
) -> float:
    """The accuracy with another tie rule (the nearest of the tied labels wins), to name that mistake."""
    indices, _ = nearest_neighbours(test.double(), train.double(), k, metric)
    predicted = []
    for row in train_labels[indices].tolist():
        counts = {label: row.count(label) for label in row}
        predicted.append(next(label for label in row if counts[label] == max(counts.values())))
    return (torch.tensor(predicted) == test_labels).double().mean().item()
