"""The references of notebook 09_embeddings agree with scikit-learn, its hidden inputs test what they should, and
its hidden checks accept correct answers and reject wrong ones (the bugs a student writes are in
``tests/test_scoring_accuracy.py``; here: the shape of what comes back, and the records themselves)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from grader_tests.judges import embeddings as grader
from grader_tests.judges import verdict
from grader_tests.kernel import embeddings as probes
from grader_tests.kernel.record import Probe

SKLEARN = grader.SKLEARN_METRIC


def nearest_neighbours(query, gallery, k, metric="cosine"):
    """Module-level, as in the notebook: knn_accuracy below calls it through the module's globals."""
    return grader.nearest_neighbours(query, gallery, k, metric)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k, metric="cosine"):
    indices, _ = nearest_neighbours(test_feats, train_feats, k, metric)
    votes = torch.nn.functional.one_hot(train_labels[indices], int(train_labels.max()) + 1).sum(dim=1)
    return (votes.argmax(dim=1) == test_labels).float().mean().item()


def _judged(check: Probe, student) -> str | None:
    """The verdict of the trusted judge on what the probe records, as grading gives it."""
    from grader_tests.judges.records import decode
    from grader_tests.kernel.record import encode

    _, observations = decode(encode(check.name, check.probe(student)))
    return verdict(check.name, observations)


# --- the references agree with scikit-learn ----------------------------------------------------------------


@pytest.mark.parametrize("metric", probes.METRICS)
def test_reference_neighbours_are_sklearns(metric):
    generator = torch.Generator().manual_seed(0)
    query, gallery = torch.randn(9, 12, generator=generator), torch.randn(50, 12, generator=generator)
    indices, distances = grader.nearest_neighbours(query.double(), gallery.double(), 7, metric)
    expected_d, expected_i = (
        NearestNeighbors(n_neighbors=7, metric=SKLEARN[metric], algorithm="brute")
        .fit(gallery.double().numpy())
        .kneighbors(query.double().numpy())
    )
    assert torch.equal(indices, torch.from_numpy(expected_i))
    np.testing.assert_allclose(distances.numpy(), expected_d, atol=1e-12)


def test_reference_ties_go_to_the_smaller_index():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    indices, _ = grader.nearest_neighbours(torch.tensor([[1.0, 0.0]]), gallery, 5, "cosine")
    assert indices.tolist() == [[0, 2, 3, 1, 4]]  # (1, 0) and its multiples: cosine ignores the length
    indices, _ = grader.nearest_neighbours(torch.tensor([[0.0, 0.0]]), gallery, 4, "l2")
    assert indices.tolist() == [[0, 1, 2, 4]]  # four rows at distance 1, then (2, 0)
    with pytest.raises(ValueError, match="metric"):
        grader.nearest_neighbours(gallery, gallery, 1, "cityblock")


@pytest.mark.parametrize("index", range(len(probes.KNN_CASES)))
def test_reference_knn_accuracy_is_sklearns(index):
    train, train_labels, test, test_labels, k, metric = probes.knn_case(index)
    classifier = KNeighborsClassifier(n_neighbors=k, metric=SKLEARN[metric], algorithm="brute")
    expected = classifier.fit(train.double().numpy(), train_labels.numpy()).score(
        test.double().numpy(), test_labels.numpy()
    )
    assert grader.knn_accuracy(train, train_labels, test, test_labels, k, metric) == pytest.approx(expected, abs=1e-6)


def test_a_tie_of_votes_goes_to_the_smallest_label():
    train = torch.tensor([[1.0, 0.1], [1.0, 0.2], [1.0, 0.3], [1.0, 0.4]])
    labels = torch.tensor([3, 1, 3, 1])  # the two nearest vote 3 and 1
    assert grader.knn_accuracy(train, labels, torch.tensor([[1.0, 0.1]]), torch.tensor([1]), 2, "l2") == 1.0
    classifier = KNeighborsClassifier(n_neighbors=2, metric="euclidean", algorithm="brute").fit(
        train.numpy(), labels.numpy()
    )
    assert classifier.predict(np.array([[1.0, 0.1]])).tolist() == [1]


# --- the hidden inputs test what they should ---------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(probes.VALUE_CASES)))
def test_value_cases_leave_float32_no_choice(index):
    """float32 arithmetic (cdist's matrix-product path included) finds the same rows as float64, with distances
    well within the judge's tolerance: no near tie lets a correct answer pick other rows. (Rows closer than the
    tolerance would be accepted in either order anyway.)"""
    query, gallery, k, metric = probes.value_case(index)
    exact_i, exact_d = grader.nearest_neighbours(query.double(), gallery.double(), k, metric)
    q, g = query.float(), gallery.float()
    if metric == "cosine":
        d = 1 - torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(g, dim=1).T
    else:
        d = torch.cdist(q, g)  # the matrix-product path for more than 25 rows
    d, order = d.sort(dim=1, stable=True)
    assert torch.equal(order[:, :k], exact_i)
    full = grader.distances(query.double(), gallery.double(), metric).numpy()
    assert (d[:, :k].double() - exact_d).abs().max() < grader._tolerance(full) / 10


