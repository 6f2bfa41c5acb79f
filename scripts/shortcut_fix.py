"""Notebook 14's fix measured on many scenes: the shortcut model, its last layer retrained by the notebook's own
``fine_tune_last_layer`` with a flip only (the control) and with a flip and a random hue (the fix). Prints the
table of docs/models.md: accuracy on biased, unbiased, disc-free and wrong-disc scenes, how often a wrong disc is
followed, and how often it is followed when the image is flipped left-right (the disc in the top-left corner).

    .venv/bin/python scripts/shortcut_fix.py [--scenes 1000] [--seed 1401]   (1-3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

import helpers

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "14_shortcut" / "shortcut.ipynb"
COLUMNS = ("biased", "unbiased", "no disc", "a wrong class's disc", "follows that disc", "follows it, image flipped")


def notebook_fine_tune() -> Callable[..., tuple[torch.nn.Module, float]]:
    """``fine_tune_last_layer`` as the solved notebook 14 defines it: its own cell, run here, not a copy."""
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if "def fine_tune_last_layer(" in c.source]
    if len(cells) != 1:
        raise LookupError(f"{NOTEBOOK} should define fine_tune_last_layer in one cell, found {len(cells)}")
    namespace = {"copy": copy, "time": time, "torch": torch, "F": F, "tv_tensors": tv_tensors, "helpers": helpers}
    exec(cells[0], namespace)  # noqa: S102 - the course's own solution cell
    return namespace["fine_tune_last_layer"]


def models() -> dict[str, torch.nn.Module]:
    """The shortcut model, the control and the fix (the notebook's recipe, its seeds)."""
    fine_tune, model = notebook_fine_tune(), helpers.load_pretrained(variant="shortcut")
    return {
        "the shortcut model": model,
        "last layer retrained, flip only (control)": fine_tune(model, v2.RandomHorizontalFlip())[0],
        "last layer retrained, flip and random hue": fine_tune(
            model, v2.Compose([v2.RandomHorizontalFlip(), v2.ColorJitter(hue=0.5)]))[0],
    }


def scores(nets: dict[str, torch.nn.Module], scenes: int, seed: int, chunk: int = 100) -> dict[str, list[float]]:
    """For each model, the fractions of :data:`COLUMNS` on ``scenes`` scenes of ``seed`` (rendered ``chunk`` at a time)."""
    counts = {name: torch.zeros(len(COLUMNS)) for name in nets}
    for first in range(0, scenes, chunk):
        n = min(chunk, scenes - first)
        biased = helpers.make_shortcut_dataset(n, seed, start=first)
        unbiased = helpers.make_shortcut_dataset(n, seed, start=first, kind="random")
        swapped = helpers.make_shortcut_dataset(n, seed, start=first, kind="swapped")
        for name, net in nets.items():
            right = [(helpers.predict(net, images).argmax(1) == biased.labels).sum()
                     for images in (biased.images, unbiased.images, biased.clean, swapped.images)]
            follows = [(helpers.predict(net, images).argmax(1) == swapped.cue_labels).sum()
                       for images in (swapped.images, swapped.images.flip(-1))]
            counts[name] += torch.stack([*right, *follows]).float()
    return {name: (count / scenes).tolist() for name, count in counts.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000, help="scenes of each kind")
    parser.add_argument("--seed", type=int, default=1401, help="their seed (1401: the notebook's test scenes first)")
    args = parser.parse_args(argv)
    table = scores(models(), args.scenes, args.seed)
    print(f"| {args.scenes:,} scenes of seed {args.seed} | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{value:.1%}" for value in row) + " |")


if __name__ == "__main__":
    main()
