"""Train the embedded course model from scratch: ``python -m helpers.train [--variant robust|standard] [--out PATH]``.

Two phases: most epochs on 128x128 crops of the 224x224 scenes, each holding the whole object (the same pixel
scale as the full images, 5x faster per image on a CPU), then the last epoch on full 224x224 images, the
notebook resolution, while the learning rate anneals to zero. The GAP head lets the same weights take both
sizes; crops rather than smaller renders keep the objects' size in pixels the same in both phases.

The course model (``robust``) trains its last three epochs on adversarial images: each training image moved by
one FGSM step, ``x + fgsm_eps * sign(d loss / dx)`` (Goodfellow et al. 2015), the small change of every pixel
that raises its loss the most, with BatchNorm's statistics frozen (``frozen_epochs``). A model that must
classify such images cannot rest its score on single-pixel patterns of the clutter: its input gradient becomes
small off the object, so plain saliency maps find the object (Tsipras et al. 2019; Santurkar et al. 2019).
Gaussian input noise (``noise_std``) is the other option measured; docs/models.md says what each reached. The
``standard`` model is trained on clean images only.

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

from .data import CLASSES, IMAGE_SIZE, SHORTCUT_SIZE, ShapesBatch, make_dataset, make_shortcut_dataset
from .inference import evaluating
from .models import VGG11GAP
from .pretrained import save_checkpoint

TRAIN_SEED = 0
"""Seed of the training images; evaluation uses other seeds (see ``helpers.pretrained``)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The course model's recipe (the defaults); :data:`STANDARD` is the same without perturbations."""

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
    noise_std: float = 0.0
    """Std of Gaussian noise added to the normalised input in the perturbed epochs (after the FGSM step); 0: none."""
    fgsm_eps: float = 0.03
    """Size of the FGSM step (its gradient in eval mode) in normalised units, about 1.7/255 of the pixel range;
    0: none."""
    perturbed_epochs: int = 3
    """How many of the last epochs, counted over both phases (the full-size epochs come last), are perturbed
    (all of them if there are fewer)."""
    frozen_epochs: int = 3
    """How many of the perturbed epochs, the last ones, train with BatchNorm in eval mode: it normalises with its
    running statistics (from the epochs before), which then stay as they are (its scale and shift still learn), so
    that the network trained on perturbed images is exactly the network that is evaluated. With batch statistics
    the saliency maps find the object less well (docs/models.md)."""

    image_size: int = IMAGE_SIZE
    """Side of the full-size training images (the crops are windows of scenes of this size)."""
    cue_rate: float = 0.0
    """0: the shapes world. Above 0: the shortcut world of :func:`helpers.data.make_shortcut_dataset` (full-size
    images only), whose mark has the colour of the image's own class with this probability."""
    threads: int = 0
    """Intra-op threads torch trains with (0: as it is). The result depends on it: a recipe that sets it is
    reproduced bit for bit on any machine."""

    def __post_init__(self) -> None:
        if min(self.noise_std, self.fgsm_eps, self.perturbed_epochs, self.frozen_epochs) < 0:
            raise ValueError("noise_std, fgsm_eps, perturbed_epochs and frozen_epochs must not be negative")

    @property
    def perturbed(self) -> bool:
        """Whether any epoch sees perturbed images."""
        return self.perturbed_epochs > 0 and (self.noise_std > 0 or self.fgsm_eps > 0)

    def metadata(self) -> dict[str, float | int]:
        """The config as stored in a checkpoint. Without perturbations the perturbation fields are left out: the
        standard checkpoint predates them, and retraining it must write the same bytes."""
        fields = dataclasses.asdict(self)
        if not self.perturbed:
            for name in PERTURBATION_FIELDS:
                del fields[name]
        if self.cue_rate == 0:
            for name in SHORTCUT_FIELDS:
                del fields[name]
        return fields


PERTURBATION_FIELDS = ("noise_std", "fgsm_eps", "perturbed_epochs", "frozen_epochs")
"""The fields the standard checkpoint predates."""

SHORTCUT_FIELDS = ("image_size", "cue_rate", "threads")
"""The fields the checkpoints of the shapes world predate."""

STANDARD = TrainConfig(noise_std=0.0, fgsm_eps=0.0, perturbed_epochs=0, frozen_epochs=0)
"""The standard model: clean images only (``helpers/weights/vgg11_shapes_standard.pt``)."""

SHORTCUT = TrainConfig(
    crop_images=0, crop_epochs=0, full_images=6_000, full_epochs=5, image_size=SHORTCUT_SIZE, cue_rate=0.9,
    threads=1, noise_std=0.0, fgsm_eps=0.0, perturbed_epochs=0, frozen_epochs=0,
)
"""The shortcut model of notebook 14 (``helpers/weights/vgg11_shapes_shortcut.pt``): clean images of the biased
shortcut world at 128 px, where a mark of the class's colour sits near the top-right corner of 90% of them."""

