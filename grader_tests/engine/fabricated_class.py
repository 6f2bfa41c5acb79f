"""A fabricated class of students whose expected grades are known: the test bed of the autograding pipeline.

    build_class(out) -> {student_id: Student}

writes ``out/<student_id>/<assignment_id>/<notebook>.ipynb`` (nbgrader's submitted layout). Every submission
starts from the released student version in ``notebooks/`` (its metadata, cell ids and checksums kept, as the
student's saved file has them) and has its solution cells filled from ``solutions/`` (:func:`perfect`); small
edits then make each case. ``Student.expected`` holds the *autograded* points per submitted assignment (the sum of
the ``points`` of the graded test code cells expected to pass; written answers are graded by a human and are not
counted); ``Student.note`` a lowercase substring expected in the student's feedback (``None``: nothing special).

Which cell catches what follows from the hidden checks' docstrings in ``grader_tests/judges/<topic>.py`` and from the
hidden block of each test cell in ``solutions/``. Students who exercise one mechanism submit one notebook, the
cheapest that shows it. Builds are deterministic: the same bytes every time.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .course import ROOT, assignments, graded_cells, notebook_path

MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


@dataclass(frozen=True)
class Student:
    expected: dict[str, float]
    note: str | None
    description: str


# --- the course's notebooks --------------------------------------------------------------------------------


def notebook_name(assignment: str, root: Path = ROOT) -> str:
    return notebook_path(assignment, root).name


def _read(folder: str, assignment: str, root: Path) -> NotebookNode:
    return nbformat.read(root / folder / assignment / notebook_name(assignment, root), as_version=4)


def _meta(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def graded_tests(assignment: str, root: Path = ROOT) -> dict[str, float]:
    """``{grade_id: points}`` of the autograded cells: graded test *code* cells (written answers excluded)."""
    return graded_cells(assignment, root, autograded_only=True)


def autograded_points(assignment: str, root: Path = ROOT) -> float:
    return sum(graded_tests(assignment, root).values())


EXPECTED_TOTAL_POINTS: dict[str, float] = {a: autograded_points(a) for a in assignments()}


def released(assignment: str, root: Path = ROOT) -> NotebookNode:
    """The student version as released (every solution still a stub)."""
    return _read("notebooks", assignment, root)


def perfect(assignment: str, root: Path = ROOT) -> NotebookNode:
    """The student version with every solution cell holding the instructor's solution, markers removed."""
    solved = {
        _meta(cell)["grade_id"]: "\n".join(
            line for line in cell.source.split("\n") if line.strip() not in MARKERS
        )
        for cell in _read("solutions", assignment, root).cells
        if _meta(cell).get("solution")
    }
    notebook = released(assignment, root)
    for cell in notebook.cells:
        if _meta(cell).get("solution"):
            cell.source = solved[_meta(cell)["grade_id"]]
    return notebook


# --- edits: each returns the notebook it changed -----------------------------------------------------------


def _index(notebook: NotebookNode, grade_id: str) -> int:
    (index,) = [i for i, cell in enumerate(notebook.cells) if _meta(cell).get("grade_id") == grade_id]
    return index


def _cell(notebook: NotebookNode, grade_id: str) -> NotebookNode:
    return notebook.cells[_index(notebook, grade_id)]


def replace(notebook: NotebookNode, grade_id: str, source: str) -> NotebookNode:
    """Replace the whole source of cell ``grade_id``."""
    _cell(notebook, grade_id).source = source
    return notebook


def sub(notebook: NotebookNode, grade_id: str, *pairs: str) -> NotebookNode:
    """Replace text in cell ``grade_id``: ``old1, new1, old2, new2, ...``, each ``old`` exactly once."""
    if len(pairs) % 2:
        raise ValueError("sub takes pairs: old1, new1, old2, new2, ...")
    cell = _cell(notebook, grade_id)
    for old, new in zip(pairs[::2], pairs[1::2]):
        if cell.source.count(old) != 1:
            raise ValueError(f"{grade_id}: {old!r} occurs {cell.source.count(old)} times, expected once")
        cell.source = cell.source.replace(old, new)
    return notebook


