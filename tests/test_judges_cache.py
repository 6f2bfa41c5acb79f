"""The judges compute each reference once per process (it depends only on the hidden case, never on the student)
and reuse it for every student: judging twice computes it once, and judging a wrong answer, whose explanation
reads the cached reference, leaves it as it was."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from grader_tests import judges
from grader_tests.judges import (
    attributions,
    class_visualization,
    dissection,
    embeddings,
    gradcam,
    occlusion,
    parameters,
    saliency,
    sanity_checks,
    shortcut,
    verdict,
)
from grader_tests.kernel import attributions as attributions_probes
from grader_tests.kernel import class_visualization as class_visualization_probes
from grader_tests.kernel import dissection as dissection_probes
from grader_tests.kernel import embeddings as embeddings_probes
from grader_tests.kernel import gradcam as gradcam_probes
from grader_tests.kernel import occlusion as occlusion_probes
from grader_tests.kernel import parameters as parameters_probes
from grader_tests.kernel import saliency as saliency_probes
from grader_tests.kernel import sanity_checks as sanity_checks_probes
from grader_tests.kernel import shortcut as shortcut_probes
from grader_tests.kernel.record import Probe


def _judged(check: Probe, student: Callable[..., Any]) -> str | None:
    """The verdict of the trusted judge on what the probe records, as grading gives it."""
    from grader_tests.judges.records import decode
    from grader_tests.kernel.record import encode

    _, observations = decode(encode(check.name, check.probe(student)))
    return verdict(check.name, observations)


def _chunked_iou(activations: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The reference IoU, its sums taken over chunks of 8 images (as the text asks: the memory check)."""
    intersection = union = 0
    for start in range(0, len(activations), 8):
        part = slice(start, start + 8)
        units = dissection.unit_masks(activations[part], thresholds, tuple(masks.shape[-2:]))
        i, u = dissection._counts(units, masks[part].bool(), (0, 3, 4))
        intersection, union = intersection + i, union + u
    return intersection / union.clamp_min(1)


# --- judging twice computes each reference once ----------------------------------------------------------------

_cue_drops = shortcut.cue_drops
_params_num = parameters.get_module_params_num

COUNTED = {
    # judge module, its reference function, the cached function(s) over it, the probe, a right answer, how many
    # times the reference runs for one student
    "class_visualization": (class_visualization, "class_visualization", ["_visualization_reference"],
                            class_visualization_probes.check_class_visualization,
                            class_visualization.class_visualization, len(class_visualization_probes.VIS_CASES)),
    "fool": (class_visualization, "fool", ["_fool_reference"], class_visualization_probes.check_fool,
             class_visualization.fool, len(class_visualization_probes.FOOL_CASES)),
    "cue_class": (shortcut, "cue_drops", ["_cue_reference"], shortcut_probes.check_cue_class,
                  lambda model, images, cell, grid: _cue_drops(model, images, cell, grid).argmax(1),
                  len(shortcut_probes.CLASS_CASES)),
    "occlusion_drops": (occlusion, "occlusion_drops", ["_drops_reference"], occlusion_probes.check_occlusion_drops,
                        occlusion.occlusion_drops, len(occlusion_probes.DROP_CASES)),
    "smoothgrad": (attributions, "smoothgrad", ["_smoothgrad_reference"], attributions_probes.check_smoothgrad,
                   attributions.smoothgrad, len(attributions_probes.SMOOTHGRAD_CASES)),
    "dissection_iou": (dissection, "dissection_iou", ["_iou_references"], dissection_probes.check_dissection_iou,
                       _chunked_iou, len(dissection_probes.iou_cases())),
    "perturbation_curve": (sanity_checks, "perturbation_curve", ["_curve_reference"],
                           sanity_checks_probes.check_perturbation_curve, sanity_checks.perturbation_curve,
                           len(sanity_checks_probes.CURVE_CASES)),
    "saliency_map": (saliency, "saliency_map", ["_map_references"], saliency_probes.check_saliency_map,
                     saliency.saliency_map, sum(len(saliency_probes.cases(dtype)) for dtype in saliency_probes.DTYPES)),
    "get_module_params_num": (parameters, "get_module_params_num", ["_reference_counts"],
                              parameters_probes.check_get_module_params_num, lambda module: _params_num(module),
                              len(parameters_probes.modules())),
}


@pytest.mark.parametrize("case", sorted(COUNTED))
def test_judging_two_students_computes_the_reference_once(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module, reference, cached, check, right, count = COUNTED[case]
    original, calls = getattr(module, reference), []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, reference, counting)
    for name in cached:
        getattr(module, name).cache_clear()
    try:
        assert _judged(check, right) is None
        assert len(calls) == count
        assert _judged(check, right) is None
        assert len(calls) == count, "the second student recomputed the reference"
    finally:
        for name in cached:  # drop what was computed through the counting stand-in
            getattr(module, name).cache_clear()


# --- a wrong answer leaves the cached references unchanged -----------------------------------------------------


