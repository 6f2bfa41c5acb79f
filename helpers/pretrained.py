"""The embedded course model, loaded from a checkpoint in the package and verified by SHA-256.

:func:`load_pretrained` never touches the network. Three checkpoints ship: the course model (``variant="robust"``,
the default), trained on adversarial (FGSM) images in its last epochs, the ``"standard"`` model, the same
network trained on clean images only, and the ``"shortcut"`` model of notebook 14, trained on a biased world. :func:`load_imagenet_vgg11` is the explicit opt-in for users who are
online: torchvision's ImageNet ``vgg11_bn`` weights mapped onto the assignment's layer names.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from .data import CLASSES
from .models import VGG11Classification, VGG11GAP, torchvision_to_course_names

WEIGHTS = Path(__file__).parent / "weights"

CHECKPOINT = WEIGHTS / "vgg11_shapes.pt"
CHECKPOINT_SHA256 = "33686259381f4d2d0c651bcba200f1173036d268e403e0f64062d6e8c627fb95"
"""The course model (``variant="robust"``), written by ``python -m helpers.train --out helpers/weights/vgg11_shapes.pt``
bit for bit; a mismatch fails loudly."""

STANDARD_CHECKPOINT = WEIGHTS / "vgg11_shapes_standard.pt"
STANDARD_CHECKPOINT_SHA256 = "9935d648ad7b407234a47addb13170928c08f16433fb9b7885b7b5a0c148eaf4"
"""The standard model, trained on clean images only: ``python -m helpers.train --variant standard``."""

SHORTCUT_CHECKPOINT = WEIGHTS / "vgg11_shapes_shortcut.pt"
SHORTCUT_CHECKPOINT_SHA256 = "44db0b63a28ba20989bd545a9db5ce3510f8243577ff61c2fa6597f8310987dc"
"""The shortcut model of notebook 14, trained on the biased shortcut world at 128 px (a mark of the class's colour
near the top-right corner of 90% of the images): ``python -m helpers.train --variant shortcut``."""

VARIANTS: dict[str, tuple[Path, str]] = {
    "robust": (CHECKPOINT, CHECKPOINT_SHA256),
    "standard": (STANDARD_CHECKPOINT, STANDARD_CHECKPOINT_SHA256),
    "shortcut": (SHORTCUT_CHECKPOINT, SHORTCUT_CHECKPOINT_SHA256),
}
"""The packaged checkpoints by the name :func:`load_pretrained` takes: ``variant -> (file, SHA-256)``."""

PACKAGED = "packaged"
"""The default of ``load_pretrained(expected_sha256=...)``: the packaged hash of the chosen variant."""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_checkpoint(model: VGG11GAP, path: Path, **metadata: Any) -> str:
    """Write ``model`` with what is needed to rebuild it; return the file's SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # clones: no shared storage in the file
    buffer = io.BytesIO()  # not torch.save(path): the zip would be named after the file, and so its bytes
    torch.save({"classes": list(CLASSES), "width": model.backbone.width, "state_dict": state, **metadata}, buffer)
    path.write_bytes(buffer.getvalue())
    return sha256(path)


def load_pretrained(
    path: Path | None = None, expected_sha256: str | None = PACKAGED, *, variant: str = "robust"
) -> VGG11GAP:
    """The embedded model, in eval mode, on the CPU.

    Args:
        path: a checkpoint written by ``python -m helpers.train``; the packaged one of ``variant`` by default.
        expected_sha256: the file's expected hash, by default the packaged hash of ``variant``; ``None`` skips
            the check (for your own checkpoints).
        variant: ``"robust"``, the course model, trained on adversarial (FGSM) images in its last epochs so that its
            saliency maps find the object; or ``"standard"``, the same network trained on clean images only,
            as accurate and with as good Grad-CAM maps, but with saliency maps at chance; or ``"shortcut"``, the
            same network trained on the biased world of :func:`helpers.data.make_shortcut_dataset` at 128 px, which
            learned the shortcut (notebook 14).

    Raises:
        FileNotFoundError: the checkpoint is missing.
        ValueError: an unknown variant, or a hash other than ``expected_sha256`` (a corrupt or replaced file).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(map(repr, VARIANTS))}")
    packaged_path, packaged_sha256 = VARIANTS[variant]
    path = packaged_path if path is None else Path(path)
    if expected_sha256 == PACKAGED:
        expected_sha256 = packaged_sha256
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; retrain with `python -m helpers.train --out {path}`")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and actual != expected_sha256:
        raise ValueError(
            f"checkpoint {path} has SHA-256 {actual}, expected {expected_sha256}: the file is corrupt or was "
            "replaced. Copy helpers/weights/ again from the course zip (in a clone: `git checkout -- helpers/weights`)."
        )
    checkpoint = _unpickled(actual, data)
    model = VGG11GAP(len(checkpoint["classes"]), width=checkpoint["width"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


_UNPICKLED: dict[str, dict[str, Any]] = {}
"""Checkpoints already read, by the SHA-256 of their bytes (the latest few)."""


def _unpickled(digest: str, data: bytes) -> dict[str, Any]:
    """The checkpoint whose bytes are ``data`` (SHA-256 ``digest``), unpickled once: a model is built from it
    each time (``load_state_dict`` copies its tensors), so later loads skip the 7 ms of ``torch.load``."""
    if digest not in _UNPICKLED:
        while len(_UNPICKLED) >= 4:
            del _UNPICKLED[next(iter(_UNPICKLED))]
        _UNPICKLED[digest] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return _UNPICKLED[digest]


def load_imagenet_vgg11(weights_path: Path | None = None, *, progress: bool = False) -> VGG11Classification:
    """torchvision's ImageNet ``vgg11_bn`` (``IMAGENET1K_V1``) as a :class:`VGG11Classification`, in eval mode.

    Downloads the weights (~507 MB, cached by torch hub) unless ``weights_path`` names a local copy of the
    torchvision state dict. This is the only function of the package that may use the network.
    """
    if weights_path is not None:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    else:
        from torchvision.models import VGG11_BN_Weights  # noqa: PLC0415

        state = VGG11_BN_Weights.IMAGENET1K_V1.get_state_dict(progress=progress)
    model = VGG11Classification(num_classes=1000)
    model.load_state_dict(torchvision_to_course_names(state))
    return model.eval()
