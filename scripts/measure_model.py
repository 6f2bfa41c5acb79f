"""Measure the embedded model against its targets; the README's model figures come from this script.

    python scripts/measure_model.py [--images 2000] [--checkpoint PATH]

Accuracy and the Grad-CAM pointing game on images from a seed never used in training, and the time of one
forward + backward of one image at notebook resolution.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # grader_tests is not an installed package

from grader_tests.judges.gradcam import grad_cam
from helpers.data import IMAGE_SIZE, make_dataset
from helpers.inference import predict
from helpers.metrics import pointing_game
from helpers.pretrained import load_pretrained

EVAL_SEED = 1  # training renders seed 0 only
TARGET_LAYER = "backbone.bn5_2"


def centre_prior(n: int, size: int) -> torch.Tensor:
    """The baseline a heatmap must beat: a map peaking at the image centre."""
    coords = torch.arange(size) - (size - 1) / 2
    return -(coords.view(-1, 1) ** 2 + coords.view(1, -1) ** 2).expand(n, size, size)


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
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint to measure instead of the packaged one")
    args = parser.parse_args()

    model = load_pretrained(args.checkpoint, expected_sha256=None) if args.checkpoint else load_pretrained()
    data = make_dataset(args.images, EVAL_SEED)
    logits = predict(model, data.images)
    correct = logits.argmax(1) == data.labels

    maps = torch.cat([grad_cam(model, chunk, TARGET_LAYER) for chunk in data.images.split(100)])
    feature_size = grad_cam(model, data.images[:1], TARGET_LAYER, upsample=False).shape[-1]
    stride = IMAGE_SIZE // feature_size
    hits = pointing_game(maps, data.masks, tolerance=stride)
    prior = pointing_game(centre_prior(args.images, IMAGE_SIZE), data.masks, tolerance=stride)

    print(f"images: {args.images} at {IMAGE_SIZE}x{IMAGE_SIZE}, seed {EVAL_SEED} (training used seed 0)")
    print(f"accuracy: {correct.float().mean():.2%}")
    print(f"Grad-CAM at {TARGET_LAYER} ({feature_size}x{feature_size} map), peak on the object mask dilated by "
          f"{stride} px: {hits.float().mean():.2%} (centre prior: {prior.float().mean():.2%})")
    print(f"mean share of the image covered by the object: {data.masks.float().mean():.2%}")
    print(f"one forward + backward, 1 image at {IMAGE_SIZE}px: {latency_ms(model):.1f} ms "
          f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