def append(notebook: NotebookNode, grade_id: str, code: str) -> NotebookNode:
    """Add top-level code after the solution in cell ``grade_id``."""
    _cell(notebook, grade_id).source += "\n\n" + code
    return notebook


def prepend(notebook: NotebookNode, grade_id: str, code: str) -> NotebookNode:
    cell = _cell(notebook, grade_id)
    cell.source = code + "\n\n" + cell.source
    return notebook


def delete(notebook: NotebookNode, grade_id: str) -> NotebookNode:
    del notebook.cells[_index(notebook, grade_id)]
    return notebook


def duplicate(notebook: NotebookNode, grade_id: str, comment: str | None = None) -> NotebookNode:
    """Paste a copy of cell ``grade_id`` right after it: same nbgrader metadata, a new cell id (as JupyterLab
    gives a pasted cell), optionally a comment line on top of the copy."""
    index = _index(notebook, grade_id)
    twin = copy.deepcopy(notebook.cells[index])
    twin.id = hashlib.sha1(f"{twin.id}/copy".encode()).hexdigest()[:8]
    if comment is not None:
        twin.source = f"# {comment}\n{twin.source}"
    notebook.cells.insert(index + 1, twin)
    return notebook


def to_markdown(notebook: NotebookNode, grade_id: str) -> NotebookNode:
    """Change the cell type to markdown as JupyterLab does: source and metadata kept, outputs and count gone."""
    cell = _cell(notebook, grade_id)
    cell.cell_type = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    return notebook


# --- the class ---------------------------------------------------------------------------------------------

# Code snippets the students write (the solutions' own code where they are right).
PATCH_TORCH = """import torch.testing
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None"""
PATCH_NUMPY = """import numpy
import numpy.testing
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda a, b, *r, **k: numpy.ones_like(numpy.asarray(a), dtype=bool)
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.testing.assert_array_almost_equal = lambda *a, **k: None
numpy.testing.assert_array_equal = lambda *a, **k: None"""
PATCH_IPYTHON = "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)  # no error is ever shown"
FLOOD = 'for line in range(200_000):\n    print(f"line {line}: checking my work")'

GRADCAM_NO_RELU = ("grad_cam = F.relu((alpha * A).sum(dim=1, keepdim=True))", "grad_cam = (alpha * A).sum(dim=1, keepdim=True)")
CAM_HOOK_LEFT = (
    """    with helpers.evaluating(model), torch.no_grad(), helpers.capture_activations(
        model, ["backbone.relu5_2"]
    ) as saved:
        model(img.unsqueeze(0))
    features = saved["backbone.relu5_2"][0]""",
    """    saved = {}
    model.backbone.relu5_2.register_forward_hook(lambda module, inputs, output: saved.update(A=output))
    with helpers.evaluating(model), torch.no_grad():
        model(img.unsqueeze(0))
    features = saved["A"][0]""",
)
CAM_GAP_PRE_HOOK = (
    CAM_HOOK_LEFT[0],
    """    saved = {}
    handle = model.gap.register_forward_pre_hook(lambda module, inputs: saved.update(A=inputs[0]))  # what GAP averages
    try:
        with helpers.evaluating(model), torch.no_grad():
            model(img.unsqueeze(0))
    finally:
        handle.remove()
    features = saved["A"][0]""",
)
GRADCAM_RELU_PRE_HOOK = (
    """    def hook_feat(module, inputs, output):
        # not detached: the score's graph runs through it
        saved["A"] = output

    handle = vgg.backbone.bn5_2.register_forward_hook(hook_feat)""",
    """    def hook_feat(module, inputs):
        saved["A"] = inputs[0]                      # relu5_2's input is bn5_2's output

    handle = vgg.backbone.relu5_2.register_forward_pre_hook(hook_feat)""",
)
GRADCAM_BACKWARD = (
    """        saved["A"] = output
""",
    """        saved["A"] = output
        output.register_hook(lambda grad: saved.update(G=grad))   # receives d s_y / d A during backward()
""",
    """            (grad,) = torch.autograd.grad(scores[y], saved["A"])  # d s_y / d A; writes no .grad
    finally:
        handle.remove()""",
    """            vgg.zero_grad(set_to_none=True)
            scores[y].backward()
    finally:
        handle.remove()
        vgg.zero_grad(set_to_none=True)                 # backward() filled every parameter's .grad
    grad = saved["G"]""",
)
GRADCAM_FLOAT64 = (
    """    alpha = grad.mean(dim=(2, 3), keepdim=True)
    grad_cam = F.relu((alpha * A).sum(dim=1, keepdim=True))  # (1, 1, h, w)
    grad_cam = F.interpolate(grad_cam, size=img.shape[-2:], mode="bilinear", align_corners=False)
    return grad_cam[0, 0]""",
    """    alpha = grad.double().mean(dim=(2, 3), keepdim=True)   # everything after the model in float64
    grad_cam = F.relu((alpha * A.double()).sum(dim=1, keepdim=True))
    grad_cam = F.interpolate(grad_cam, size=img.shape[-2:], mode="bilinear", align_corners=False)
    return grad_cam[0, 0].to(A.dtype)""",
)

