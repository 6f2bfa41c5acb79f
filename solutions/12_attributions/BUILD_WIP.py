"""Build solutions/12_attributions/attributions.ipynb (work in progress: the 200-image table is still to come)."""
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from nbkit import code, md, write

cells = [
    md(r"""
# 12 · Attributions: SmoothGrad, Integrated Gradients, guided backpropagation

Notebook 5's saliency map is the gradient at one image. Practitioners use a few refinements of it, and captum
implements them all. This notebook writes two of them from their definitions and checks them against captum and
against their own mathematics:

- **SmoothGrad** (Smilkov et al., 2017) averages the gradients of noisy copies of the image;
- **Integrated Gradients** (Sundararajan, Taly and Yan, 2017) integrates the gradient along a path from a
  baseline image to the image, and so splits the score difference exactly among the pixels;
- **gradient x input** and **guided backpropagation** (Springenberg et al., 2015), which captum computes for us.

**You will**

1. write `smoothgrad(...)` and see whether averaging rescues the standard model's maps;
2. write `integrated_gradients(...)`, check completeness, $\sum_i \mathrm{IG}_i = s_y(x) - s_y(x')$, and compare
   with captum's `IntegratedGradients`;
3. compute gradient x input and guided backpropagation with captum, and see why the latter needs the model's
   separate ReLU modules;
4. compare the maps of the gradient methods on the demo images, then all eight methods of the course on 200 new
   images: which of them find the object, and at what cost;
5. answer two questions.

Graded: four code tests (3 + 1 + 3 + 1 points) and two written questions (2 + 2 points).
""", "intro"),
    code("""
import time
import warnings

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, InputXGradient, IntegratedGradients, LayerGradCam, Occlusion, Saliency

import helpers
import helpers.environment

torch.manual_seed(0)
print(helpers.environment.check())
""", "setup"),
    md(r"""
## 0 · Two models and the demo images

As in notebooks 5 and 11: the course model, its standard twin (trained on clean images only, its saliency maps at
chance), and the six demo images with their object masks.
""", "model_text"),
    code("""
model = helpers.load_pretrained()
standard = helpers.load_pretrained(variant="standard")
models = {"standard": standard, "course": model}
demo = helpers.load_demo()


def gradient(net, images, class_idx):
    \"\"\"d s_y / d x for each image of a batch (N, 3, H, W), the model in eval mode, no .grad written.\"\"\"
    x = images.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(net(x)[:, class_idx].sum(), x)
    return grad


def to_map(attribution):
    \"\"\"An attribution (3, H, W) -> a map (H, W): the largest magnitude over the colour channels (notebook 5).\"\"\"
    return attribution.abs().amax(dim=0)
""", "load"),
    md(r"""
## 1 · SmoothGrad

The gradient of a ReLU network jumps from pixel to pixel: every ReLU that switches on or off changes the slope. A
map of it looks noisy even where the model's decision is stable. SmoothGrad averages the gradient over $n$ copies
of the image with Gaussian noise added:

$$ \hat{M}_y(x) = \frac{1}{n} \sum_{i=1}^{n} \nabla_x s_y(x + \varepsilon_i), \qquad
   \varepsilon_i \sim \mathcal{N}(0, \sigma^2 I). $$

It estimates the gradient of a smoothed score, $s_y$ convolved with a Gaussian: the fine-grained jumps average
out, the trend that holds over a neighbourhood of $x$ stays. $\sigma$ is in the units of the normalised image
(about 0.23 of the pixel range per unit); Smilkov et al. found 10-20% of the input range a good choice.

### Task 1 · `smoothgrad` (3 + 1 points)

Return $\hat{M}_y(x)$ for an `image` of shape $(3, H, W)$, a tensor of shape $(3, H, W)$ (signed: the map is drawn
from it). Conventions the hidden checks enforce, so that a seed gives one answer:

- draw **all** the noise first, in one call: `noise = sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)`;
  copy $i$ is `image + noise[i]`;
- compute in eval mode (`helpers.evaluating(model)`), with `torch.autograd.grad` (no `.grad` written anywhere),
  and leave the caller's `image` unchanged.

**Hint:** all copies in one batch of shape $(n, 3, H, W)$ need one forward and one backward pass: in eval mode the
images of a batch do not interact, so the gradient of the summed scores is each copy's own gradient.
""", "task_smoothgrad"),
    code('''
def smoothgrad(
    model: torch.nn.Module, image: torch.Tensor, class_idx: int, samples: int, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """``(3, H, W)``: the mean gradient of the logit ``s_y`` over ``samples`` noisy copies of ``image``."""
    ### BEGIN SOLUTION
    noise = sigma * torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype)
    with helpers.evaluating(model), torch.enable_grad():
        copies = (image.detach() + noise).requires_grad_()
        (grad,) = torch.autograd.grad(model(copies)[:, class_idx].sum(), copies)
    return grad.mean(dim=0)
    ### END SOLUTION
''', "smoothgrad", "solution"),
    code("""
image, label = demo.images[0][:, 84:140, 84:140], int(demo.labels[0])  # the middle 56 x 56: quicker
kept = image.clone()
smooth = smoothgrad(model, image, label, 4, 0.5, torch.Generator().manual_seed(0))
assert isinstance(smooth, torch.Tensor) and smooth.shape == image.shape, "one value per input value: (3, H, W)"
again = smoothgrad(model, image, label, 4, 0.5, torch.Generator().manual_seed(0))
assert torch.allclose(smooth, again), "the same generator seed gives the same result"
plain = gradient(model, image[None], label)[0]
assert torch.allclose(smoothgrad(model, image, label, 3, 0.0, torch.Generator()), plain, atol=1e-6), (
    "sigma = 0: every copy is the image, and the mean is its gradient")
assert not torch.allclose(smooth, plain), "sigma = 0.5 averages the gradients of other images"
assert torch.equal(image, kept), "leave the caller's image unchanged"
### BEGIN HIDDEN TESTS
from grader_tests.kernel.attributions import check_smoothgrad

check_smoothgrad(smoothgrad)
### END HIDDEN TESTS
print("smoothgrad: shape, seeded, sigma = 0 is the gradient")
""", "test_smoothgrad", "test", 3),
    code("""
scratch = helpers.load_pretrained().train()
smoothgrad(scratch, demo.images[1][:, :64, :64], 1, 2, 0.3, torch.Generator().manual_seed(1))
assert all(m.training for m in scratch.modules()), "give the model back its mode (here: train)"
assert all(p.grad is None for p in scratch.parameters()), "no parameter .grad: use torch.autograd.grad"
### BEGIN HIDDEN TESTS
from grader_tests.kernel.attributions import check_smoothgrad_side_effects

check_smoothgrad_side_effects(smoothgrad)
### END HIDDEN TESTS
print("smoothgrad: mode restored, no parameter gradients")
""", "test_smoothgrad_side_effects", "test", 1),
    md(r"""
The standard model's saliency (notebook 5) next to its SmoothGrad map, 8 copies at $\sigma = 0.5$, and the same
for the course model, on three demo images; under each map the ratio of notebook 5, its share on the object over
the object's share of the image (1 is chance):
""", "smoothgrad_figure_text"),
    code("""
generator = torch.Generator().manual_seed(0)
picked = [0, 2, 4]
images, labels, masks = demo.images[picked], demo.labels[picked], demo.masks[picked]
fig, axes = plt.subplots(4, 3, figsize=(8.4, 11.6))
row = 0
for name, net in models.items():
    plain = torch.stack([to_map(gradient(net, img[None], int(y))[0]) for img, y in zip(images, labels)])
    smooth = torch.stack([to_map(smoothgrad(net, img, int(y), 8, 0.5, generator)) for img, y in zip(images, labels)])
    for maps, kind in ((plain, "saliency"), (smooth, "SmoothGrad")):
        ratios = helpers.on_object_ratio(maps, masks)
        for i, y in enumerate(labels.tolist()):
            axes[row, i].imshow(maps[i].numpy(), cmap="gray")
            axes[row, i].contour(masks[i].numpy(), levels=[0.5], colors="red", linewidths=0.8)
            axes[row, i].set_title(f"{name}, {kind}\\n{helpers.CLASSES[y]}: ratio {ratios[i]:.1f}", fontsize=9)
            axes[row, i].axis("off")
        row += 1
fig.suptitle("Saliency and SmoothGrad (8 copies, sigma 0.5) of the true class,\\nstandard and course model")
plt.show()
"""),
    md(r"""
Averaging rescues the standard model: its gradient at one image is dominated by slopes that change sign from one
copy to the next (notebook 5: tiny slopes on the texture and the clutter), and their mean cancels, while the slopes
on the object keep their sign over the whole neighbourhood and add up. The course model was *trained* to have a
smooth score (FGSM steps), so its plain gradient already looks like a smoothed one, and averaging sharpens it a
little more.
""", "smoothgrad_reading"),
    md(r"""
## 2 · Gradient x input and Integrated Gradients

A gradient says how the score would change; it does not say how much of the score each pixel *accounts for*. For
a linear score $s(x) = w^\top x + b$ the answer is exact: pixel $i$ contributes $w_i x_i$, and the contributions add
up to $s(x) - b$. **Gradient x input**, $x \odot \nabla_x s_y(x)$, applies that reading to a network, where it is
only a first-order guess: the slope at $x$ stands for the slope everywhere between a reference image and $x$.

**Integrated Gradients** takes the whole way instead. For a baseline $x'$ (an image that carries no evidence, for
example all zeros: the mean colour), follow the straight path $x' + \alpha (x - x')$, $\alpha \in [0, 1]$, and
accumulate the gradient along it:

$$ \mathrm{IG}_i(x) = (x_i - x'_i) \int_0^1 \frac{\partial s_y\big(x' + \alpha (x - x')\big)}{\partial x_i} \, d\alpha . $$

By the fundamental theorem of calculus for path integrals, the attributions are **complete**: they add up to the
score difference,

$$ \sum_i \mathrm{IG}_i(x) = s_y(x) - s_y(x'), $$

whatever the network. In practice the integral is a Riemann sum over $m$ points; the midpoint rule uses
$\alpha_k = (k + \tfrac12)/m$, $k = 0, \dots, m - 1$ (captum's `method="riemann_middle"`), and the sum of the
attributions approaches $s_y(x) - s_y(x')$ as $m$ grows. With $m = 1$ the only point is $\alpha = \tfrac12$.

### Task 2 · `integrated_gradients` (3 + 1 points)

Return $\mathrm{IG}(x)$ for an `image` and a `baseline` of shape $(3, H, W)$, with the midpoint rule and `steps`
$= m$ points: $(x - x') \odot \frac1m \sum_k \nabla_x s_y(x' + \alpha_k (x - x'))$, shape $(3, H, W)$. Compute in
eval mode with `torch.autograd.grad`; leave `image` and `baseline` unchanged.

**Hint:** stack path points into batches of shape $(b, 3, H, W)$ (`alphas.view(-1, 1, 1, 1)` broadcasts): one
forward and one backward pass give all their gradients. A batch of 8 points at $224 \times 224$ keeps the memory
small; `alphas.split(8)` gives the chunks.
""", "task_ig"),
    code('''
def integrated_gradients(
    model: torch.nn.Module, image: torch.Tensor, class_idx: int, baseline: torch.Tensor, steps: int
) -> torch.Tensor:
    """``(3, H, W)``: integrated gradients of ``s_y`` from ``baseline`` to ``image``, midpoint rule, ``steps`` points."""
    ### BEGIN SOLUTION
    alphas = (torch.arange(steps, dtype=image.dtype) + 0.5) / steps
    total = torch.zeros_like(image)
    with helpers.evaluating(model), torch.enable_grad():
        for chunk in alphas.split(8):  # 8 path points per pass: the memory of 8 images
            path = (baseline + chunk.view(-1, 1, 1, 1) * (image - baseline)).detach().requires_grad_()
            (grad,) = torch.autograd.grad(model(path)[:, class_idx].sum(), path)
            total += grad.sum(dim=0)
    return (image - baseline) * total / steps
    ### END SOLUTION
''', "integrated_gradients", "solution"),
    code("""
image, label = demo.images[2][:, 56:168, 56:168], int(demo.labels[2])
zeros = torch.zeros_like(image)
kept = image.clone()
ig = integrated_gradients(model, image, label, zeros, 32)
assert isinstance(ig, torch.Tensor) and ig.shape == image.shape, "one value per input value: (3, H, W)"
with torch.no_grad():
    gap = (model(image[None]) - model(zeros[None]))[0, label]
assert abs(ig.sum() - gap) <= 0.01 * abs(gap), f"completeness: sum {ig.sum():.3f}, but s_y(x) - s_y(x') = {gap:.3f}"
assert torch.allclose(integrated_gradients(model, image, label, image, 4), zeros), "baseline = image: nothing to split"
half = gradient(model, 0.5 * image[None], label)[0]
assert torch.allclose(integrated_gradients(model, image, label, zeros, 1), image * half, atol=1e-6), (
    "steps = 1: one point, alpha = 1/2")
assert torch.equal(image, kept), "leave the caller's image unchanged"
### BEGIN HIDDEN TESTS
from grader_tests.kernel.attributions import check_integrated_gradients

check_integrated_gradients(integrated_gradients)
### END HIDDEN TESTS
print("integrated_gradients: shape, completeness within 1%, baseline = image, one step")
""", "test_integrated_gradients", "test", 3),
    code("""
scratch = helpers.load_pretrained().train()
integrated_gradients(scratch, demo.images[1][:, :64, :64], 1, torch.zeros(3, 64, 64), 4)
assert all(m.training for m in scratch.modules()), "give the model back its mode (here: train)"
assert all(p.grad is None for p in scratch.parameters()), "no parameter .grad: use torch.autograd.grad"
### BEGIN HIDDEN TESTS
from grader_tests.kernel.attributions import check_integrated_gradients_side_effects

check_integrated_gradients_side_effects(integrated_gradients)
### END HIDDEN TESTS
print("integrated_gradients: mode restored, no parameter gradients")
""", "test_integrated_gradients_side_effects", "test", 1),
    md(r"""
How many steps? The error of completeness, $|\sum_i \mathrm{IG}_i - (s_y(x) - s_y(x'))|$ relative to the score
difference, for one demo image and growing $m$; and captum's `IntegratedGradients` with the same baseline, method
and steps, which must give the same attributions:
""", "ig_steps_text"),
    code("""
image, label = demo.images[3], int(demo.labels[3])
zeros = torch.zeros_like(image)
with torch.no_grad():
    gap = (model(image[None]) - model(zeros[None]))[0, label].item()
steps = [2, 4, 8, 16, 32]
ours = {m: integrated_gradients(model, image, label, zeros, m) for m in steps}
errors = [abs(ours[m].sum().item() - gap) / abs(gap) for m in steps]
theirs = IntegratedGradients(model).attribute(image[None], baselines=zeros[None], target=label, n_steps=16,
                                              method="riemann_middle", internal_batch_size=8)[0]
print(f"s_y(x) - s_y(x') = {gap:.3f}; max |ours - captum| at 16 steps = {(ours[16] - theirs).abs().max():.1e}")
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.loglog(steps, errors, "o-")
ax.axhline(0.01, color="grey", linestyle=":", label="1%")
ax.set_xlabel("steps m (midpoint rule)")
ax.set_ylabel("relative completeness error")
ax.set_title(f"Integrated Gradients: sum of attributions vs s_y(x) - s_y(x') ({helpers.CLASSES[label]})")
ax.legend()
plt.show()
"""),
    md(r"""
## 3 · Guided backpropagation, with captum

**Guided backpropagation** (Springenberg et al., 2015) changes the backward pass of every ReLU: besides zeroing
the gradient where the ReLU's input was negative (the ordinary rule), it also zeroes it where the gradient itself
is negative, so only positive evidence flows back. Its maps are sharp and look like edge images of the object.

captum's `GuidedBackprop` implements the new rule by hooking the backward pass of every `torch.nn.ReLU` **module**
of the model. That is why the course model has a separate `nn.ReLU` module after every BatchNorm (notebook 4): a
model that calls `torch.relu` or `F.relu` inside its `forward` offers no module to hook, and captum then returns the
plain gradient without a warning. The same goes for a ReLU module used twice, or in place.
""", "gbp_text"),
    code("""
relus = [name for name, module in model.named_modules() if isinstance(module, torch.nn.ReLU)]
print(f"{len(relus)} ReLU modules captum can hook: {', '.join(name.split('.')[-1] for name in relus)}")
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # captum's note on what it does
"""),
    md(r"""
## 4 · Every method of the course on 200 new images

Eight methods now explain the same score $s_y$: saliency (notebook 5), SmoothGrad, gradient x input, Integrated
Gradients and guided backpropagation (this notebook), occlusion (notebook 11), CAM and Grad-CAM (notebook 6).
Which of them find the object? The masks let us count, on images no notebook has shown, for both models:

- the **pointing game**: the map's maximum on the object grown by 16 px (as in notebooks 5, 6 and 11);
- the **share** of the map on the object, and its ratio to the object's share of the image (1 is chance).

Eight methods, two models and 200 images take 15-30 minutes on two cores, more than a notebook may. The table was
computed with captum's implementations and the settings of the notebooks (SmoothGrad 8 copies at $\sigma = 0.5$,
IG 16 midpoint steps from the black image, occlusion windows of 56 px at stride 28, Grad-CAM at `bn5_2`) by
`scripts/attribution_table.py`, and ships with the helpers (`helpers.load_attribution_table()`); the course's
tests recompute a sample of its rows. Gradient maps are drawn as the largest magnitude over the colour channels.
""", "table_text"),
    md(r"""
First the eight maps of two demo images, each method timed as it runs (in this kernel: your machine's figures; a
gradient method costs one forward and one backward pass per image it differentiates, occlusion one forward pass
per window position and one for the image):
""", "eight_text"),
    code("""
def upsampled(coarse):
    \"\"\"A (h, w) map -> (224, 224), bilinear, negative values dropped (as Grad-CAM does).\"\"\"
    return F.interpolate(coarse[None, None], size=(224, 224), mode="bilinear", align_corners=False)[0, 0].clamp_min(0)


def cam_map(x, y):
    with torch.no_grad(), helpers.capture_activations(model, ["backbone.relu5_2"]) as saved:
        model(x)
        return upsampled(torch.einsum("k,khw->hw", model.fc.weight[y], saved["backbone.relu5_2"][0]))


eight = {  # each: (image (1, 3, H, W), class) -> map (H, W); passes forward + backward per image
    "saliency": (lambda x, y: to_map(Saliency(model).attribute(x.clone().requires_grad_(), target=y, abs=False)[0]),
                 "1 + 1"),
    "SmoothGrad": (lambda x, y: to_map(smoothgrad(model, x[0], y, 8, 0.5, torch.Generator().manual_seed(0))), "8 + 8"),
    "gradient x input": (lambda x, y: to_map(InputXGradient(model).attribute(x.clone().requires_grad_(), target=y)[0]),
                         "1 + 1"),
    "Integrated Gradients": (lambda x, y: to_map(integrated_gradients(model, x[0], y, torch.zeros_like(x[0]), 16)),
                             "16 + 16"),
    "guided backprop": (lambda x, y: to_map(GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=y)[0]),
                        "1 + 1"),
    "occlusion": (lambda x, y: Occlusion(model).attribute(x, sliding_window_shapes=(3, 56, 56), strides=(3, 28, 28),
                                                         baselines=0.0, target=y, perturbations_per_eval=8)[0, 0]
                  .clamp_min(0), "50 + 0"),
    "CAM": (cam_map, "1 + 0"),
    "Grad-CAM": (lambda x, y: upsampled(LayerGradCam(model, model.backbone.bn5_2).attribute(x, target=y)[0, 0].detach()),
                 "1 + 1"),
}
seconds = dict.fromkeys(eight, 0.0)
fig, axes = plt.subplots(2, 8, figsize=(20, 6))
for row, i in enumerate((1, 4)):
    x, y = demo.images[i : i + 1], int(demo.labels[i])
    for col, (name, (method, _)) in enumerate(eight.items()):
        start = time.perf_counter()
        heat = method(x, y).detach()
        seconds[name] += time.perf_counter() - start
        ratio = helpers.on_object_ratio(heat[None], demo.masks[i : i + 1])[0]
        axes[row, col].imshow(heat.numpy(), cmap="gray")
        axes[row, col].contour(demo.masks[i].numpy(), levels=[0.5], colors="red", linewidths=0.8)
        axes[row, col].set_title(f"{name}\\n{helpers.CLASSES[y]}: ratio {ratio:.1f}", fontsize=10)
        axes[row, col].axis("off")
fig.suptitle("The eight methods of the course on the course model (true class); ratio as in notebook 5")
plt.show()
print(f"{'method':<22} {'ms per image':>13} {'passes (forward + backward)':>28}")
for name, (_, passes) in eight.items():
    print(f"{name:<22} {1000 * seconds[name] / 2:>13.0f} {passes:>28}")
"""),
    code("""
table = helpers.load_attribution_table()
print(f"{len(table['course']['saliency']['hit'])} held-out images; pointing game / share on the object / ratio")
print(f"{'method':<22} {'course model':>26}   {'standard model':>26}")
for method in table["course"]:
    cells = []
    for name in ("course", "standard"):
        column = table[name][method]
        ratio = (column["share"] / column["area"]).mean()
        cells.append(f"{column['hit'].double().mean():>8.1%} {column['share'].mean():>8.1%} {ratio:>8.2f}")
    print(f"{method:<22} {cells[0]:>26}   {cells[1]:>26}")
area = table["course"]["saliency"]["area"]
print(f"{'(the object: chance)':<22} {'':>8} {area.mean():>8.1%} {1:>8.2f}")
"""),
    code("""
methods = list(table["course"])
fig, axes = plt.subplots(1, 2, figsize=(14, 3.8), sharey=False)
for ax, (metric, label) in zip(axes, (("hit", "pointing game"), ("share", "share of the map on the object"))):
    for shift, name in ((-0.2, "course"), (0.2, "standard")):
        values = [table[name][m][metric].double().mean().item() for m in methods]
        ax.bar([i + shift for i in range(len(methods))], values, width=0.4, label=f"{name} model")
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_title(f"{label}, 200 held-out images")
    ax.legend()
axes[1].axhline(area.mean(), color="grey", linestyle=":")
axes[1].text(len(methods) - 0.5, area.mean(), " object's area", va="bottom", ha="right", color="grey")
plt.show()
"""),
    md(r"""
**Reading the table.** TABLE_READING
""", "table_reading"),
    md(r"""
**Question 1 (2 points).** Integrated Gradients is *complete* (section 2) and guided backpropagation draws the
sharpest maps (section 3). Does either property show that a map explains what the *model* computes? For each,
say what the property guarantees and what it does not, and name an experiment that would tell a map that
depends on the model from one that does not (notebook 13 runs it).
""", "question_properties"),
    md(r"""
**Completeness** is an accounting identity: the attributions add up to $s_y(x) - s_y(x')$. It fixes their sum,
not where the sum goes: gradient x input with the bias terms, or any map rescaled to the right total, satisfies
the same equation, and so would a map that spread the difference evenly over the pixels. It guarantees that the
explanation is *about the score* in aggregate, not that each pixel's share is right.

**Sharpness** is about the picture, not the model. Guided backpropagation zeroes every negative gradient on the
way back through each ReLU, so what reaches the input is mostly the positive part of the first layers' filters
applied to the image: an edge image of the input. It looks precise because the image has sharp edges; that says
nothing about whether the upper layers or the class used those edges (Adebayo et al. 2018; Nie et al. 2018 show
it reconstructs the image).

The test: change the model and see whether the map changes. Re-initialise the layers from the top down
(cascading randomization) or train on random labels: a map that stays the same when the weights that decide the
class are random cannot be explaining the class decision. Deletion and insertion curves test the other direction:
remove pixels in the map's order and see whether the score falls fastest.
""", "answer_properties", "answer", 2),
    md(r"""
**Question 2 (2 points).** SmoothGrad lifted the standard model's maps from chance to the object (section 1), and
the table shows it on 200 images. Does this show that the standard model's decision rests on the object, where
its plain saliency map said it did not? What does the SmoothGrad map measure that the gradient at $x$ does not,
and which other row of the table answers the question without any gradient?
""", "question_smoothing"),
    md(r"""
Both maps are true statements about the same model, at different scales. The gradient at $x$ is the slope of
$s_y$ for an infinitesimal change; for the standard model it is dominated by large slopes on the texture and
clutter whose signs change from one nearby image to the next. SmoothGrad is the gradient of the *smoothed* score
$(s_y * \mathcal{N}(0, \sigma^2))(x)$: the average slope over a neighbourhood of radius about $\sigma$. The
fluctuating slopes off the object cancel in that average; the slopes on the object keep their sign and remain. So
the object dominates the model's behaviour over a neighbourhood of $x$, while at $x$ itself the score is most
sensitive to pixels that do not matter on average.

Whether the decision *rests* on the object is a question about large changes, and occlusion answers it without
gradients: hiding the object removes the score for both models (the occlusion row, far above chance for the
standard model too). SmoothGrad agrees with occlusion; the plain gradient measures local sensitivity, which is
not the same thing.
""", "answer_smoothing", "answer", 2),
    md(r"""
## Summary

- **SmoothGrad** $\frac1n \sum_i \nabla_x s_y(x + \varepsilon_i)$ is the gradient of a Gaussian-smoothed score; it
  removes the pixel-to-pixel noise of the gradient and finds the object even for the standard model.
- **Integrated Gradients** $(x - x') \odot \int_0^1 \nabla_x s_y(x' + \alpha(x - x'))\,d\alpha$ is complete:
  its sum is $s_y(x) - s_y(x')$, within 1% at 32 midpoint steps here; it equals captum's `IntegratedGradients`.
- **Gradient x input** is IG from the black image with one step at $\alpha = 1$ (a first-order guess); **guided backpropagation**
  needs one `nn.ReLU` module per ReLU, and draws edges of the image.
- On 200 held-out images the methods differ in what they find and in what they cost, from one forward pass (CAM)
  to fifty (occlusion). Completeness and sharpness are properties of the map, not evidence that it depends on
  the model: notebook 13 tests that.
""", "summary"),
]

write(cells, sys.argv[1])
print("wrote", sys.argv[1], len(cells), "cells")
