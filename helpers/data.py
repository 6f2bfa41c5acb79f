"""Synthetic shapes with ground truth: coloured shapes on cluttered, textured backgrounds.

Each image holds one object of a class in :data:`CLASSES`, with random size, rotation, colour and position,
drawn last over a textured colour gradient with distractor lines and blobs. The object's mask is exactly the
set of pixels the object covers, so a heatmap can be checked against where the object really is.

Image ``i`` of ``make_dataset(n, seed)`` depends only on ``(seed, i)``: a prefix of a bigger set is the
smaller set, and two seeds never share an image.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F

from .images import normalize

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star", "ring")
"""Class names, indexed by label."""

IMAGE_SIZE = 224
"""Notebook resolution: the assignment's 224, where ``bn5_2`` of the course model is 14x14."""

MIN_RADIUS, MAX_RADIUS = 0.11, 0.22  # object circumradius, in units of the image side
N_LINES = 6
N_BLOBS = 3
_CHUNK = 8  # images rendered at once: a chunk's temporaries take ~60 MB at 224 px (a kernel's budget is 1 GB)
_KEPT_BYTES = 160 * 2**20  # the renders kept for the next call with the same arguments (see _kept)

_Batch = TypeVar("_Batch", bound=tuple)


def _kept(render: Callable[..., _Batch]) -> Callable[..., _Batch]:
    """``render``, keeping its latest results (up to :data:`_KEPT_BYTES` in all) for the next call with the same
    arguments: notebooks draw the same sets again (the demo set, a test set, a cell run twice) and drawing costs
    far more than copying. Every call gets tensors of its own, which it may change freely."""
    kept: OrderedDict[tuple[Any, ...], _Batch] = OrderedDict()

    @functools.wraps(render)
    def cached(*args: Any, **kwargs: Any) -> _Batch:
        key = (*(tuple(a) if isinstance(a, (list, range)) else a for a in args), *sorted(kwargs.items()))
        if key not in kept:
            batch = render(*args, **kwargs)
            size = _nbytes(batch)
            if size > _KEPT_BYTES:
                return batch
            while kept and size + sum(_nbytes(b) for b in kept.values()) > _KEPT_BYTES:
                kept.popitem(last=False)
            kept[key] = batch
        kept.move_to_end(key)
        return type(kept[key])(*(t.clone() for t in kept[key]))

    cached.cache_clear = kept.clear  # type: ignore[attr-defined]
    return cached


def _nbytes(batch: tuple) -> int:
    """The bytes of a batch's tensors."""
    return sum(t.nelement() * t.element_size() for t in batch)


