"""Every attribution method of the course on held-out images: the table of notebook 12 (``make attribution-table``).

    python scripts/attribution_table.py [--images 200] [--out helpers/tables/attributions.csv]

For each model (the course model and its standard twin), each image and each of the eight methods (saliency,
SmoothGrad, gradient x input, Integrated Gradients, guided backpropagation, occlusion, CAM, Grad-CAM) one row:
whether the map's maximum lies on the object grown by 16 px (the pointing game of notebooks 5, 6 and 11), the
share of the map on the object (``helpers.energy_in_mask``) and the object's share of the image. Every method is captum's (or, for CAM, two lines on the model's own layers), with
the settings of the notebooks, so the table does not depend on a student's code. It takes 15-30 minutes on 2
cores, more than a notebook may: notebook 12 reads the file (``helpers.load_attribution_table()``) and times the
methods itself, on the reader's machine; ``tests/`` recomputes a sample of the rows with :func:`rows`.
"""

from __future__ import annotations

import argparse
import csv
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from captum.attr import (GuidedBackprop, InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam,
                         NoiseTunnel, Occlusion, Saliency)

import helpers

ROOT = Path(__file__).resolve().parents[1]
SEED = 1212  # held out: training renders seed 0, no notebook uses this one
TOLERANCE = 16  # px the masks grow by for the pointing game: one cell of the 14 x 14 feature grid
FIELDS = ("model", "image", "method", "hit", "share", "area")
MODELS = {"course": "robust", "standard": "standard"}  # the table's model names -> load_pretrained's variants
Method = Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor]


def _pixels(attribution: torch.Tensor) -> torch.Tensor:
    """An attribution (1, 3, H, W) -> a map (H, W): the largest magnitude over the colour channels (notebook 5)."""
    return attribution.detach()[0].abs().amax(dim=0)


def _requiring_grad(x: torch.Tensor) -> torch.Tensor:
    return x.clone().requires_grad_()


def _smoothgrad(model: torch.nn.Module, x: torch.Tensor, y: int) -> torch.Tensor:
    torch.manual_seed(0)  # captum draws the noise from the global generator: the same copies for every run
    noise_tunnel = NoiseTunnel(Saliency(model))
    return _pixels(noise_tunnel.attribute(_requiring_grad(x), nt_type="smoothgrad", nt_samples=8,
                                          nt_samples_batch_size=8, stdevs=0.5, target=y, abs=False))


def _cam(model: torch.nn.Module, x: torch.Tensor, y: int) -> torch.Tensor:
    with torch.no_grad(), helpers.capture_activations(model, ["backbone.relu5_2"]) as saved:
        model(x)
        cam = torch.einsum("k,khw->hw", model.fc.weight[y], saved["backbone.relu5_2"][0])
    return F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].clamp_min(0)


def _gradcam(model: torch.nn.Module, x: torch.Tensor, y: int) -> torch.Tensor:
    coarse = LayerGradCam(model, model.backbone.bn5_2).attribute(x, target=y, relu_attributions=True)
    return LayerAttribution.interpolate(coarse.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")[0, 0]


def _occlusion(model: torch.nn.Module, x: torch.Tensor, y: int) -> torch.Tensor:
    drops = Occlusion(model).attribute(x, sliding_window_shapes=(3, 56, 56), strides=(3, 28, 28), baselines=0.0,
                                       target=y, perturbations_per_eval=8)
    return drops.detach()[0, 0].clamp_min(0)  # the same drop on every channel; a rise is not evidence for y


METHODS: dict[str, Method] = {
    "saliency": lambda model, x, y: _pixels(Saliency(model).attribute(_requiring_grad(x), target=y, abs=False)),
    "SmoothGrad": _smoothgrad,
    "gradient x input": lambda model, x, y: _pixels(InputXGradient(model).attribute(_requiring_grad(x), target=y)),
    "Integrated Gradients": lambda model, x, y: _pixels(IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=y, n_steps=16, method="riemann_middle", internal_batch_size=8)),
    "guided backprop": lambda model, x, y: _pixels(GuidedBackprop(model).attribute(_requiring_grad(x), target=y)),
    "occlusion": _occlusion,
    "CAM": _cam,
    "Grad-CAM": _gradcam,
}
"""Each method of the course: (model in eval mode, one image (1, 3, H, W), class) -> its map (H, W), the
settings of notebooks 5, 6, 11 and 12 (SmoothGrad 8 copies at sigma 0.5, IG 16 midpoint steps from the baseline
0 in normalised units (the mean colour), occlusion windows of 56 px at a stride of 28 filled with 0, Grad-CAM at
``bn5_2``)."""


def rows(model_name: str, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
         first: int = 0) -> list[dict[str, object]]:
    """The table's rows for ``images`` of the held-out set, numbered from ``first``: one per image and method."""
    grown = helpers.dilate(masks, TOLERANCE)
    table = []
    with warnings.catch_warnings(), helpers.evaluating(model):
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # guided backprop's note
        for index, (image, label) in enumerate(zip(images, labels.tolist())):
            x = image[None]
            for method, attribute in METHODS.items():
                heat = attribute(model, x, label)
                table.append({
                    "model": model_name, "image": first + index, "method": method,
                    "hit": int(helpers.pointing_game(heat[None], grown[index : index + 1])[0]),
                    "share": round(float(helpers.energy_in_mask(heat[None], masks[index : index + 1])[0]), 6),
                    "area": round(float(masks[index].float().mean()), 6),
                })
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--range", nargs=2, type=int, metavar=("START", "STOP"),
                        help="only images START .. STOP - 1 (to split a run over processes; concatenate the files "
                             "in model and image order)")
    parser.add_argument("--out", type=Path, default=ROOT / "helpers" / "tables" / "attributions.csv")
    args = parser.parse_args(argv)
    first, stop = args.range or (0, args.images)
    data = helpers.make_dataset(stop - first, seed=SEED, start=first)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        writer.writeheader()
        for name in args.models:
            model = helpers.load_pretrained(variant=MODELS[name])
            for start in range(0, stop - first, 10):
                end = min(start + 10, stop - first)
                part = slice(start, end)
                writer.writerows(rows(name, model, data.images[part], data.labels[part], data.masks[part], first + start))
                file.flush()
                print(f"{name}: images {first} .. {first + end - 1} of {first} .. {stop - 1}", flush=True)
    print(f"wrote {args.out}")

if __name__ == "__main__":
    main()