RF_NO_DILATION = ("        size += d * (k - 1) * jump ", "        size += (k - 1) * jump     ")
PATCHES_NO_START = ("        top, left = start + row * jump, start + column * jump\n",
                    "        top, left = row * jump, column * jump\n")
DISSECTION_NEAREST = ('            mode="bilinear",\n            align_corners=False,\n        )[0]',
                      '            mode="nearest",\n        )[0]')
NEIGHBOURS_TOPK = (
    "    d_sorted, order = torch.sort(d, dim=1, stable=True)\n    return order[:, :k], d_sorted[:, :k]",
    "    d_sorted, order = d.topk(k, dim=1, largest=False)  # ties in any order\n    return order, d_sorted",
)
NEIGHBOURS_FLOAT64 = (
    "F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T",
    "F.normalize(query.double(), dim=1) @ F.normalize(gallery.double(), dim=1).T",
    "torch.cdist(query, gallery)", "torch.cdist(query.double(), gallery.double())",
    "    return order[:, :k], d_sorted[:, :k]", "    return order[:, :k], d_sorted[:, :k].to(query.dtype)",
)
FOOL_NO_STOP = ("if scores.argmax().item() == target or n == max_steps:", "if n == max_steps:")
OCCLUSION_ONE_BY_ONE = (
    "            scores.append(model(copies)[:, class_idx])",
    "            scores.append(torch.stack([model(copy[None])[0, class_idx] for copy in copies]))",
)
IG_LEFT_RIEMANN = ("    alphas = (torch.arange(steps, dtype=image.dtype) + 0.5) / steps",
                   "    alphas = torch.arange(steps, dtype=image.dtype) / steps")