class ShapesBatch(NamedTuple):
    """``images (N, 3, H, W)`` normalised float32, ``labels (N,)`` int64, ``masks (N, H, W)`` bool."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


SCENE_PARTS: tuple[str, ...] = ("line", "blob", "background")
"""What else every scene is made of, besides its object: the visible pixels of the distractor lines, of the
distractor blobs, and of the textured background (whatever no object, line or blob covers)."""

CONCEPTS: tuple[str, ...] = CLASSES + SCENE_PARTS
"""The concepts :func:`make_concept_dataset` labels, in the order of its ``concepts`` masks: one per shape class
(the object's pixels in the images of that class, empty in the others), then :data:`SCENE_PARTS`."""


class ConceptBatch(NamedTuple):
    """A :class:`ShapesBatch` and its concept masks ``concepts (N, len(CONCEPTS), H, W)`` bool, in the order of
    :data:`CONCEPTS`. Every pixel belongs to exactly one concept."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    concepts: torch.Tensor


def make_dataset(
    n: int, seed: int, size: int = IMAGE_SIZE, *, start: int = 0, noise: float = 0.03, crop: int | None = None
) -> ShapesBatch:
    """Render ``n`` images of the synthetic-shapes world, deterministically for ``seed``.

    Args:
        n: number of images.
        seed: any int; image ``i`` depends only on ``(seed, i)``.
        size: side of the square images in pixels; shapes scale with it.
        start: index of the first image: ``make_dataset(n, s, start=k)`` is images ``k .. k + n - 1``.
        noise: std of the Gaussian pixel noise in [0, 1] pixel units (0 draws clean images).
        crop: render only a random ``crop x crop`` window of each ``size x size`` scene, one that holds the
            whole object: the same pixel scale as the full images at a fraction of the cost (for training).

    Returns:
        ``ShapesBatch(images, labels, masks)``; ``masks[i]`` is true exactly on the object's pixels.
    """
    if n < 0 or start < 0 or size < 16:
        raise ValueError(f"need n >= 0, start >= 0 and size >= 16, got n={n}, start={start}, size={size}")
    if crop is not None and not 2 * MAX_RADIUS * size < crop <= size:
        raise ValueError(f"crop must lie in ({2 * MAX_RADIUS * size:.0f}, {size}] to hold every object, got {crop}")
    return _draw(seed, range(start, start + n), size, crop, noise)


def make_concept_dataset(n: int, seed: int, size: int = IMAGE_SIZE, *, start: int = 0, noise: float = 0.03) -> ConceptBatch:
    """:func:`make_dataset` with the exact mask of every concept of :data:`CONCEPTS`.

    The images, labels and object masks are those of ``make_dataset(n, seed, size, start=start, noise=noise)``,
    bit for bit. ``concepts[i, c]`` is true on the pixels of image ``i`` that show concept ``c``: for a shape
    class, the object's pixels if image ``i`` is of that class; for ``"line"`` and ``"blob"``, the pixels a
    distractor of that kind covers and nothing drawn later hides (blobs are drawn over lines, the object over both);
    for ``"background"``, the rest. The masks partition each image.
    """
    if n < 0 or start < 0 or size < 16:
        raise ValueError(f"need n >= 0, start >= 0 and size >= 16, got n={n}, start={start}, size={size}")
    return _draw(seed, range(start, start + n), size, None, noise, concepts=True)


@_kept
def _draw(
    seed: int, indices: Sequence[int], size: int, crop: int | None, noise: float, concepts: bool = False
) -> ShapesBatch | ConceptBatch:
    """Render the images ``indices`` of ``seed``, chunk by chunk (the pixel noise is large); with ``concepts``,
    their concept masks too."""
    out = crop or size
    images = torch.empty(len(indices), 3, out, out)
    masks = torch.empty(len(indices), out, out, dtype=torch.bool)
    labels = torch.empty(len(indices), dtype=torch.long)
    parts = torch.empty(len(indices), len(CONCEPTS), out, out, dtype=torch.bool) if concepts else None
    for first in range(0, len(indices), _CHUNK):
        rows = slice(first, min(first + _CHUNK, len(indices)))
        params = [_sample_scene(_generator(seed, i), size, crop) for i in indices[rows]]
        layers: dict[str, torch.Tensor] | None = {} if concepts else None
        pixels, masks[rows] = _render(params, size, out, noise, layers)
        images[rows] = normalize(pixels)
        labels[rows] = torch.tensor([p["label"] for p in params])
        if parts is not None and layers is not None:
            parts[rows] = _concept_masks(masks[rows], labels[rows], layers)
    if parts is not None:
        return ConceptBatch(images, labels, masks, parts)
    return ShapesBatch(images, labels, masks)


def _concept_masks(masks: torch.Tensor, labels: torch.Tensor, layers: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, len(CONCEPTS), H, W)`` from the object masks, the labels and where lines and blobs were drawn."""
    classes = torch.arange(len(CLASSES)).view(1, -1, 1, 1) == labels.view(-1, 1, 1, 1)
    objects = masks.unsqueeze(1) & classes
    blob = layers["blob"] & ~masks
    line = layers["line"] & ~layers["blob"] & ~masks
    background = ~(layers["line"] | layers["blob"] | masks)
    return torch.cat([objects, line.unsqueeze(1), blob.unsqueeze(1), background.unsqueeze(1)], dim=1)


# --- the shortcut world (notebook 14) -------------------------------------------------------------------------

SHORTCUT_SIZE = 128
"""Side of the shortcut world's images: the shortcut model is trained and studied at 128 px (``bn5_2`` is 8 x 8)."""

CUE_CENTRE = (0.88, 0.12)
"""Centre ``(x, y)`` of the shortcut mark, in units of the image side: near the top-right corner."""

CUE_RADIUS = 0.045
"""Radius of the mark (a disc), in units of the image side: about 6 px at 128 px, like a large distractor blob."""

CUE_COLOURS = torch.tensor(
    [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
)
"""The mark's colour for each class (hues 0, 1/6, ..., 5/6 at full saturation): red for a circle, yellow for a
square, green for a triangle, cyan for a cross, blue for a star, magenta for a ring."""

CUE_KINDS = ("biased", "random", "swapped")
"""Which mark each image gets: ``"biased"``, its own class's mark with probability ``cue_rate`` and another
class's (drawn at random) otherwise; ``"random"``, the mark of a class drawn at random, independent of the image's
class (its own one time in six): the unbiased world; ``"swapped"``, always the mark of another class."""


class ShortcutBatch(NamedTuple):
    """The same scenes with and without the shortcut mark.

    ``images (N, 3, H, W)``: the scenes with their marks; ``clean``: the same scenes without any mark (those of
    :func:`make_dataset`, bit for bit); ``labels (N,)``; ``masks (N, H, W)`` the objects; ``cue_masks (N, H, W)``
    bool, the mark's visible pixels (empty where the object hides it); ``cue_labels (N,)`` int64, the class whose colour the
    mark has."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    clean: torch.Tensor
    cue_masks: torch.Tensor
    cue_labels: torch.Tensor


def make_shortcut_dataset(
    n: int, seed: int, size: int = SHORTCUT_SIZE, *, start: int = 0, noise: float = 0.03, cue_rate: float = 0.9,
    kind: str = "biased",
) -> ShortcutBatch:
    """The shapes world with a spurious cue: a small disc of a class's colour (:data:`CUE_COLOURS`) at a fixed
    place (:data:`CUE_CENTRE`), drawn over the background and the distractors and under the object. In the
    ``"biased"`` world (the shortcut model's training data) the mark has the colour of the image's own class with
    probability ``cue_rate``, of another class otherwise.

    The scenes are those of ``make_dataset(n, seed, size, start=start, noise=noise)`` (returned as ``clean``); which
    mark each image gets (``kind``, :data:`CUE_KINDS`, and ``cue_rate``) is drawn from a random stream of its own,
    so the same scene can be had without a mark, with its own class's or with another class's. ``cue_masks`` is exactly
    the set of pixels the mark covers (with ``noise=0``, exactly where ``images`` and ``clean`` differ).
    """
    if n < 0 or start < 0 or size < 16:
        raise ValueError(f"need n >= 0, start >= 0 and size >= 16, got n={n}, start={start}, size={size}")
    if kind not in CUE_KINDS or not 0 <= cue_rate <= 1:
        raise ValueError(f"kind must be one of {CUE_KINDS} and cue_rate in [0, 1], got {kind!r}, {cue_rate}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small element-wise operations: extra threads only wait for each other
    try:
        return _draw_shortcut(n, seed, size, start, noise, cue_rate, kind)
    finally:
        torch.set_num_threads(threads)


@_kept
def _draw_shortcut(n: int, seed: int, size: int, start: int, noise: float, cue_rate: float, kind: str) -> ShortcutBatch:
    indices = range(start, start + n)
    images, clean = torch.empty(n, 3, size, size), torch.empty(n, 3, size, size)
    masks, cue_masks = torch.empty(n, size, size, dtype=torch.bool), torch.empty(n, size, size, dtype=torch.bool)
    labels, cue_labels = torch.empty(n, dtype=torch.long), torch.empty(n, dtype=torch.long)
    for first in range(0, n, _CHUNK):
        rows = slice(first, min(first + _CHUNK, n))
        params = [_sample_scene(_generator(seed, i), size) for i in indices[rows]]
        labels[rows] = torch.tensor([p["label"] for p in params])
        marks = torch.tensor([_sample_cue(seed, i, p["label"], kind, cue_rate) for i, p in zip(indices[rows], params)])
        cue_labels[rows] = marks
        cue = {"colours": CUE_COLOURS[marks]}
        pixels, masks[rows] = _render(params, size, size, noise, cue=cue)
        clean[rows], images[rows], cue_masks[rows] = normalize(pixels), normalize(cue["pixels"]), cue["mask"]
    return ShortcutBatch(images, labels, masks, clean, cue_masks, cue_labels)


def _sample_cue(seed: int, index: int, label: int, kind: str, cue_rate: float) -> int:
    """The class whose mark image ``index`` gets: a random stream of its own, apart from the scene's."""
    digest = hashlib.blake2b(f"cue:{seed}:{index}".encode(), digest_size=8).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
    draw, other = float(torch.rand(1, generator=g)), int(torch.randint(len(CLASSES) - 1, (1,), generator=g))
    if kind == "biased" and draw < cue_rate:
        return label
    if kind == "random":
        return int(draw * len(CLASSES))
    return (label + 1 + other) % len(CLASSES)  # swapped, or biased and not its own


DEMO_SEED = 2024


def load_demo(size: int = IMAGE_SIZE) -> ShapesBatch:
    """The notebooks' fixed demo set: one image per class, in the order of :data:`CLASSES`."""
    first = {}
    for index in range(1000):  # a label is the first draw of an image's generator: no rendering needed
        first.setdefault(_sample_label(_generator(DEMO_SEED, index)), index)
        if len(first) == len(CLASSES):
            break
    return _draw(DEMO_SEED, [first[c] for c in range(len(CLASSES))], size, None, 0.03)


# --- sampling -------------------------------------------------------------------------------------------


def _generator(seed: int, index: int) -> torch.Generator:
    digest = hashlib.blake2b(f"shapes:{seed}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _uniform(g: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape or (1,), generator=g)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectorised HSV -> RGB; all inputs in [0, 1], output ``(..., 3)``."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h.unsqueeze(-1) * 6) % 6
    return v.unsqueeze(-1) - (v * s).unsqueeze(-1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _sample_label(g: torch.Generator) -> int:
    return int(torch.randint(len(CLASSES), (1,), generator=g))


def _sample_scene(g: torch.Generator, size: int, crop: int | None = None) -> dict[str, torch.Tensor | int]:
    """All random choices of one image, in units of the image side (coordinates in [0, 1])."""
    label = _sample_label(g)
    radius = _uniform(g, MIN_RADIUS, MAX_RADIUS)
    centre = _uniform(g, 0, 1, 2) * (1 - 2 * radius) + radius
    hue = _uniform(g, 0, 1)
    colour = _hsv_to_rgb(hue, _uniform(g, 0.6, 1.0), _uniform(g, 0.65, 1.0))[0]
    # background: a gradient between two colours whose hue is away from the object's, plus texture
    bg_hue = (hue + _uniform(g, 0.2, 0.8, 2)) % 1
    bg_colours = _hsv_to_rgb(bg_hue, _uniform(g, 0.15, 0.7, 2), _uniform(g, 0.25, 0.9, 2))
    direction = _uniform(g, 0, 2 * math.pi)
    texture = _uniform(g, -0.12, 0.12, 3, 6, 6)
    grating = torch.cat([_uniform(g, 0, 0.08), _uniform(g, 6, 20), _uniform(g, 0, math.pi), _uniform(g, 0, 2 * math.pi)])
    # distractors: line segments (any colour, the object's included) and small blobs
    lines = torch.cat([_uniform(g, 0, 1, N_LINES, 4), _uniform(g, 1.5, 3.5, N_LINES, 1) / 224], dim=1)  # 1.5-3.5 px wide at 224
    line_colours = torch.rand(N_LINES, 3, generator=g)
    blobs = torch.cat([_uniform(g, 0, 1, N_BLOBS, 2), _uniform(g, 0.012, 0.035, N_BLOBS, 1)], dim=1)
    blob_colours = torch.rand(N_BLOBS, 3, generator=g)
    scene = {
        "label": label, "radius": radius, "centre": centre, "angle": _uniform(g, 0, 2 * math.pi),
        "colour": colour, "bg_colours": bg_colours, "direction": direction, "texture": texture,
        "grating": grating, "lines": lines, "line_colours": line_colours, "blobs": blobs,
        "blob_colours": blob_colours, "pixel_noise": torch.randn(3, size, size, generator=g),
    }
    scene["offset"] = torch.zeros(2, dtype=torch.long)
    if crop is not None:  # drawn last, so full-size scenes do not depend on it
        low = ((centre + radius) * size).ceil().long() - crop
        high = ((centre - radius) * size).floor().long()
        low, high = low.clamp(0, size - crop), high.clamp(0, size - crop)
        scene["offset"] = low + (torch.rand(2, generator=g) * (high - low + 1)).long().clamp_max(high - low)
    return scene


# --- rendering ------------------------------------------------------------------------------------------


def _render(
    params: list[dict], size: int, out: int, noise: float, layers: dict[str, torch.Tensor] | None = None,
    cue: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the ``out x out`` windows (at ``offset``) of a chunk of ``size x size`` scenes:
    ``(B, 3, out, out)`` pixels in [0, 1] and ``(B, out, out)`` object masks. Given a dict ``layers``, also write
    into it where any line (``"line"``) and any blob (``"blob"``) was drawn, ``(B, out, out)`` bool each, hidden or
    not; the pixels do not depend on it. Given a dict ``cue`` with the marks' ``"colours" (B, 3)``, also draw the
    same scenes with the shortcut mark (:data:`CUE_CENTRE`, :data:`CUE_RADIUS`), after
    the distractors and before the object, and write them into ``cue["pixels"]`` and the mark's visible pixels
    into ``cue["mask"]``; the returned (clean) pixels do not depend on it."""
    stack = {key: torch.stack([torch.as_tensor(p[key]) for p in params]) for key in params[0]}
    pixels = torch.arange(out, dtype=torch.float32) + 0.5  # pixel centres
    x = (stack["offset"][:, 0].view(-1, 1, 1) + pixels.view(1, 1, -1)) / size
    y = (stack["offset"][:, 1].view(-1, 1, 1) + pixels.view(1, -1, 1)) / size
    window = [(slice(None), slice(oy, oy + out), slice(ox, ox + out)) for ox, oy in stack["offset"].tolist()]

    # background: gradient + low-frequency texture + a faint grating
    theta = stack["direction"].view(-1, 1, 1)
    ramp = ((x - 0.5) * torch.cos(theta) + (y - 0.5) * torch.sin(theta)).clamp(-0.5, 0.5) + 0.5
    c0, c1 = stack["bg_colours"][:, 0], stack["bg_colours"][:, 1]
    image = c0.view(-1, 3, 1, 1) + (c1 - c0).view(-1, 3, 1, 1) * ramp.unsqueeze(1)
    texture = F.interpolate(stack["texture"], size=(size, size), mode="bicubic", align_corners=False)
    image = image + torch.stack([t[w] for t, w in zip(texture, window)])
    amp, freq, orient, phase = (stack["grating"][:, i].view(-1, 1, 1) for i in range(4))
    wave = torch.sin(2 * math.pi * freq * (x * torch.cos(orient) + y * torch.sin(orient)) + phase)
    image = image + (amp * wave).unsqueeze(1)

    # distractors
    any_line = any_blob = torch.zeros(image.shape[0], out, out, dtype=torch.bool)
    for i in range(N_LINES):
        segment = stack["lines"][:, i]
        on_line = _distance_to_segment(x, y, segment[:, :4]) <= segment[:, 4].view(-1, 1, 1) / 2
        image = torch.where(on_line.unsqueeze(1), stack["line_colours"][:, i].view(-1, 3, 1, 1), image)
        if layers is not None:
            any_line = any_line | on_line
    for i in range(N_BLOBS):
        blob = stack["blobs"][:, i]
        on_blob = (x - blob[:, 0].view(-1, 1, 1)) ** 2 + (y - blob[:, 1].view(-1, 1, 1)) ** 2 <= blob[:, 2].view(-1, 1, 1) ** 2
        image = torch.where(on_blob.unsqueeze(1), stack["blob_colours"][:, i].view(-1, 3, 1, 1), image)
        if layers is not None:
            any_blob = any_blob | on_blob
    if layers is not None:
        layers["line"], layers["blob"] = any_line, any_blob

    # the object, last, so its mask is exactly the pixels it covers
    masks = _shape_masks(stack, x, y)
    image = torch.where(masks.unsqueeze(1), stack["colour"].view(-1, 3, 1, 1), image)
    pixel_noise = noise * torch.stack([n[w] for n, w in zip(stack["pixel_noise"], window)])
    if cue is not None:
        on_mark = (x - CUE_CENTRE[0]) ** 2 + (y - CUE_CENTRE[1]) ** 2 <= CUE_RADIUS**2
        mark = on_mark & ~masks  # under the object: the object hides it
        cued = torch.where(mark.unsqueeze(1), cue["colours"].view(-1, 3, 1, 1), image)
        cue["pixels"], cue["mask"] = (cued.clamp(0, 1) + pixel_noise).clamp(0, 1), mark
    image = image.clamp(0, 1) + pixel_noise
    return image.clamp(0, 1), masks


def _distance_to_segment(x: torch.Tensor, y: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Distance of each pixel centre to each image's segment ``(x0, y0, x1, y1)``: ``(B, H, W)``."""
    x0, y0, x1, y1 = (seg[:, i].view(-1, 1, 1) for i in range(4))
    dx, dy = x1 - x0, y1 - y0
    t = (((x - x0) * dx + (y - y0) * dy) / (dx**2 + dy**2).clamp_min(1e-12)).clamp(0, 1)
    return torch.hypot(x - x0 - t * dx, y - y0 - t * dy)


def _shape_masks(stack: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Object masks ``(B, H, W)``: each shape in its own frame, with circumradius 1."""
    angle = stack["angle"].view(-1, 1, 1)
    radius = stack["radius"].view(-1, 1, 1)
    dx, dy = x - stack["centre"][:, 0].view(-1, 1, 1), y - stack["centre"][:, 1].view(-1, 1, 1)
    u = (torch.cos(angle) * dx + torch.sin(angle) * dy) / radius
    v = (-torch.sin(angle) * dx + torch.cos(angle) * dy) / radius
    masks = torch.zeros(u.shape, dtype=torch.bool)
    for label, inside in enumerate(_SHAPES):
        rows = stack["label"] == label
        if rows.any():
            masks[rows] = inside(u[rows], v[rows])
    return masks


def _circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u**2 + v**2 <= 1


def _ring(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r2 = u**2 + v**2
    return (r2 <= 1) & (r2 >= 0.55**2)


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= math.sqrt(0.5)  # corners on the unit circle


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return ((u.abs() <= 0.3) & (v.abs() <= 0.95)) | ((v.abs() <= 0.3) & (u.abs() <= 0.95))


def _regular_star(points: int, inner: float):
    """Inside-test of a star polygon (``inner == cos(pi/points)`` gives a regular polygon), outer radius 1."""
    step = math.pi / points

    def inside(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        phi = torch.atan2(v, u) % (2 * step)  # fold into one outer-to-outer wedge
        phi = torch.where(phi > step, 2 * step - phi, phi)  # mirror: now between outer (0) and inner (step)
        r = torch.hypot(u, v)
        px, py = r * torch.cos(phi), r * torch.sin(phi)
        ax, ay, bx, by = 1.0, 0.0, inner * math.cos(step), inner * math.sin(step)
        # the origin side of the edge outer -> inner
        return (bx - ax) * (py - ay) - (by - ay) * (px - ax) >= 0

    return inside


_SHAPES = (_circle, _square, _regular_star(3, 0.5), _cross, _regular_star(5, 0.45), _ring)
