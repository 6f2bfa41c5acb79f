"""Measure the embedded models against their targets; docs/models.md's figures come from this script.

    python scripts/measure_model.py [--images 2000] [--checkpoint PATH]

For the course model (``load_pretrained()``, trained on FGSM images in its last epochs) and the standard one
(``load_pretrained(variant="standard")``), on images of a seed never used in training: accuracy, the Grad-CAM
pointing game, the saliency map's on-object ratio and its pointing game, with the baselines a map must beat;
then the time of one forward + backward of one image at notebook resolution.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # grader_tests is not an installed package

from grader_tests.judges.gradcam import grad_cam
from grader_tests.judges.saliency import saliency
from helpers.data import IMAGE_SIZE, ShapesBatch, make_dataset
from helpers.metrics import dilate, on_object_ratio, pointing_game
from helpers.pretrained import VARIANTS, load_pretrained

EVAL_SEED = 1  # training renders seed 0 only
TARGET_LAYER = "backbone.bn5_2"
STRIDE = 16
"""Pixels per cell of ``bn5_2`` at 224 (14x14): the tolerance of both pointing games."""

TARGETS = {"accuracy": 0.98, "gradcam_pointing": 0.90, "saliency_ratio": 4.0, "saliency_pointing": 0.90}
"""What the course model must reach; the standard model only the first two."""


class Figures(NamedTuple):
    """A model's four figures on a set of images (means over the images)."""

    accuracy: float
    gradcam_pointing: float
    """Share of images whose Grad-CAM at bn5_2 (top class) peaks on the object mask grown by ``STRIDE``."""
    saliency_ratio: float
    """Mean over images of (share of max_ch |d s_y / dI| (true class y) on the object) / (object's share)."""
    saliency_pointing: float
    """Share of images whose saliency map peaks on the object mask grown by ``STRIDE``."""


def measure(model: torch.nn.Module, data: ShapesBatch, chunk: int = 16) -> Figures:
    """The four figures of ``model`` on ``data``, ``chunk`` images at a time (about 15 MB an image)."""
    correct, cam_hits, ratios, saliency_hits = [], [], [], []
    for start in range(0, len(data.labels), chunk):
        images, labels, masks = (t[start : start + chunk] for t in data)
        grown = dilate(masks, STRIDE)
        with torch.no_grad():
            correct.append(model(images).argmax(1) == labels)
        cam_hits.append(pointing_game(grad_cam(model, images, TARGET_LAYER), grown))
        maps = saliency(model, images, labels)
        ratios.append(on_object_ratio(maps, masks))
        saliency_hits.append(pointing_game(maps, grown))
    return Figures(*(torch.cat(parts).float().mean().item() for parts in (correct, cam_hits, ratios, saliency_hits)))


def centre_prior(n: int, size: int) -> torch.Tensor:
    """The baseline a heatmap must beat: a non-negative map peaking at the image centre and zero in the corners,
    ``max(d^2) - d^2`` with ``d`` the distance to the centre; ``(n, size, size)``."""
    coords = torch.arange(size) - (size - 1) / 2
    squared = coords.view(-1, 1) ** 2 + coords.view(1, -1) ** 2
    return (squared.max() - squared).expand(n, size, size)


def baselines(data: ShapesBatch) -> dict[str, float]:
    """What maps that ignore the image reach: the centre prior (pointing and on-object ratio), a random point
    (it hits with the probability of the grown mask's area) and a uniform map (ratio 1 by definition)."""
    prior = centre_prior(len(data.labels), data.images.shape[-1])
    grown = dilate(data.masks, STRIDE)
    return {
        "centre_pointing": pointing_game(prior, grown).float().mean().item(),
        "random_pointing": grown.float().mean().item(),
        "centre_ratio": on_object_ratio(prior, data.masks).mean().item(),
        "uniform_ratio": 1.0,
    }


def latency_ms(model: torch.nn.Module, repeats: int = 30) -> float:
    """Median time of one forward + backward to the input, one image, in eval mode."""
    image = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, requires_grad=True)
    times = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        torch.autograd.grad(model(image)[0, 0], image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint to measure instead of the packaged ones")
    args = parser.parse_args()

    if args.checkpoint:
        models = {args.checkpoint.name: load_pretrained(args.checkpoint, expected_sha256=None)}
    else:
        models = {f"{variant} model": load_pretrained(variant=variant) for variant in VARIANTS}
    data = make_dataset(args.images, EVAL_SEED)
    start = time.perf_counter()
    figures = {name: measure(model, data) for name, model in models.items()}
    seconds = time.perf_counter() - start
    base = baselines(data)
    pointing_base = f"centre prior {base['centre_pointing']:.1%}, random point {base['random_pointing']:.1%}"

    print(f"{args.images} images at {IMAGE_SIZE}x{IMAGE_SIZE} of seed {EVAL_SEED} (training used seed 0), the "
          f"object covering {data.masks.float().mean():.1%} of an image on average; measured in {seconds:.0f} s\n")
    print("| figure | goal | " + " | ".join(figures) + " | maps that ignore the image |")
    print("|---|---|" + "---|" * len(figures) + "---|")
    rows = [
        ("accuracy", ">= 98%", "accuracy", "{:.2%}", ""),
        (f"Grad-CAM at `{TARGET_LAYER}` (14x14, top class) peaks on the object grown by {STRIDE} px", ">= 90%",
         "gradcam_pointing", "{:.2%}", pointing_base),
        ("saliency max_ch \\|d s_y / dI\\| (true class): share on the object / the object's share", ">= 4",
         "saliency_ratio", "{:.2f}", f"centre prior {base['centre_ratio']:.2f}, uniform map 1"),
        (f"saliency peaks on the object grown by {STRIDE} px", ">= 90%", "saliency_pointing", "{:.2%}",
         pointing_base),
    ]
    for label, goal, field, fmt, baseline in rows:
        values = " | ".join(fmt.format(getattr(f, field)) for f in figures.values())
        print(f"| {label} | {goal} | {values} | {baseline} |")
    print()
    for name, model in models.items():
        print(f"{name}: one forward + backward, 1 image at {IMAGE_SIZE}px: {latency_ms(model):.1f} ms "
              f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