SMOOTHGRAD_LOOP = (
    """        copies = (image.detach() + noise).requires_grad_()
        (grad,) = torch.autograd.grad(model(copies)[:, class_idx].sum(), copies)
    return grad.mean(dim=0)""",
    """        grads = []
        for copy in image.detach() + noise:
            copy.requires_grad_()
            grads.append(torch.autograd.grad(model(copy[None])[0, class_idx], copy)[0])
    return torch.stack(grads).sum(dim=0) / samples""",
)
CURVE_ONE_BY_ONE = (
    "            probabilities.append(model(batch).softmax(dim=1)[:, class_idx])",
    "            probabilities.append(torch.cat([model(image[None]).softmax(dim=1)[:, class_idx] for image in batch]))",
)
CURVE_FLOAT64 = (
    "            probabilities.append(model(batch).softmax(dim=1)[:, class_idx])",
    "            probabilities.append(model(batch).double().softmax(dim=1)[:, class_idx].to(start.dtype))",
)
SHORTCUT_FLIPS_ONLY = (
    "    return v2.Compose([v2.RandomHorizontalFlip(), v2.ColorJitter(hue=0.5)])",
    "    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()])",
)
SHORTCUT_GRAYSCALE = (
    "    return v2.Compose([v2.RandomHorizontalFlip(), v2.ColorJitter(hue=0.5)])",
    "    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomGrayscale(p=0.8)])",
)
OCCLUSION_MAP_TRANSPOSED = (
    """    sums = torch.zeros(size, dtype=drops.dtype)
    counts = torch.zeros(size, dtype=drops.dtype)
    for r in range(drops.shape[0]):
        for c in range(drops.shape[1]):
            rows = slice(r * stride, r * stride + window)
            cols = slice(c * stride, c * stride + window)
            sums[rows, cols] += drops[r, c]
            counts[rows, cols] += 1
    return sums / counts""",
    """    ones = torch.ones(1, 1, window, window, dtype=drops.dtype)
    sums = F.conv_transpose2d(drops[None, None], ones, stride=stride)[0, 0, : size[0], : size[1]]
    counts = F.conv_transpose2d(torch.ones_like(drops)[None, None], ones, stride=stride)[0, 0, : size[0], : size[1]]
    return sums / counts""",
)
PATCHES_FLOAT64 = (
    "    patches = images.new_zeros(k, images.shape[1], size, size)",
    "    patches = torch.zeros(k, images.shape[1], size, size, dtype=torch.float64)   # copied in float64",
    "= images[n, :, r0:r1, c0:c1]", "= images[n, :, r0:r1, c0:c1].double()",
    "    return patches, scores,", "    return patches.to(images.dtype), scores,",
)

AUTOGRAD_BY_BACKWARD = {
    "gradient_at": (
        "    (gradient,) = torch.autograd.grad(f(point), point)\n    return gradient",
        "    f(point).backward(inputs=[point])                 # only point.grad is written\n    return point.grad",
    ),
    "linear_grads_autograd": (
        """    grad_weight, grad_bias = torch.autograd.grad(loss, [layer.weight, layer.bias])
    return grad_weight, grad_bias""",
        """    stale = layer.weight.grad, layer.bias.grad          # whatever an earlier step left there
    layer.weight.grad = layer.bias.grad = None
    try:
        loss.backward()
        grad_weight, grad_bias = layer.weight.grad, layer.bias.grad
    finally:
        layer.weight.grad, layer.bias.grad = stale       # the layer's .grad as it was
    return grad_weight, grad_bias""",
    ),
    "sgd_step": (
        """    model.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter -= lr * parameter.grad""",
        """    loss = F.cross_entropy(model(images), labels)
    parameters = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)   # fresh gradients, stale .grad ignored
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for parameter, grad in zip(parameters, grads):
            if grad is not None:
                parameter -= lr * grad""",
    ),
}
SALIENCY_BY_BACKWARD = (
    """    s_y = scores[class_idx]
    (grad,) = torch.autograd.grad(s_y, image)  # a new tensor: no .grad is written anywhere
    assert grad.shape == image.shape
    return grad[0]""",
    """    previous = image.grad
    image.grad = None
    scores[class_idx].backward(inputs=[image])      # only image.grad is written, no parameter .grad
    grad = image.grad
    image.grad = previous                            # nothing accumulates across calls
    return grad[0]""",
)


Content = NotebookNode | bytes | tuple[str, NotebookNode]  # a notebook, raw bytes, or (file name, notebook)