VARIANTS = {"robust": TrainConfig(), "standard": STANDARD, "shortcut": SHORTCUT}
"""The recipes of the packaged checkpoints, by the variant names of :func:`helpers.load_pretrained`."""


def perturb(
    model: VGG11GAP, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig, noise: torch.Generator
) -> torch.Tensor:
    """The images a perturbed step trains on: an FGSM step if ``fgsm_eps > 0`` (its gradient in eval mode, as at
    test time, and without parameter gradients), then Gaussian noise of std ``noise_std`` drawn from ``noise``."""
    if config.fgsm_eps > 0:
        x = images.clone().requires_grad_()
        with evaluating(model), torch.enable_grad():
            (gradient,) = torch.autograd.grad(F.cross_entropy(model(x), labels), x)
        images = images + config.fgsm_eps * gradient.sign()
    if config.noise_std > 0:
        images = images + config.noise_std * torch.randn(images.shape, generator=noise)
    return images


def train(config: TrainConfig = TrainConfig(), progress: bool = True) -> VGG11GAP:
    """Train a :class:`VGG11GAP` on the shapes world and return it in eval mode."""
    threads = torch.get_num_threads()
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        return _train(config, progress)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig, progress: bool) -> VGG11GAP:
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
    noise = torch.Generator().manual_seed(config.seed + 1)  # a stream of its own: the clean epochs stay as they were
    all_epochs = config.crop_epochs + config.full_epochs
    first_perturbed = all_epochs - config.perturbed_epochs if config.perturbed else all_epochs
    first_frozen = all_epochs - min(config.frozen_epochs, config.perturbed_epochs) if config.perturbed else all_epochs
    epoch = 0  # counted over both phases
    with tqdm(total=steps, disable=not progress, unit="batch") as bar:
        for crop, n_images, epochs, first in phases:
            if n_images * epochs == 0:
                continue
            size = crop or config.image_size
            bar.set_description(f"rendering {n_images} images at {size}px")
            if config.cue_rate > 0:
                if crop is not None:
                    raise ValueError("the shortcut world trains on full-size images only: set crop_images=0")
                data = _shortcut_images(n_images, config.seed, config.image_size, first, config.cue_rate)
            else:
                data = make_dataset(n_images, config.seed, config.image_size, start=first, crop=crop)
            for phase_epoch in range(epochs):
                perturbed = epoch >= first_perturbed
                model.train(epoch < first_frozen)  # eval mode: BatchNorm's statistics frozen
                kind = (" perturbed" if perturbed else "") + (", BatchNorm frozen" if epoch >= first_frozen else "")
                bar.set_description(f"{size}px epoch {phase_epoch + 1}/{epochs}{kind}")
                for batch in torch.randperm(n_images, generator=order).split(config.batch_size):
                    images, labels = data.images[batch], data.labels[batch]
                    if perturbed:
                        images = perturb(model, images, labels, config, noise)
                    loss = F.cross_entropy(model(images), labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                    bar.update()
                epoch += 1
    return model.eval()


def _shortcut_images(n: int, seed: int, size: int, start: int, cue_rate: float, chunk: int = 500) -> ShapesBatch:
    """The marked images and labels of ``make_shortcut_dataset(n, seed, size, start=start, cue_rate=cue_rate)``,
    rendered ``chunk`` at a time so that the unmarked copies never pile up (half the memory)."""
    images, labels = [], []
    for first in range(start, start + n, chunk):
        batch = make_shortcut_dataset(min(chunk, start + n - first), seed, size, start=first, cue_rate=cue_rate)
        images.append(batch.images)
        labels.append(batch.labels)
    return ShapesBatch(torch.cat(images), torch.cat(labels), torch.empty(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="robust",
                        help="robust: the course model, adversarial last epochs (default); standard: clean images only; "
                        "shortcut: the model of notebook 14, trained on the biased shortcut world")
    parser.add_argument("--out", type=Path, help="checkpoint to write (default: build/vgg11_shapes[_standard].pt)")
    args = parser.parse_args()
    out = args.out or Path("build") / ("vgg11_shapes.pt" if args.variant == "robust" else f"vgg11_shapes_{args.variant}.pt")
    start = time.perf_counter()
    config = VARIANTS[args.variant]
    model = train(config)
    digest = save_checkpoint(model, out, config=config.metadata())
    print(f"trained in {time.perf_counter() - start:.0f} s; wrote {out} (sha256 {digest})")


if __name__ == "__main__":
    main()
