"""Train the embedded course model from scratch: ``python -m helpers.train [--out PATH]``.

Two phases: most epochs on 128x128 crops of the 224x224 scenes, each holding the whole object (the same pixel
scale as the full images, 5x faster per image on a CPU), then the last epoch on full 224x224 images, the
notebook resolution, while the learning rate anneals to zero. The GAP head lets the same weights take both
sizes; crops rather than smaller renders keep the objects' size in pixels the same in both phases.

Seeded end to end: the same torch build and thread count reproduce the checkpoint bit for bit.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import CLASSES, IMAGE_SIZE, make_dataset
from .models import VGG11GAP
from .pretrained import save_checkpoint

TRAIN_SEED = 0
"""Seed of the training images; evaluation uses other seeds (see ``helpers.pretrained``)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    width: float = 1 / 8
    crop: int = 128
    crop_images: int = 12_000
    crop_epochs: int = 8
    full_images: int = 3_000
    full_epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = TRAIN_SEED


def train(config: TrainConfig = TrainConfig(), progress: bool = True) -> VGG11GAP:
    """Train a :class:`VGG11GAP` on the shapes world and return it in eval mode."""
    torch.manual_seed(config.seed)
    model = VGG11GAP(len(CLASSES), width=config.width)
    phases = [  # (crop, images, epochs, index of the first image): each phase its own images
        (config.crop, config.crop_images, config.crop_epochs, 0),
        (None, config.full_images, config.full_epochs, config.crop_images),
    ]
    steps = sum(epochs * -(-images // config.batch_size) for _, images, epochs, _ in phases)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.2)
    order = torch.Generator().manual_seed(config.seed)
    model.train()
    with tqdm(total=steps, disable=not progress, unit="batch") as bar:
        for crop, n_images, epochs, first in phases:
            size = crop or IMAGE_SIZE
            bar.set_description(f"rendering {n_images} images at {size}px")
            data = make_dataset(n_images, config.seed, IMAGE_SIZE, start=first, crop=crop)
            for epoch in range(epochs):
                bar.set_description(f"{size}px epoch {epoch + 1}/{epochs}")
                for batch in torch.randperm(n_images, generator=order).split(config.batch_size):
                    loss = F.cross_entropy(model(data.images[batch]), data.labels[batch])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                    bar.update()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/vgg11_shapes.pt"), help="checkpoint to write")
    args = parser.parse_args()
    start = time.perf_counter()
    config = TrainConfig()
    model = train(config)
    digest = save_checkpoint(model, args.out, config=dataclasses.asdict(config))
    print(f"trained in {time.perf_counter() - start:.0f} s; wrote {args.out} (sha256 {digest})")


if __name__ == "__main__":
    main()
