"""Label-consistent augmentation of one example: the image and its boxes change together.

Everything works on the model array (float32 [C, H, W], ink = 1, paper = 0, as made by
`imaging.to_model_array`) rather than on the full-size PNG: the array is small, so the
warps are cheap, and the boxes are normalised to the canvas, which the array stretches
to fill, so pixel and box coordinates stay in register.

Order of operations (why):
  1. element dropout - paints over a box with its local background; done first, while
     box and ink still coincide exactly (before any resampling blurs the edges);
  2. horizontal mirror - x -> 1 - x - w; the tokenizer re-sorts into reading order;
  3. translate/scale jitter - the same affine map for pixels and boxes, boxes clipped
     into [0, 1], boxes that vanish are dropped (never all of them);
  4. blur, then pixel noise - label-free, noise last so blur does not smooth it away.

Every random choice comes from the `rng` passed in, so a caller that derives the rng
from (seed, row id, epoch) gets the same augmentation on any process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from layoutray.config import DataConfig
from layoutray.model.tokenizer import Box

MIN_BOX = 1e-3  # normalised side below which a clipped box counts as vanished
MAX_JITTER = 0.25  # strength may reach 4x; a larger shift/scale stops being "small"


@dataclass(frozen=True)
class AugmentParams:
    """Effective probabilities and magnitudes: config values times `data.strength`."""

    mirror_p: float = 0.0
    jitter: float = 0.0
    noise_std: float = 0.0
    blur_p: float = 0.0
    dropout_p: float = 0.0

    @classmethod
    def from_config(cls, data: DataConfig) -> "AugmentParams":
        a, s = data.augment, data.strength
        return cls(mirror_p=min(1.0, a.mirror_p * s), jitter=min(MAX_JITTER, a.jitter * s),
                   noise_std=a.noise_std * s, blur_p=min(1.0, a.blur_p * s),
                   dropout_p=min(1.0, a.element_dropout_p * s))


# ---------------------------------------------------------------------------- dropout


def _area(a: Box, b: Box) -> float:
    """Area of the intersection of two boxes."""
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    return max(0.0, w) * max(0.0, h)


def droppable(boxes: list[Box]) -> list[int]:
    """Indices of elements that can be painted over without erasing another element.

    A box may sit inside a container (a button in a card): painting it with the local
    background keeps the card. A box that holds or partly overlaps another element cannot
    be painted over: the other element's ink would vanish while its label stays.
    """
    out = []
    for i, e in enumerate(boxes):
        ok = True
        for j, f in enumerate(boxes):
            if i == j:
                continue
            inter = _area(e, f)
            if inter > 1e-6 and inter < e.w * e.h - 1e-6:  # partial overlap
                ok = False
            elif inter > 1e-6 and e.w * e.h >= f.w * f.h - 1e-9:  # e contains (or equals) f
                ok = False
            if not ok:
                break
        if ok:
            out.append(i)
    return out


def _pixel_rect(b: Box, height: int, width: int, pad: int = 1) -> tuple[int, int, int, int]:
    # One pixel of padding covers the anti-aliased edge that bilinear resizing leaves.
    x0 = max(0, int(np.floor(b.x * width)) - pad)
    x1 = min(width, int(np.ceil((b.x + b.w) * width)) + pad)
    y0 = max(0, int(np.floor(b.y * height)) - pad)
    y1 = min(height, int(np.ceil((b.y + b.h) * height)) + pad)
    return x0, x1, y0, y1


def paint_over(image: np.ndarray, b: Box) -> None:
    """Fill box `b` (in place) with the median of the one-pixel ring around it."""
    _, height, width = image.shape
    x0, x1, y0, y1 = _pixel_rect(b, height, width)
    ring = []
    if y0 > 0:
        ring.append(image[:, y0 - 1, x0:x1])
    if y1 < height:
        ring.append(image[:, y1, x0:x1])
    if x0 > 0:
        ring.append(image[:, y0:y1, x0 - 1])
    if x1 < width:
        ring.append(image[:, y0:y1, x1])
    ring = [r for r in ring if r.size]
    fill = np.median(np.concatenate(ring, axis=1), axis=1) if ring else np.zeros(image.shape[0])
    image[:, y0:y1, x0:x1] = fill.astype(image.dtype)[:, None, None]


def element_dropout(image: np.ndarray | None, boxes: list[Box], rng: np.random.Generator,
                    p: float) -> list[Box]:
    """Remove elements with probability p from labels and image; at least one stays."""
    if p <= 0 or len(boxes) <= 1:
        return boxes
    candidates = droppable(boxes)
    draws = rng.random(len(candidates))
    drop = {i for i, d in zip(candidates, draws) if d < p}
    if len(drop) >= len(boxes):  # never an empty layout: keep the luckiest draw
        drop.discard(candidates[int(np.argmax(draws))])
    if image is not None:
        for i in drop:
            paint_over(image, boxes[i])
    return [b for i, b in enumerate(boxes) if i not in drop]


# ---------------------------------------------------------------------------- geometry


def mirror(image: np.ndarray | None, boxes: list[Box]) -> tuple[np.ndarray | None, list[Box]]:
    boxes = [Box(b.type, 1.0 - b.x - b.w, b.y, b.w, b.h) for b in boxes]
    return (None if image is None else np.ascontiguousarray(image[..., ::-1])), boxes


def _warp(image: np.ndarray, scale: float, tx: float, ty: float) -> np.ndarray:
    """Scale about the centre, then shift by (tx, ty) canvas fractions; paper fills in."""
    _, height, width = image.shape
    # PIL's affine maps an output point to an input point in continuous pixel coordinates:
    # x_in = (x_out - W/2 - tx*W) / s + W/2.
    a = 1.0 / scale
    c = width / 2 - (width / 2 + tx * width) / scale
    f = height / 2 - (height / 2 + ty * height) / scale
    out = np.empty_like(image)
    for ch in range(image.shape[0]):
        src = Image.fromarray(image[ch].astype(np.float32, copy=False), mode="F")
        out[ch] = np.asarray(src.transform((width, height), Image.AFFINE, (a, 0, c, 0, a, f),
                                           resample=Image.BILINEAR, fillcolor=0.0))
    return out


def jitter(image: np.ndarray | None, boxes: list[Box], rng: np.random.Generator,
           amount: float) -> tuple[np.ndarray | None, list[Box]]:
    """Small shift and scale of image and boxes together; clips boxes into [0, 1]."""
    if amount <= 0:
        return image, boxes
    scale = 1.0 + rng.uniform(-amount, amount)
    tx, ty = rng.uniform(-amount, amount, size=2)
    out = []
    for b in boxes:
        x0 = np.clip((b.x - 0.5) * scale + 0.5 + tx, 0.0, 1.0)
        x1 = np.clip((b.x + b.w - 0.5) * scale + 0.5 + tx, 0.0, 1.0)
        y0 = np.clip((b.y - 0.5) * scale + 0.5 + ty, 0.0, 1.0)
        y1 = np.clip((b.y + b.h - 0.5) * scale + 0.5 + ty, 0.0, 1.0)
        if x1 - x0 >= MIN_BOX and y1 - y0 >= MIN_BOX:
            out.append(Box(b.type, float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
    if not out:  # the whole layout slid off the canvas: skip this jitter instead
        return image, boxes
    return (None if image is None else _warp(image, scale, tx, ty)), out


# ---------------------------------------------------------------------------- pixels


def blur(image: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur (PIL's filters do not accept float images)."""
    out = image
    for _ in range(passes):
        p = np.pad(out, ((0, 0), (1, 1), (0, 0)), mode="edge")
        out = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
        p = np.pad(out, ((0, 0), (0, 0), (1, 1)), mode="edge")
        out = 0.25 * p[:, :, :-2] + 0.5 * p[:, :, 1:-1] + 0.25 * p[:, :, 2:]
    return out.astype(np.float32, copy=False)