def _copy(value: Any) -> Any:
    """A deep copy of a cached value's tensors and arrays (containers rebuilt, everything else as is)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(item) for item in value)
    return value


def _assert_same(value: Any, copy: Any) -> None:
    if isinstance(value, torch.Tensor):
        assert value.dtype == copy.dtype and value.shape == copy.shape and torch.equal(value, copy)
    elif isinstance(value, np.ndarray):
        assert not value.flags.writeable and np.array_equal(value, copy)
    elif isinstance(value, dict):
        assert value.keys() == copy.keys()
        for key in value:
            _assert_same(value[key], copy[key])
    elif isinstance(value, (list, tuple)):
        assert len(value) == len(copy)
        for item, item_copy in zip(value, copy, strict=True):
            _assert_same(item, item_copy)
    else:
        assert value == copy


def _vis_wrong_penalty(model, start, classes, steps, lr, l2_reg, *rest):
    return class_visualization.class_visualization(model, start, classes, steps, lr, -l2_reg, *rest)


def _nearest_doubled(query, gallery, k, metric="cosine"):
    indices, distances = embeddings.nearest_neighbours(query, gallery, k, metric)
    return indices, 2 * distances


def _fool_one_step_more(*args):
    image, steps = class_visualization.fool(*args)
    return image, steps + 1


WRONG = {
    # the probe, a right answer, a wrong one (whose verdict names the mistake: the explanation reads the cached
    # reference), the phrase of that verdict, and every value the judge caches
    "class_visualization": (
        class_visualization_probes.check_class_visualization, class_visualization.class_visualization,
        _vis_wrong_penalty, "wrong sign",
        lambda: [class_visualization._visualization_reference(i)
                 for i in range(len(class_visualization_probes.VIS_CASES))]),
    "fool": (
        class_visualization_probes.check_fool, class_visualization.fool, _fool_one_step_more, "not the number of steps",
        lambda: [class_visualization._fool_reference(i) for i in range(len(class_visualization_probes.FOOL_CASES))]),
    "cue_class": (
        shortcut_probes.check_cue_class, shortcut.cue_class,
        lambda model, images, cell, grid: shortcut.cue_drops(model, images, cell, grid).argmin(1), "smallest drop",
        lambda: [shortcut._cue_reference(i) for i in range(len(shortcut_probes.CLASS_CASES))]),
    "occlusion_drops": (
        occlusion_probes.check_occlusion_drops, occlusion.occlusion_drops,
        lambda *args: -occlusion.occlusion_drops(*args), "sign reversed",
        lambda: [occlusion._drops_reference(i) for i in range(len(occlusion_probes.DROP_CASES))]),
    "perturbation_curve": (
        sanity_checks_probes.check_perturbation_curve, sanity_checks.perturbation_curve,
        lambda model, start, end, saliency_map, class_idx, step, batch_size=16: sanity_checks.perturbation_curve(
            model, start, end, -saliency_map, class_idx, step, batch_size), "least salient",
        lambda: [sanity_checks._curve_reference(i) for i in range(len(sanity_checks_probes.CURVE_CASES))]),
    "dissection_iou": (
        dissection_probes.check_dissection_iou, _chunked_iou, lambda *args: 2 * _chunked_iou(*args), "wrong IoU",
        lambda: [dissection._iou_references()]),
    "smoothgrad": (
        attributions_probes.check_smoothgrad, attributions.smoothgrad,
        lambda *args: 2 * attributions.smoothgrad(*args), "wrong values",
        lambda: [attributions._smoothgrad_reference(i) for i in range(len(attributions_probes.SMOOTHGRAD_CASES))]),
    "saliency_map": (
        saliency_probes.check_saliency_map, saliency.saliency_map,
        lambda model, image, class_idx: 2 * saliency.saliency_map(model, image, class_idx), "wrong values",
        lambda: [saliency._map_references()]),
    "vis_gradcam": (
        gradcam_probes.check_vis_gradcam, gradcam.vis_gradcam, lambda vgg, img: 2 * gradcam.vis_gradcam(vgg, img),
        "wrong values", lambda: [gradcam._vis_gradcam_references()]),
    "nearest_neighbours": (
        embeddings_probes.check_nearest_neighbours, embeddings.nearest_neighbours, _nearest_doubled,
        "distances are not",
        lambda: [embeddings._sklearn_distances(i) for i in range(len(embeddings_probes.VALUE_CASES))]),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_answer_leaves_the_cached_reference_unchanged(case: str) -> None:
    check, right, wrong, phrase, cached = WRONG[case]
    assert _judged(check, right) is None
    before = cached()
    copies = _copy(before)
    reason = _judged(check, wrong)
    assert reason is not None and phrase in reason, reason
    after = cached()
    assert all(a is b for a, b in zip(after, before, strict=True)), "the judge did not reuse its cached reference"
    _assert_same(after, copies)
    assert _judged(check, right) is None



# --- warm computes every reference before the first student ----------------------------------------------------


def test_warm_computes_every_cached_reference() -> None:
    judges.warm()
    modules = [importlib.import_module(f"grader_tests.judges.{m.name}") for m in pkgutil.iter_modules(judges.__path__)]
    cached = {f"{module.__name__}.{name}": function.cache_info().currsize
              for module in modules for name, function in vars(module).items() if hasattr(function, "cache_info")}
    assert set(cached) == {f"{function.__module__}.{function.__name__}" for function, _ in judges._REFERENCES}
    assert len(cached) == 30
    assert [name for name, size in cached.items() if size == 0] == [], "a reference warm() does not compute"


def test_after_warm_judging_computes_no_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    judges.warm()
    calls: list[str] = []
    for case, (module, reference, _, _, _, _) in COUNTED.items():
        original = getattr(module, reference)
        monkeypatch.setattr(module, reference, lambda *a, _original=original, _case=case, **k: (
            calls.append(_case), _original(*a, **k))[1])
    for case, (_, _, _, check, right, _) in COUNTED.items():
        assert _judged(check, right) is None, case
    assert calls == []
