"""The references of notebook 08_dissection are right (thresholds against NumPy's percentiles, the IoU against an
independent NumPy implementation with its own bilinear interpolation), the hidden inputs can tell each known mistake
from the right answer, and the judges accept every usual quantile definition and reject the mistakes with a message
that names them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grader_tests.judges import dissection as grader
from grader_tests.judges.records import decode
from grader_tests.kernel import dissection as probes
from grader_tests.kernel.record import call, encode

# --- an independent implementation ----------------------------------------------------------------------------------


def _bilinear_weights(small: int, large: int) -> np.ndarray:
    """``(large, small)``: the weights of bilinear interpolation with ``align_corners=False`` along one axis (output
    pixel ``i`` sits at input coordinate ``(i + 0.5) * small / large - 0.5``, clamped at the border)."""
    weights = np.zeros((large, small))
    for i in range(large):
        x = min(max((i + 0.5) * small / large - 0.5, 0.0), small - 1)
        left = int(np.floor(x))
        right = min(left + 1, small - 1)
        weights[i, left] += 1 - (x - left)
        weights[i, right] += x - left
    return weights


def numpy_iou(activations: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    a, t, m = activations.double().numpy(), thresholds.double().numpy(), masks.numpy()
    rows, columns = _bilinear_weights(a.shape[2], m.shape[2]), _bilinear_weights(a.shape[3], m.shape[3])
    upsampled = np.einsum("Hh,nkhw,Ww->nkHW", rows, a, columns)
    units = upsampled >= t[None, :, None, None]
    intersection = np.einsum("nkhw,nchw->kc", units.astype(float), m.astype(float))
    union = units.sum((0, 2, 3))[:, None] + m.sum((0, 2, 3))[None, :] - intersection
    return intersection / np.maximum(union, 1)


@pytest.mark.parametrize("case", range(len(probes.iou_cases())))
def test_reference_iou_against_numpy(case):
    spec = probes.iou_cases()[case]
    expected = numpy_iou(spec["activations"], spec["thresholds"], spec["masks"])
    np.testing.assert_allclose(grader.dissection_iou(spec["activations"], spec["thresholds"], spec["masks"]).numpy(),
                               expected, atol=1e-12)


def test_numpy_bilinear_is_torch_bilinear():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    ours = np.einsum("Hh,nkhw,Ww->nkHW", _bilinear_weights(5, 20), x.numpy(), _bilinear_weights(7, 56))
    np.testing.assert_allclose(F.interpolate(x, size=(20, 56), mode="bilinear", align_corners=False).numpy(), ours,
                               atol=1e-12)


@pytest.mark.parametrize("case", range(len(probes.threshold_cases())))
def test_reference_thresholds_are_numpy_percentiles_and_leave_the_top_share(case):
    spec = probes.threshold_cases()[case]
    activations, q = spec["activations"], spec["q"]
    values = activations.transpose(0, 1).flatten(1).double().numpy()
    thresholds = grader.unit_thresholds(activations, q)
    np.testing.assert_allclose(thresholds.double().numpy(), np.percentile(values, 100 * q, axis=1), rtol=1e-6, atol=1e-6)
    above = (values > thresholds.double().numpy()[:, None]).sum(1)
    assert (np.abs(above - (1 - q) * values.shape[1]) <= 1).all()


def test_the_planted_case_has_its_answers():
    spec = probes.iou_cases()[0]
    iou = grader.dissection_iou(spec["activations"], spec["thresholds"], spec["masks"])
    assert iou[0, 0] == 1 and (iou[:, 3] == 0).all() and 0 < iou[1, 1] < 1


def test_iou_is_one_pass_and_the_mean_of_per_image_ious_is_not():
    """Dataset-wide sums, one division; on the planted case the mean of per-image IoUs is far from it."""
    spec = probes.iou_cases()[0]
    a, t, m = spec["activations"], spec["thresholds"], spec["masks"]
    units = grader.unit_masks(a, t, tuple(m.shape[-2:]))
    inter = (units.unsqueeze(2) & m.unsqueeze(1)).sum((0, 3, 4)).double()
    union = (units.unsqueeze(2) | m.unsqueeze(1)).sum((0, 3, 4)).double()
    torch.testing.assert_close(grader.dissection_iou(a, t, m), inter / union)
    assert not torch.allclose(grader._per_image_mean(a, t, m), inter / union, atol=1e-2)


def test_hidden_thresholds_equal_no_activation():
    """So ``>`` and ``>=`` give the same masks, before and after upsampling."""
    for spec in probes.iou_cases():
        a, t = spec["activations"], spec["thresholds"]
        assert not (a == t.view(1, -1, 1, 1)).any()
        up = F.interpolate(a, size=tuple(spec["masks"].shape[-2:]), mode="bilinear", align_corners=False)
        assert torch.equal(up >= t.view(1, -1, 1, 1), up > t.view(1, -1, 1, 1))


@pytest.mark.parametrize("mistake", range(len(grader.IOU_MISTAKES)), ids=[m for _, m in grader.IOU_MISTAKES])
def test_every_named_mistake_differs_from_the_reference_on_some_hidden_case(mistake):
    variant, _ = grader.IOU_MISTAKES[mistake]
    differs = []
    for spec in probes.iou_cases():
        a, t, m = spec["activations"], spec["thresholds"], spec["masks"]
        differs.append(not torch.allclose(variant(a, t, m), grader.dissection_iou(a, t, m), rtol=0, atol=1e-2))
    assert any(differs)


# --- the judges through a record, as in grading ---------------------------------------------------------------------


def _judge(name: str, observations: dict) -> str | None:
    _, restored = decode(encode(f"dissection.{name}", observations))
    try:
        getattr(grader, name)(restored)
    except AssertionError as failure:
        return str(failure)
    return None


def _threshold_observations(function) -> dict:
    return {"cases": [{"call": call(function, case["activations"], case["q"]), "activations": case["activations"]}
                      for case in probes.threshold_cases()]}


def _iou_observations(function) -> dict:
    return probes.check_dissection_iou.probe(function)


def chunked_reference(activations, thresholds, masks, chunk=8):
    """The reference IoU, its sums taken over chunks of ``chunk`` images (as the text asks)."""
    intersection = union = 0
    for start in range(0, len(activations), chunk):
        part = slice(start, start + chunk)
        units = grader.unit_masks(activations[part], thresholds, tuple(masks.shape[-2:]))
        i, u = grader._counts(units, masks[part].bool(), (0, 3, 4))
        intersection, union = intersection + i, union + u
    return intersection / union.clamp_min(1)


def _flat(a: torch.Tensor) -> torch.Tensor:
    return a.transpose(0, 1).flatten(1)


QUANTILES = {
    "torch.quantile, linear": lambda a, q: torch.quantile(_flat(a), q, dim=1),
    "torch.quantile, nearest": lambda a, q: torch.quantile(_flat(a), q, dim=1, interpolation="nearest"),
    "torch.quantile, lower": lambda a, q: torch.quantile(_flat(a), q, dim=1, interpolation="lower"),
    "torch.quantile, higher": lambda a, q: torch.quantile(_flat(a), q, dim=1, interpolation="higher"),
    "kthvalue at ceil(q M)": lambda a, q: _flat(a).kthvalue(int(np.ceil(q * _flat(a).shape[1])), dim=1).values,
    "kthvalue at round(q M)": lambda a, q: _flat(a).kthvalue(max(1, round(q * _flat(a).shape[1])), dim=1).values,
    "the smallest of the top (1 - q) M": lambda a, q: _flat(a).topk(max(1, int((1 - q) * _flat(a).shape[1])), dim=1)
    .values[:, -1],
    "sorted, index int(q M)": lambda a, q: _flat(a).sort(dim=1).values[:, min(int(q * _flat(a).shape[1]), _flat(a).shape[1] - 1)],
    "numpy inverted_cdf": lambda a, q: torch.from_numpy(np.percentile(_flat(a).numpy(), 100 * q, axis=1,
                                                                        method="inverted_cdf")),
    "numpy median_unbiased": lambda a, q: torch.from_numpy(np.percentile(_flat(a).numpy(), 100 * q, axis=1,
                                                                           method="median_unbiased")),
}


@pytest.mark.parametrize("label", list(QUANTILES))
def test_every_usual_quantile_definition_passes(label):
    assert _judge("check_unit_thresholds", _threshold_observations(QUANTILES[label])) is None


THRESHOLD_BUGS = {
    "the bottom 0.5%": (lambda a, q: torch.quantile(_flat(a), 1 - q, dim=1), "wrong end"),
    "per image, averaged": (lambda a, q: torch.quantile(a.flatten(2), q, dim=2).mean(0), "per image"),
    "per image, not combined": (lambda a, q: torch.quantile(a.flatten(2), q, dim=2), "per image and unit"),
    "one threshold for all units": (lambda a, q: torch.quantile(a.flatten(), q).expand(a.shape[1]).clone(),
                                    "one threshold for all units"),
    "after upsampling 4 times": (lambda a, q: torch.quantile(_flat(F.interpolate(a, scale_factor=4, mode="bilinear")), q,
                                                             dim=1), "not the q quantiles"),
    "the maximum": (lambda a, q: _flat(a).amax(dim=1), "not the q quantiles"),
    "per image mean then quantile over units": (lambda a, q: torch.quantile(a.mean((2, 3)), q, dim=0),
                                                "not the q quantiles"),
}


@pytest.mark.parametrize("label", list(THRESHOLD_BUGS))
def test_threshold_mistakes_fail_with_their_name(label):
    function, phrase = THRESHOLD_BUGS[label]
    message = _judge("check_unit_thresholds", _threshold_observations(function))
    assert message is not None and phrase in message, message


def test_the_reference_passes_and_a_changed_input_fails():
    assert _judge("check_dissection_iou", _iou_observations(chunked_reference)) is None
    assert _judge("check_unit_thresholds", _threshold_observations(grader.unit_thresholds)) is None

    def in_place(activations, q=0.995):
        activations.clamp_(min=0)
        return torch.quantile(_flat(activations), q, dim=1)

    observations = {"cases": []}
    for case in probes.threshold_cases():
        outcome = call(in_place, case["activations"], case["q"])
        observations["cases"].append({"call": outcome, "activations": case["activations"]})
    assert "changes the activations" in _judge("check_unit_thresholds", observations)


def test_all_the_upsampled_maps_at_once_fail_the_memory_bound_and_chunks_of_8_pass():
    verdict = _judge("check_dissection_iou", _iou_observations(grader.dissection_iou))  # right values, all at once
    assert verdict is not None and "MB in one tensor" in verdict and "chunks" in verdict, verdict
    in_float64 = lambda a, t, m: chunked_reference(a.double(), t, m, chunk=8)  # noqa: E731
    assert _judge("check_dissection_iou", _iou_observations(in_float64)) is None
    assert probes.upsampled_bytes() == 96 * 64 * 64 * 64 * 4  # the 100 MB the text quotes


@pytest.mark.parametrize("mistake", range(len(grader.IOU_MISTAKES)), ids=[m for _, m in grader.IOU_MISTAKES])
def test_iou_mistakes_are_named(mistake):
    variant, message = grader.IOU_MISTAKES[mistake]
    verdict = _judge("check_dissection_iou", _iou_observations(lambda a, t, m: variant(a, t, m).float()))
    assert verdict is not None and message in verdict, verdict


def test_the_notebook_solution_matches_the_reference_on_notebook_sized_inputs():
    """The solution skips maps with no cell at or above T_k (a bilinear value is a mean of 4 cells): exact anyway."""
    import json
    from pathlib import Path

    notebook = json.loads((Path(__file__).resolve().parents[1] / "solutions/08_dissection/dissection.ipynb").read_text())
    namespace = {"torch": torch, "F": F}
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") in ("unit_thresholds", "dissection_iou"):
            exec("".join(cell["source"]), namespace)  # noqa: S102 - the course's own solution cells
    g = torch.Generator().manual_seed(3)
    activations = torch.randn(10, 16, 14, 14, generator=g).exp()
    masks = torch.rand(10, 5, 112, 112, generator=g) > 0.7
    thresholds = namespace["unit_thresholds"](activations, 0.99)
    torch.testing.assert_close(namespace["dissection_iou"](activations, thresholds, masks).double(),
                               grader.dissection_iou(activations, thresholds, masks), atol=1e-6, rtol=0)
