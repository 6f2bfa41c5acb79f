"""What every judge shares: comparisons with the reference whose messages name the problem, not the answer, and
the judge's side of the side-effect facts of :mod:`grader_tests.kernel.facts`."""

from __future__ import annotations

from typing import Any

import torch

from grader_tests.kernel.record import Observations

from .records import Foreign, Recorded, restore, returned


def assert_tensor_close(actual: Any, expected: torch.Tensor, what: str, *, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Compare a student's tensor with the reference; the message names the problem, not the answer."""
    if isinstance(actual, Recorded):
        actual = actual.tensor
    if not isinstance(actual, torch.Tensor):
        name = actual.type_name if isinstance(actual, Foreign) else type(actual).__name__
        raise AssertionError(f"{what} should be a torch.Tensor, got {name}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not actual.is_floating_point():
        raise AssertionError(f"{what} should hold floats, got {actual.dtype}")
    actual = actual.detach().to(expected.dtype)
    if not torch.isfinite(actual).all():
        raise AssertionError(f"{what} contains NaN or infinite values")
    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    except AssertionError:
        raise AssertionError(f"{what} has the right shape but wrong values on inputs you have not seen") from None


def tolerance(expected: torch.Tensor) -> dict[str, float]:
    """Relative to the reference's scale, so tiny gradients of a random model are compared meaningfully."""
    scale = float(expected.abs().max())
    if expected.dtype == torch.float64:
        return {"rtol": 1e-7, "atol": 1e-9 * scale}
    return {"rtol": 1e-4, "atol": 1e-5 * scale}


def assert_no_parameter_grads(sizes: dict[str, float], what: str) -> None:
    """Judge side: every ``.grad`` is ``None`` or zero (``zero_grad(set_to_none=False)`` is fine too)."""
    left = [name for name, size in sizes.items() if size != 0]
    if left:
        raise AssertionError(
            f"{what} leaves gradients in the .grad of {len(left)} model parameter(s) (e.g. {left[0]}): "
            "compute the gradient you need with torch.autograd.grad, which writes no .grad"
        )


def assert_modes_restored(after: list[bool], before: list[bool], what: str) -> None:
    if list(after) != list(before):
        raise AssertionError(
            f"{what} changes the model's train/eval mode: compute in eval mode but give the caller back the mode "
            "it had (helpers.evaluating(model) does both)"
        )


def assert_input_untouched(state: dict[str, Any], original: torch.Tensor, what: str) -> None:
    """Judge side of :func:`input_state`, against the trusted original image."""
    image = restore(state["image"])
    if image.requires_grad or state["has_grad"]:
        raise AssertionError(f"{what} turns on requires_grad (or leaves a .grad) on the caller's image: work on a copy")
    if image.tensor.shape != original.shape or not torch.equal(image.tensor, original):
        raise AssertionError(f"{what} changes the values of the caller's image")


def agree(actual: Any, own: Any) -> bool | None:
    """Whether two results of the student's *own* function are the same tensor (up to float error: relative to
    ``own``'s scale, NaN equal to NaN); ``None`` where either is not a tensor (the value check says so)."""
    if not isinstance(actual, Recorded) or not isinstance(own, Recorded):
        return None
    a, b = actual.tensor.detach(), own.tensor.detach()
    if a.shape != b.shape:
        return False
    if not (a.is_floating_point() and b.is_floating_point()) or b.numel() == 0:
        return torch.equal(a, b)
    a, b = a.double(), b.double()
    scale = float(b.nan_to_num(0.0, 0.0, 0.0).abs().max())
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * scale, equal_nan=True))


def assert_computed_in_eval_mode(observations: Observations, what: str) -> None:
    """Judge side of :func:`~grader_tests.kernel.facts.call_in_train_mode`: the call on a model in train mode
    ran, restored the modes and returned what the student's own function returns on that model in eval mode.

    No reference here: whether the values are right is the value check's cell, not this one."""
    actual = returned(observations["call"], f"{what} on a model in train mode")
    assert_modes_restored(observations["after"], observations["before"], what)
    own = returned(observations["in_eval_mode"], f"{what} on a model in eval mode")
    if agree(actual, own) is False:
        raise AssertionError(
            f"{what} on a model in train mode returns another result than on the same model in eval mode: compute "
            "in eval mode (BatchNorm must use its running statistics)"
        )


def assert_batched(batches: list[int], images: int, batch_size: int, what: str, noun: str, extra_calls: int) -> None:
    """Judge side of :class:`~grader_tests.kernel.facts.BatchRecorder`: the model saw at most ``batch_size``
    images per call, in about ``ceil(images / batch_size)`` calls (``extra_calls`` more allowed: a clean image, a
    shorter last batch)."""
    batches = [int(b) for b in batches]
    if not batches:
        raise AssertionError(f"{what} never called the model it was given (nor a copy of it)")
    if max(batches) > batch_size:
        raise AssertionError(f"{what} called the model with {max(batches)} images at once; batch_size was {batch_size}")
    allowed = -(-images // batch_size) + extra_calls
    if len(batches) > allowed:
        raise AssertionError(
            f"{what} called the model {len(batches)} times for {images} {noun} with batch_size={batch_size}: stack "
            f"the {noun} into batches of batch_size images (at most {allowed} calls)"
        )


def matches_mistake(actual: object, candidate: torch.Tensor, limits: dict[str, float]) -> bool:
    """Whether the student's recorded tensor equals ``candidate`` (a known mistake) within ``limits``."""
    tensor = getattr(actual, "tensor", None)
    if not isinstance(tensor, torch.Tensor) or tensor.shape != candidate.shape or not tensor.is_floating_point():
        return False
    return bool(torch.allclose(tensor.detach().to(candidate.dtype), candidate, **limits))