@pytest.mark.parametrize("metric", probes.METRICS)
def test_tie_cases_tie_exactly_or_not_at_all(metric):
    """Equal distances are exact (the same bits however computed); all other gaps are large; topk breaks the
    ties otherwise than the stable rule (so the conventions check can tell them apart)."""
    query, gallery, k = probes.tie_case(metric)
    d = grader.distances(query.double(), gallery.double(), metric)
    for row in d:
        gaps = row.sort().values.diff()
        assert (gaps == 0).sum() > 0 or metric == "cosine" and (gaps < 1e-12).sum() > 0
        assert gaps[gaps > 1e-12].min() > 1e-3
    expected, _ = grader.nearest_neighbours(query.double(), gallery.double(), k, metric)
    assert not torch.equal(d.topk(k, largest=False).indices, expected)


def test_some_knn_cases_have_ties_of_votes():
    differs = [
        grader._accuracy_nearest_wins_ties(*probes.knn_case(index))
        != pytest.approx(grader.knn_accuracy(*probes.knn_case(index)), abs=1e-6)
        for index in range(len(probes.KNN_CASES))
    ]
    assert sum(differs) >= 2


def test_hidden_features_have_no_zero_rows():
    for index in range(len(probes.VALUE_CASES)):
        query, gallery, _, _ = probes.value_case(index)
        assert (query.abs().sum(1) > 0).all() and (gallery.abs().sum(1) > 0).all()


# --- the checks: correct answers pass, wrong ones fail with a reason ---------------------------------------


def test_the_references_pass_every_check():
    assert _judged(probes.check_nearest_neighbours, nearest_neighbours) is None
    assert _judged(probes.check_nearest_neighbours_conventions, nearest_neighbours) is None
    assert _judged(probes.check_knn_accuracy, knn_accuracy) is None


def test_checks_run_outside_grading_and_raise():
    probes.check_nearest_neighbours(nearest_neighbours)
    with pytest.raises(AssertionError, match="not implemented yet"):
        probes.check_knn_accuracy(lambda *args: (_ for _ in ()).throw(NotImplementedError("write knn_accuracy")))


def _returning(transform):
    def student(query, gallery, k, metric="cosine"):
        return transform(*nearest_neighbours(query, gallery, k, metric))

    return student


@pytest.mark.parametrize(
    ("student", "phrase"),
    [
        (_returning(lambda i, d: i), "should return a pair"),
        (_returning(lambda i, d: (i.numpy(), d)), "should be a torch.Tensor"),
        (_returning(lambda i, d: (i.float(), d)), "should be integers"),
        (_returning(lambda i, d: (i.T, d.T)), "has shape"),
        (_returning(lambda i, d: (i, d.double().sqrt())), "distances are not"),
        (_returning(lambda i, d: (i.flip(1), d.flip(1))), "not in order"),
        (_returning(lambda i, d: (i[:, :1].expand_as(i), d)), "same gallery row twice"),
        (_returning(lambda i, d: (i, d * float("nan"))), "nan"),
    ],
)
def test_value_check_rejects(student, phrase):
    message = _judged(probes.check_nearest_neighbours, student)
    assert message is not None and phrase.lower() in message.lower(), message


def test_conventions_check_is_not_the_value_check():
    """A wrong value (squared L2) keeps the conventions cell; a value right but unstable loses only it."""

    def squared(query, gallery, k, metric="cosine"):
        indices, distances = nearest_neighbours(query, gallery, k, metric)
        return indices, distances**2

    assert _judged(probes.check_nearest_neighbours_conventions, squared) is None
    assert _judged(probes.check_nearest_neighbours, squared) is not None


@pytest.mark.parametrize(
    ("student", "phrase"),
    [
        (lambda *args: torch.tensor([0.5, 0.5]), "should return a number"),
        (lambda *args: "high", "should return a number"),
        (lambda *args: 3.0, "not a count"),
        (lambda *args: 0.5, "wrong accuracy"),
    ],
)
def test_knn_check_rejects(student, phrase):
    message = _judged(probes.check_knn_accuracy, student)
    assert message is not None and phrase.lower() in message.lower(), message


def test_knn_check_accepts_numpy_and_tensor_numbers():
    assert _judged(probes.check_knn_accuracy, lambda *args: np.float32(knn_accuracy(*args))) is None
    assert _judged(probes.check_knn_accuracy, lambda *args: torch.tensor(knn_accuracy(*args))) is None
