"""The references of notebook 13_sanity_checks agree with independent implementations (``scipy.stats.spearmanr``,
a curve built image by image, ``numpy.trapezoid`` and ``sklearn.metrics.auc``) and with their identities, its hidden
inputs test what they should, and its hidden checks accept correct answers and reject wrong ones (the bugs a
student writes are in ``tests/test_scoring_accuracy.py``; here: the batching rule, the records, and what comes
back). The notebook's own cascading randomisation is checked here too: it is not graded, but the notebook's
finding rests on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import auc

from grader_tests.judges import sanity_checks as grader
from grader_tests.judges import verdict
from grader_tests.kernel import sanity_checks as probes
from grader_tests.kernel.record import Probe

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions/13_sanity_checks/sanity_checks.ipynb"


def _judged(check: Probe, student) -> str | None:
    """The verdict of the trusted judge on what the probe records, as grading gives it."""
    from grader_tests.judges.records import decode
    from grader_tests.kernel.record import encode

    _, observations = decode(encode(check.name, check.probe(student)))
    return verdict(check.name, observations)


# --- rank correlation: scipy's spearmanr and its identities --------------------------------------------------


@pytest.mark.parametrize("index", range(len(probes.RANK_CASES)))
def test_reference_rank_correlation_is_scipys_spearmanr(index):
    a, b = probes.rank_pair(index)
    ours = grader.rank_correlation(a, b)
    theirs = [spearmanr(x.flatten().numpy(), y.flatten().numpy())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-12)


def test_reference_ranks_are_scipys_average_ranks_and_the_ordinal_ones_are_not():
    values = torch.tensor([3.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, -1.0])
    np.testing.assert_array_equal(grader.average_ranks(values).numpy(), rankdata(values.numpy()))
    np.testing.assert_array_equal(grader.ordinal_ranks(values).numpy(), rankdata(values.numpy(), method="ordinal"))
    assert grader.average_ranks(torch.tensor([0.0, 0.0, 1.0, 2.0])).tolist() == [1.5, 1.5, 3.0, 4.0]


def test_rank_correlation_identities():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 30, generator=generator), torch.rand(4, 30, generator=generator)
    ones = torch.ones(4, dtype=torch.float64)
    torch.testing.assert_close(grader.rank_correlation(a, a), ones)
    torch.testing.assert_close(grader.rank_correlation(a, -a), -ones)
    torch.testing.assert_close(grader.rank_correlation(a, a.exp() * 3 - 1), ones)  # only the order counts
    torch.testing.assert_close(grader.rank_correlation(a, b), grader.rank_correlation(b, a))
    # without ties, Spearman's shortcut 1 - 6 sum d^2 / (n (n^2 - 1)) holds
    d = grader.ordinal_ranks(a[0]) - grader.ordinal_ranks(b[0])
    shortcut = 1 - 6 * d.pow(2).sum() / (30 * (30**2 - 1))
    torch.testing.assert_close(grader.rank_correlation(a[:1], b[:1])[0], shortcut)


def test_the_rank_cases_hold_ties_where_they_should_and_are_never_constant():
    for index, (shape, kind, _) in enumerate(probes.RANK_CASES):
        a, b = probes.rank_pair(index)
        assert a.shape == b.shape == shape
        for maps in (a, b):
            flat = maps.flatten(1)
            assert (flat.amax(1) > flat.amin(1)).all(), "no constant map"
            tied = any(row.unique().numel() < row.numel() for row in flat)
            assert tied == (kind != "continuous"), (index, kind)
        ordinal = grader.rank_correlation(a, b, grader.ordinal_ranks)
        if kind != "continuous":
            assert not torch.allclose(ordinal, grader.rank_correlation(a, b), atol=1e-3), "the ties change the answer"


# --- perturbation curves: built image by image, and the identities -------------------------------------------


def _by_hand(model, start, end, saliency, class_idx, step):
    """The curve one image at a time: a pixel is changed once its saliency is among the k * step largest."""
    n = saliency.numel()
    values = saliency.flatten().tolist()
    ranked = sorted(range(n), key=lambda i: (-values[i], i))  # decreasing, ties by position
    points = []
    for k in range(-(-n // step) + 1):
        image = start.clone()
        for pixel in ranked[: min(k * step, n)]:
            r, c = divmod(pixel, saliency.shape[1])
            image[:, r, c] = end[:, r, c]
        with torch.no_grad():
            points.append(model.eval()(image[None]).softmax(1)[0, class_idx])
    return torch.stack(points)


@pytest.mark.parametrize("index", [0, 2, 4])
def test_reference_curve_is_the_curve_built_image_by_image(index):
    model, start, end, saliency, class_idx, step, batch_size = probes.curve_case(index)
    ours = grader.perturbation_curve(model, start, end, saliency, class_idx, step, batch_size)
    torch.testing.assert_close(ours, _by_hand(model, start, end, saliency, class_idx, step), rtol=0, atol=1e-6)


def test_curve_identities_on_the_course_model(pretrained):
    from helpers.data import make_dataset

    data = make_dataset(1, seed=1301, crop=112)
    image, label = data.images[0], int(data.labels[0])
    grey = torch.zeros_like(image)
    saliency = torch.rand(112, 112, generator=torch.Generator().manual_seed(0))
    deletion = grader.perturbation_curve(pretrained, image, grey, saliency, label, 3136)
    with torch.no_grad():
        p_image, p_grey = pretrained(torch.stack([image, grey])).softmax(1)[:, label]
    assert deletion.shape == (5,)
    torch.testing.assert_close(deletion[[0, -1]], torch.stack([p_image, p_grey]), rtol=0, atol=1e-6)
    # an increasing transform of the map changes nothing (only the order counts)
    torch.testing.assert_close(grader.perturbation_curve(pretrained, image, grey, saliency.exp() * 5, label, 3136), deletion)
    # insertion of the reversed order is deletion read backwards, point by point: the same images
    insertion = grader.perturbation_curve(pretrained, grey, image, -saliency, label, 3136)
    torch.testing.assert_close(insertion, deletion.flip(0), rtol=0, atol=1e-6)
    # an oracle order (the object first) deletes faster than its reverse
    mask = data.masks[0].float() + 0.01 * saliency
    assert grader.curve_area(grader.perturbation_curve(pretrained, image, grey, mask, label, 1568), 1568, 12544) < \
        grader.curve_area(grader.perturbation_curve(pretrained, image, grey, -mask, label, 1568), 1568, 12544)


def test_the_curve_cases_clip_the_last_step_and_cover_deletion_and_insertion():
    clipped = []
    for index, (_, _, kind, step, _, _) in enumerate(probes.CURVE_CASES):
        model, start, end, saliency, class_idx, step, batch_size = probes.curve_case(index)
        assert saliency.unique().numel() == saliency.numel(), "no ties"
        clipped.append(saliency.numel() % step != 0)
        curve = grader.perturbation_curve(model, start, end, saliency, class_idx, step, batch_size)
        assert curve.max() - curve.min() > 1e-3, "the curve moves"
        reverse = grader.perturbation_curve(model, start, end, -saliency, class_idx, step, batch_size)
        assert (curve - reverse).abs().max() > 1e-4, "the order matters"
    assert any(clipped) and not all(clipped)
    assert {kind for _, _, kind, *_ in probes.CURVE_CASES} == {"deletion", "insertion", "blend"}


# --- curve areas: numpy and scikit-learn ------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(probes.AREA_CASES)))
def test_reference_area_is_numpys_trapezoid_and_sklearns_auc(index):
    curve, step, pixels = probes.area_curve(index)
    x = np.minimum(np.arange(len(curve)) * step, pixels) / pixels
    ours = float(grader.curve_area(curve, step, pixels))
    np.testing.assert_allclose(ours, np.trapezoid(curve.double().numpy(), x), rtol=1e-12)
    np.testing.assert_allclose(ours, auc(x, curve.double().numpy()), rtol=1e-12)


def test_area_with_equal_steps_is_the_rise_formula():
    """RISE's ``auc(arr) = (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (len(arr) - 1)`` for equal steps."""
    curve = torch.rand(9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rise = (curve.sum() - curve[0] / 2 - curve[-1] / 2) / (len(curve) - 1)
    torch.testing.assert_close(grader.curve_area(curve, 512, 4096), rise)
    assert float(grader.curve_area(torch.tensor([0.0, 1.0, 1.0]), 60, 100)) == pytest.approx(0.7)


# --- the hidden checks -------------------------------------------------------------------------------------------


def test_the_reference_passes_every_hidden_check():
    assert _judged(probes.check_rank_correlation, grader.rank_correlation) is None
    assert _judged(probes.check_perturbation_curve, grader.perturbation_curve) is None
    assert _judged(probes.check_perturbation_curve_batched, grader.perturbation_curve) is None
    assert _judged(probes.check_curve_area, grader.curve_area) is None


def test_scipy_numpy_and_sklearn_as_answers_pass():
    def with_scipy(maps_a, maps_b):
        return torch.tensor([spearmanr(a.flatten().numpy(), b.flatten().numpy())[0] for a, b in zip(maps_a, maps_b)])

    def with_sklearn(curve, step, pixels):
        return auc(np.minimum(np.arange(len(curve)) * step, pixels) / pixels, curve.numpy())

    assert _judged(probes.check_rank_correlation, with_scipy) is None
    assert _judged(probes.check_curve_area, with_sklearn) is None


def test_ordinal_ranks_and_least_salient_first_are_named():
    reason = _judged(probes.check_rank_correlation,
                     lambda a, b: grader.rank_correlation(a, b, grader.ordinal_ranks))
    assert reason is not None and "average" in reason
    reason = _judged(probes.check_perturbation_curve,
                     lambda model, start, end, saliency, *rest: grader.perturbation_curve(model, start, end, -saliency, *rest))
    assert reason is not None and "decreasing saliency" in reason


def test_one_image_per_forward_pass_fails_the_batching_check_only():
    def one_at_a_time(model, start, end, saliency, class_idx, step, batch_size=16):
        return grader.perturbation_curve(model, start, end, saliency, class_idx, step, batch_size=1)

    assert _judged(probes.check_perturbation_curve, one_at_a_time) is None
    reason = _judged(probes.check_perturbation_curve_batched, one_at_a_time)
    assert reason is not None and "calls" in reason and "batch_size" in reason


def test_batches_larger_than_batch_size_fail_the_batching_check():
    def all_at_once(model, start, end, saliency, class_idx, step, batch_size=16):
        return grader.perturbation_curve(model, start, end, saliency, class_idx, step, batch_size=10_000)

    reason = _judged(probes.check_perturbation_curve_batched, all_at_once)
    assert reason is not None and "images at once" in reason


def test_an_even_spacing_of_the_points_is_named_and_a_wrong_type_too():
    def evenly(curve, step, pixels):
        return float(torch.trapezoid(curve.double(), dx=1 / (len(curve) - 1)))

    reason = _judged(probes.check_curve_area, evenly)
    assert reason is not None and "evenly" in reason
    reason = _judged(probes.check_curve_area, lambda curve, step, pixels: [0.5])
    assert reason is not None and "float" in reason
    reason = _judged(probes.check_rank_correlation, lambda a, b: grader.rank_correlation(a, b).numpy())
    assert reason is not None and "torch.Tensor" in reason


# --- the notebook's cascading randomisation (not graded) ----------------------------------------------------------


def _notebook_namespace() -> dict:
    """The notebook's ``methods`` cell up to its first use of the models: BLOCKS and cascading_randomization."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    (source,) = ["".join(c["source"]) for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "methods"]
    namespace: dict = {}
    exec("import copy, warnings\nimport torch\n" + source.split("\nMETHODS = ")[0], namespace)  # noqa: S102
    return namespace


def test_the_notebooks_cascade_randomises_cumulatively_from_the_top_and_leaves_the_model(pretrained):
    namespace = _notebook_namespace()
    blocks = namespace["BLOCKS"]
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    state = torch.random.get_rng_state()
    copies = namespace["cascading_randomization"](pretrained, blocks)
    assert torch.equal(torch.random.get_rng_state(), state), "the global random state is left as it was"
    assert all(torch.equal(v, before[k]) for k, v in pretrained.state_dict().items()), "the model is left as it was"
    assert len(copies) == len(blocks) and blocks[0] == ("fc",)
    modules = [name for block in blocks for name in block]
    assert modules[-2:] == ["backbone.conv1", "backbone.bn1"], "from the top down to the input"
    for k, net in enumerate(copies):
        assert not net.training
        random = {name for block in blocks[: k + 1] for name in block}
        for key, value in net.state_dict().items():
            module = key.rpartition(".")[0]
            if key.endswith("num_batches_tracked"):
                continue
            changed = not torch.equal(value, before[key])
            assert changed == (module in random), (k, key)
        if k:  # cumulative: the upper blocks keep the random values of the step before
            for name in random - set(blocks[k]):
                for key, value in net.get_submodule(name).state_dict().items():
                    assert torch.equal(value, copies[k - 1].get_submodule(name).state_dict()[key])


# --- signed maps, copies of the model, float32 fractions -------------------------------------------------------


def test_the_hidden_maps_are_signed_so_ranking_by_magnitude_fails_with_its_name():
    for index in range(len(probes.CURVE_CASES)):
        saliency = probes.curve_case(index)[3]
        assert (saliency < 0).float().mean() > 0.4 and (saliency > 0).float().mean() > 0.4

    def by_magnitude(model, start, end, saliency, class_idx, step, batch_size=16):
        return grader.perturbation_curve(model, start, end, saliency.abs(), class_idx, step, batch_size)

    message = _judged(probes.check_perturbation_curve, by_magnitude)
    assert message is not None and "|saliency|" in message, message


def test_a_deep_copy_of_the_model_in_eval_mode_passes_the_batching_check():
    import copy

    def on_a_copy(model, start, end, saliency, class_idx, step, batch_size=16):
        return grader.perturbation_curve(copy.deepcopy(model).eval(), start, end, saliency, class_idx, step, batch_size)

    assert _judged(probes.check_perturbation_curve_batched, on_a_copy) is None
    assert _judged(probes.check_perturbation_curve, on_a_copy) is None


def test_float32_fractions_pass_and_the_tolerance_is_derived_from_float32():
    def float32_fractions(curve, step, pixels):
        fractions = torch.tensor([min(k * step, pixels) / pixels for k in range(len(curve))], dtype=torch.float32)
        return float(torch.trapezoid(curve.float(), fractions))

    assert _judged(probes.check_curve_area, float32_fractions) is None
    worst = max(abs(float32_fractions(*probes.area_curve(i)) - float(grader.curve_area(*probes.area_curve(i))))
                / grader.area_tolerance(probes.area_curve(i)[0]) for i in range(len(probes.AREA_CASES)))
    assert 0 < worst < 1  # float32 rounding shows, and stays inside the bound

    def off_by_the_tolerance(curve, step, pixels):
        return float(grader.curve_area(curve, step, pixels)) + 2 * grader.area_tolerance(curve)

    assert "wrong values" in _judged(probes.check_curve_area, off_by_the_tolerance)