def add_noise(image: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    # float32 draws: half the cost of float64 normal() and this is the hottest augmentation
    noisy = rng.standard_normal(image.shape, dtype=np.float32)
    noisy *= std
    noisy += image
    return np.clip(noisy, 0.0, 1.0, out=noisy)


# ---------------------------------------------------------------------------- all together


def augment(image: np.ndarray | None, boxes: list[Box], rng: np.random.Generator,
            params: AugmentParams) -> tuple[np.ndarray | None, list[Box]]:
    """Apply every augmentation in order. `image` may be None (spec-only example).

    The image is copied before painting, so the caller's array is never changed.
    """
    if image is not None:
        image = np.array(image, dtype=np.float32, copy=True)
    # Draw every decision up front so that the random stream does not depend on which
    # branches ran (an example keeps its mirror choice when dropout changes, and so on).
    do_mirror = rng.random() < params.mirror_p
    do_blur = rng.random() < params.blur_p
    blur_passes = int(rng.integers(1, 3))
    drop_rng, jitter_rng, noise_rng = rng.spawn(3)

    boxes = element_dropout(image, boxes, drop_rng, params.dropout_p)
    if do_mirror:
        image, boxes = mirror(image, boxes)
    image, boxes = jitter(image, boxes, jitter_rng, params.jitter)
    if image is not None:
        if do_blur:
            image = blur(image, blur_passes)
        if params.noise_std > 0:
            image = add_noise(image, noise_rng, params.noise_std)
    return image, boxes