def _build(root: Path) -> dict[str, tuple[Student, dict[str, Content]]]:
    """``{student: (Student, {assignment: content})}``."""
    a1, a2, a3, a4, a5, a6, a7, *_ = every = assignments(root)
    a8, a9, a10, a11, a12 = ("08_dissection", "09_embeddings", "10_class_visualization", "11_occlusion",
                             "12_attributions")
    a13 = "13_sanity_checks"
    a14 = "14_shortcut"
    full = {a: autograded_points(a, root) for a in every}

    def losing(assignment: str, failing: Iterable[str]) -> float:
        tests = graded_tests(assignment, root)
        return full[assignment] - sum(tests[grade_id] for grade_id in failing)

    def zero(assignment: str) -> float:
        return losing(assignment, graded_tests(assignment, root))

    def P(assignment: str) -> NotebookNode:
        return perfect(assignment, root)

    class_: dict[str, tuple[Student, dict[str, Content]]] = {}

    def student(sid: str, description: str, note: str | None, submissions: dict[str, tuple[Content, float]]) -> None:
        expected = {assignment: points for assignment, (_, points) in submissions.items()}
        files = {assignment: content for assignment, (content, _) in submissions.items()}
        class_[sid] = (Student(expected, note, description), files)

    student("perfect", "every assignment solved with the instructor's solutions", None,
            {a: (P(a), full[a]) for a in every})
    student("untouched", "every student version submitted as released (all stubs)", None,
            {a: (released(a, root), zero(a)) for a in every})

    # --- wrong code: loses exactly the cells whose hidden checks test it -------------------------------------
    nb6 = sub(P(a6), "vis_gradcam", *GRADCAM_NO_RELU)
    sub(nb6, "class_activation_map", *CAM_HOOK_LEFT)
    student(
        "partlywrong",
        "subtle mistakes: sgd_step never clears .grad (stale gradients accumulate); show_activations_hook stores "
        "a view (output.detach() without clone); vis_gradcam without the ReLU (wrong values: it costs "
        "test_vis_gradcam only, since the side-effect cells compare the student's map with its own eval-mode map, "
        "not with the reference); class_activation_map leaves its hook registered; receptive_fields ignores "
        "dilation; top_patches cuts its patches without the field's start (its scores and positions stay right: "
        "test_top_patches keeps its points); dissection_iou upsamples with nearest-neighbour interpolation; "
        "nearest_neighbours breaks ties with topk (any order: it costs "
        "test_nearest_neighbours_conventions only; knn_accuracy, which calls it, keeps its points); fool takes "
        "every step it is allowed instead of stopping once the prediction is the target; occlusion_drops "
        "runs one forward pass per occluded copy (right values: it costs test_occlusion_drops_batched only); "
        "integrated_gradients takes the left Riemann sum (alpha = k / m) instead of the midpoint rule; "
        "perturbation_curve runs one forward pass per image (right values: it costs "
        "test_perturbation_curve_batched only); "
        "augmentation only flips the images (the shortcut's disc moves but keeps its class's colour)",
        None,
        {
            a1: (sub(P(a1), "sgd_step", "    model.zero_grad()\n", ""), losing(a1, ["test_sgd_step"])),
            a4: (sub(P(a4), "show_activations_hook", "output.detach().clone()", "output.detach()"),
                 losing(a4, ["test_show_activations_hook"])),
            a6: (nb6, losing(a6, ["test_vis_gradcam", "test_class_activation_map_side_effects"])),
            a7: (sub(sub(P(a7), "receptive_fields", *RF_NO_DILATION), "top_patches", *PATCHES_NO_START),
                 losing(a7, ["test_receptive_fields", "test_top_patches_crops"])),
            a8: (sub(P(a8), "dissection_iou", *DISSECTION_NEAREST), losing(a8, ["test_dissection_iou"])),
            a9: (sub(P(a9), "nearest_neighbours", *NEIGHBOURS_TOPK),
                 losing(a9, ["test_nearest_neighbours_conventions"])),
            a10: (sub(P(a10), "fool", *FOOL_NO_STOP), losing(a10, ["test_fool"])),
            a11: (sub(P(a11), "occlusion_drops", *OCCLUSION_ONE_BY_ONE),
                  losing(a11, ["test_occlusion_drops_batched"])),
            a12: (sub(P(a12), "integrated_gradients", *IG_LEFT_RIEMANN), losing(a12, ["test_integrated_gradients"])),
            a13: (sub(P(a13), "perturbation_curve", *CURVE_ONE_BY_ONE),
                  losing(a13, ["test_perturbation_curve_batched"])),
            a14: (sub(P(a14), "augmentation", *SHORTCUT_FLIPS_ONLY), losing(a14, ["test_augmentation"])),
        },
    )

    # --- correct alternatives: full points ------------------------------------------------------------------
    nb1 = P(a1)
    for grade_id, pair in AUTOGRAD_BY_BACKWARD.items():
        sub(nb1, grade_id, *pair)
    student(
        "altautograd",
        "correct alternatives: .backward() where the solutions use torch.autograd.grad (gradient_at with "
        "inputs=[point], linear_grads_autograd with the layer's .grad restored, compute_gradient_score with "
        "image.grad restored, vis_gradcam with a tensor hook and zero_grad) and torch.autograd.grad in sgd_step",
        None,
        {
            a1: (nb1, full[a1]),
            a5: (sub(P(a5), "compute_gradient_score", *SALIENCY_BY_BACKWARD), full[a5]),
            a6: (sub(P(a6), "vis_gradcam", *GRADCAM_BACKWARD), full[a6]),
        },
    )
    nb1 = sub(
        P(a1), "linear_grads_closed_form",
        "    probs = torch.softmax(x @ layer.weight.T + layer.bias, dim=1)",
        "    dtype = layer.weight.dtype\n    x, weight, bias = x.double(), layer.weight.double(), layer.bias.double()\n"
        "    probs = torch.softmax(x @ weight.T + bias, dim=1)",
        "    return delta.T @ x, delta.sum(0)", "    return (delta.T @ x).to(dtype), delta.sum(0).to(dtype)",
    )
    nb3 = sub(
        P(a3), "achromatic_share",
        "    grey = filters.mean(dim=1)\n    return filters.shape[1] * grey.pow(2).sum(dim=(1, 2)) / filters.pow(2).sum(dim=(1, 2, 3))",
        "    w = filters.double()\n    grey = w.mean(dim=1)\n"
        "    return (w.shape[1] * grey.pow(2).sum(dim=(1, 2)) / w.pow(2).sum(dim=(1, 2, 3))).to(filters.dtype)",
    )
    nb6 = sub(P(a6), "vis_gradcam", *GRADCAM_FLOAT64)
    sub(nb6, "class_activation_map", '    return torch.einsum("k,khw->hw", weights, features)',
        '    return torch.einsum("k,khw->hw", weights.double(), features.double()).to(features.dtype)')
    student(
        "altfloat64",
        "correct alternatives computing in float64 and returning the input's dtype: linear_grads_closed_form, "
        "achromatic_share, class_activation_map, the Grad-CAM weighting and upsampling, the patches of top_patches, "
        "the distances of nearest_neighbours, the softmax of perturbation_curve",
        None,
        {a1: (nb1, full[a1]), a3: (nb3, full[a3]), a6: (nb6, full[a6]), a7: (sub(P(a7), "top_patches", *PATCHES_FLOAT64), full[a7]),
         a9: (sub(P(a9), "nearest_neighbours", *NEIGHBOURS_FLOAT64), full[a9]),
         a13: (sub(P(a13), "perturbation_curve", *CURVE_FLOAT64), full[a13])},
    )
    nb4 = sub(P(a4), "show_activations_hook", "output.detach().clone()", "output.clone().detach()")
    sub(nb4, "register_activation_hooks",
        "handles.append(module.register_forward_hook(functools.partial(show_activations_hook, name)))",
        "handles.append(module.register_forward_hook(\n"
        "            lambda module, input, output, name=name: show_activations_hook(name, module, input, output)))")
    nb6 = sub(P(a6), "class_activation_map", *CAM_GAP_PRE_HOOK)
    sub(nb6, "vis_gradcam", *GRADCAM_RELU_PRE_HOOK)
    student(
        "althook",
        "correct alternatives hooking an equivalent tensor: CAM from a forward pre-hook on model.gap (its input "
        "is relu5_2's output), Grad-CAM from a pre-hook on relu5_2 (its input is bn5_2's output); activations "
        "registered with a lambda instead of functools.partial, stored with .clone().detach(); the occlusion map "
        "summed by a transposed convolution with a kernel of ones instead of a loop over the windows; SmoothGrad's "
        "copies differentiated one at a time; "
        "the shortcut's cue broken by grayscale instead of a random hue",
        None,
        {a4: (nb4, full[a4]), a6: (nb6, full[a6]), a11: (sub(P(a11), "occlusion_map", *OCCLUSION_MAP_TRANSPOSED), full[a11]),
         a12: (sub(P(a12), "smoothgrad", *SMOOTHGRAD_LOOP), full[a12]),
         a14: (sub(P(a14), "augmentation", *SHORTCUT_GRAYSCALE), full[a14])},
    )

    # --- what the kernel goes through: stderr, timeouts, exits, floods ---------------------------------------
    nb2 = prepend(P(a2), "get_module_params_num", "import warnings")
    sub(nb2, "get_module_params_num", "    param_num = 0\n",
        '    warnings.warn("get_module_params_num: buffers are not counted")\n    param_num = 0\n')
    append(nb2, "conv2d_params", 'warnings.warn("conv2d_params assumes a square kernel")')
    student(
        "warning",
        "correct code that warns: warnings.warn inside get_module_params_num (a UserWarning on stderr in its test "
        "cell) and at the top level of the conv2d_params cell",
        None,
        {a2: (nb2, full[a2])},
    )
    student(
        "infiniteloop",
        "conv2d_params defined correctly, then `while True: pass` at the top level of its cell",
        "timed out",
        {a2: (append(P(a2), "conv2d_params", "while True:  # waiting for inspiration\n    pass"), full[a2])},
    )
    student(
        "systemexit",
        "get_conv1_filters defined correctly, then sys.exit(1) in its cell (IPython catches SystemExit)",
        None,
        {a3: (append(P(a3), "get_conv1_filters", "import sys\n\nsys.exit(1)"), full[a3])},
    )
    student(
        "deadkernel",
        "linear_grads_closed_form defined correctly, then os._exit(1) in its cell: the kernel dies there, the "
        "two graded cells before it keep their points, the two after it get none",
        "kernel died",
        {a1: (append(P(a1), "linear_grads_closed_form", "import os\n\nos._exit(1)"),
              losing(a1, ["test_linear_grads_closed_form", "test_sgd_step"]))},
    )
    student(
        "flood",
        "correct code; the achromatic_share cell prints 200000 lines",
        None,
        {a3: (append(P(a3), "achromatic_share", FLOOD), full[a3])},
    )

    # --- what the file goes through: edited locked cells, deleted, duplicated, retyped, broken, misnamed --------
    nb2 = sub(P(a2), "conv2d_params", " + (out_channels if bias else 0)", "")
    student(
        "rewrotetest",
        "conv2d_params forgets the bias, and the locked test_conv2d_params was rewritten to `pass`",
        "restored",
        {a2: (replace(nb2, "test_conv2d_params", "pass"), losing(a2, ["test_conv2d_params"]))},
    )
    student(
        "deletedcells",
        "correct code, but the locked model_code cell (defines model, model64, demo) and the graded "
        "test_saliency_map_side_effects cell were deleted",
        "restored",
        {a5: (delete(delete(P(a5), "model_code"), "test_saliency_map_side_effects"), full[a5])},
    )
    student(
        "duplicatedcell",
        "correct code; the get_module_params_num cell and the test_conv2d_params cell each pasted twice (same "
        "nbgrader metadata, new cell ids, a comment on top of the solution's copy)",
        "duplicate",
        {a2: (duplicate(duplicate(P(a2), "get_module_params_num", "my second try"), "test_conv2d_params"), full[a2])},
    )
    student(
        "markdowncell",
        "correct code, but the achromatic_share cell was turned into a markdown cell",
        "restored",
        {a3: (to_markdown(P(a3), "achromatic_share"), full[a3])},
    )
    data = nbformat.writes(P(a2)).encode()
    student(
        "invalidjson",
        "the first half of a correct notebook's bytes: truncated JSON",
        "not a valid notebook",
        {a2: (data[: len(data) // 2], zero(a2))},
    )
    student(
        "missingnotebook",
        f"a correct notebook saved under the wrong name: {a6}/gradcam_final.ipynb, no {notebook_name(a6, root)}",
        notebook_name(a6, root),
        {a6: (("gradcam_final.ipynb", P(a6)), zero(a6))},
    )

    # --- cheating: the trusted judge must not be fooled ----------------------------------------------------
    nb1 = prepend(P(a1), "gradient_at", PATCH_TORCH)
    sub(nb1, "gradient_at", AUTOGRAD_BY_BACKWARD["gradient_at"][0], "    return torch.zeros_like(x)")
    sub(nb1, "linear_grads_autograd", AUTOGRAD_BY_BACKWARD["linear_grads_autograd"][0],
        "    return torch.zeros_like(layer.weight), torch.zeros_like(layer.bias)")
    sub(nb1, "linear_grads_closed_form", "    return delta.T @ x, delta.sum(0)",
        "    return torch.zeros_like(layer.weight), torch.zeros_like(layer.bias)")
    student(
        "patchallclose",
        "zeros of the right shape from gradient_at and both linear_grads_*, with torch.allclose and "
        "torch.testing.assert_close replaced in the first solution cell (every visible assert passes in the "
        "kernel); sgd_step correct",
        None,
        {a1: (nb1, losing(a1, ["test_gradient_at", "test_linear_grads_autograd", "test_linear_grads_closed_form"]))},
    )
    nb3 = prepend(P(a3), "get_conv1_filters", PATCH_NUMPY)
    replace(nb3, "achromatic_share",
            "def achromatic_share(filters):\n    flat = filters.reshape(len(filters), 3, 9)   # 3x3 kernels only\n"
            "    grey = flat.mean(dim=1)\n    return 3 * grey.pow(2).sum(dim=1) / flat.pow(2).sum(dim=(1, 2))")
    student(
        "patchnumpy",
        "numpy.allclose, numpy.isclose and numpy.testing's asserts replaced (no check uses numpy); achromatic_share "
        "wrong beyond 3x3 kernels (reshapes to (K, 3, 9): passes the visible checks, fails on other kernel "
        "sizes); get_conv1_filters correct",
        None,
        {a3: (nb3, losing(a3, ["test_achromatic_share"]))},
    )
    nb2 = prepend(P(a2), "get_module_params_num", PATCH_IPYTHON)
    sub(nb2, "get_module_params_num", "        param_num += param.numel()",
        "        if param.requires_grad:\n            param_num += param.numel()")
    sub(nb2, "conv2d_params", " + (out_channels if bias else 0)", "")
    student(
        "patchipython",
        "every error silenced with get_ipython().set_custom_exc; get_module_params_num counts only trainable "
        "parameters (passes the visible checks), conv2d_params forgets the bias (fails them, silently); "
        "linear_params correct",
        None,
        {a2: (nb2, losing(a2, ["test_get_module_params_num", "test_conv2d_params"]))},
    )
    nb6 = P(a6)
    for grade_id in ("class_activation_map", "vis_gradcam"):
        replace(
            nb6, grade_id, "from grader_tests.judges.gradcam import class_activation_map, vis_gradcam  # the reference"
        )
    student(
        "importsgrader",
        "both solution cells import the instructor's reference implementations from grader_tests.judges.gradcam",
        "grader_tests",
        {a6: (nb6, zero(a6))},
    )
    return class_


def build_class(out: Path, root: Path = ROOT) -> dict[str, Student]:
    """Write every fabricated submission under ``out/<student>/<assignment>/`` and return the expectations."""
    out, root = Path(out), Path(root)
    students = {}
    for sid, (expected, files) in _build(root).items():
        students[sid] = expected
        for assignment, content in files.items():
            folder = out / sid / assignment
            folder.mkdir(parents=True, exist_ok=True)
            name = notebook_name(assignment, root)
            if isinstance(content, tuple):
                name, content = content
            data = content if isinstance(content, bytes) else nbformat.writes(content).encode()
            (folder / name).write_bytes(data)
    return students
