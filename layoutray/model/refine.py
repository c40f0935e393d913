"""The `advanced` level's post-hoc refinement: a small constrained box optimisation per layout.

A direct box optimisation in the spirit of LayoutGAN++'s constrained optimisation (Kikuchi et al.,
ACM MM 2021), run on the generated boxes themselves instead of a latent code:

    minimise   alignment(B) + overlap(B) + proximity * |B - B0|^2
    subject to every box inside the canvas, and IoU(b_i, b0_i) >= refine_min_iou for every box

where alignment and overlap are the differentiable LayoutGAN++ terms of constraints.py (overlap over
the pairs the aesthetic score forbids in B0: a container holding a child may keep it) and B0 are the
model's boxes. Sign-gradient steps (`refine_steps` of `refine_lr`) run on the whole batch at once; each projects the
boxes back onto the canvas. Any box whose IoU with its generated box fell under the bound is then
pulled back along the straight line to it (bisection) until the bound holds.

Gradients bring lines close but rarely onto each other, so a snapping pass follows: each element,
in turn, moves (without resizing) by the smallest offset that puts one of its lines on the same
line of another element, on each axis, when that offset is at most SNAP_DISTANCE, the IoU bound
still holds and it makes no forbidden overlap. A layout keeps its refined boxes only where that
raises its aesthetic score (eval/aesthetic.py): refinement never lowers the score, never changes an
element's type and never adds or drops an element.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from layoutray.config import AestheticConfig
from layoutray.model.constraints import soft_alignment
from layoutray.model.tokenizer import Box

MIN_SIZE = 1.0 / 127  # a box keeps at least one coordinate bin of width and height
PROXIMITY = 4.0  # weight of the squared distance to the generated boxes
BISECTION_STEPS = 12
SNAP_DISTANCE = 0.03  # the snapping pass moves an element at most this far (a share of the canvas)


def box_iou_tensor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of matching boxes [..., 4] (x, y, w, h)."""
    iw = (torch.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.ones_like(union))


def _project(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes clamped onto the canvas with at least MIN_SIZE of width and height."""
    w = boxes[..., 2].clamp(MIN_SIZE, 1.0)
    h = boxes[..., 3].clamp(MIN_SIZE, 1.0)
    x = torch.minimum(boxes[..., 0].clamp(min=0.0), 1.0 - w)
    y = torch.minimum(boxes[..., 1].clamp(min=0.0), 1.0 - h)
    return torch.stack([x, y, w, h], dim=-1)


def bound_iou(refined: torch.Tensor, original: torch.Tensor, min_iou: float) -> torch.Tensor:
    """Each refined box, or the point nearest to it on the segment back to its original box where
    IoU with the original is at least min_iou (the original itself has IoU 1)."""
    ok = box_iou_tensor(refined, original) >= min_iou
    lo = torch.zeros(refined.shape[:-1], dtype=refined.dtype)  # share of the move kept: lo passes
    hi = torch.ones_like(lo)
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        passes = box_iou_tensor(original + mid[..., None] * (refined - original), original) >= min_iou
        lo, hi = torch.where(passes, mid, lo), torch.where(passes, hi, mid)
    pulled = original + lo[..., None] * (refined - original)
    return torch.where(ok[..., None], refined, pulled)


def forbidden_overlap_loss(boxes: torch.Tensor, mask: torch.Tensor, forbidden: torch.Tensor) -> torch.Tensor:
    """LayoutGAN++'s overlap over the pairs marked `forbidden` [B, N, N], per layout."""
    x, y, w, h = boxes.unbind(-1)
    iw = (torch.minimum((x + w)[:, :, None], (x + w)[:, None, :])
          - torch.maximum(x[:, :, None], x[:, None, :])).clamp(min=0)
    ih = (torch.minimum((y + h)[:, :, None], (y + h)[:, None, :])
          - torch.maximum(y[:, :, None], y[:, None, :])).clamp(min=0)
    area = (w * h).clamp(min=1e-4)[:, :, None]
    return ((iw * ih / area) * forbidden).sum(dim=(1, 2)) / mask.sum(dim=1).clamp(min=1)


def _optimise(original: torch.Tensor, mask: torch.Tensor, forbidden: torch.Tensor,
              cfg: AestheticConfig, movable: torch.Tensor) -> torch.Tensor:
    """`refine_steps` sign-gradient steps of size refine_lr (Adam's step without its moments: every
    coordinate moves by at most refine_lr a step), each projected back onto the canvas. Only
    `movable` boxes move; the others still count in alignment and overlap."""
    boxes = original.clone()
    real = movable[..., None]
    for _ in range(cfg.refine_steps):
        boxes.requires_grad_(True)
        loss = (soft_alignment(boxes, mask) + forbidden_overlap_loss(boxes, mask, forbidden)).sum()
        loss = loss + PROXIMITY * (((boxes - original) * real) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, boxes)
        with torch.no_grad():
            boxes = torch.where(real, _project(boxes - cfg.refine_lr * grad.sign()), original)
    return boxes.detach()


def refine_layouts(layouts: Sequence[Sequence[Box]], cfg: AestheticConfig | None = None,
                   held: Sequence[set[int]] | None = None) -> list[list[Box]]:
    """Refined copies of the layouts (same elements, same order, same types). held[i]: indices of
    layout i's elements that stay exactly where they are (boxes the caller fixed)."""
    from layoutray.eval.aesthetic import allowed_pairs, padded, score_batch

    cfg = cfg or AestheticConfig()
    layouts = [list(layout) for layout in layouts]
    if not layouts or cfg.refine_steps == 0 or not any(len(layout) >= 2 for layout in layouts):
        return layouts
    boxes_np, types_np, mask_np = padded(layouts)
    n = mask_np.shape[1]
    movable_np = mask_np.copy()
    for i, keep in enumerate(held or []):
        movable_np[i, sorted(keep)] = False
    forbidden_np = (mask_np[:, :, None] & mask_np[:, None, :] & ~np.eye(n, dtype=bool)[None]
                    & ~allowed_pairs(boxes_np, types_np, cfg))
    threads = torch.get_num_threads()
    # A few thousand numbers per step: a pool of threads only adds wake-ups (on a loaded 2-core
    # machine, each backward pass cost 0.27 s with 2 threads and a few ms with 1).
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():  # callers may decode under inference_mode
            original = torch.tensor(boxes_np, dtype=torch.float64)
            mask, forbidden = torch.from_numpy(mask_np), torch.from_numpy(forbidden_np)
            refined = bound_iou(_optimise(original, mask, forbidden, cfg, torch.from_numpy(movable_np)),
                                original, cfg.refine_min_iou)
    finally:
        torch.set_num_threads(threads)
    refined_np = refined.numpy().astype(np.float64)
    for i in range(len(layouts)):
        snap_layout(refined_np[i], boxes_np[i], mask_np[i], forbidden_np[i], cfg.refine_min_iou, movable_np[i])
    better = score_batch(refined_np, types_np, mask_np, cfg) > score_batch(boxes_np, types_np, mask_np, cfg) + 1e-9
    out = []
    for i, layout in enumerate(layouts):
        if not better[i]:
            out.append(layout)
            continue
        out.append([Box(b.type, *(float(v) for v in refined_np[i, j])) for j, b in enumerate(layout)])
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 1.0


def _clashes(boxes: np.ndarray, i: int, partners: np.ndarray) -> float:
    """Area element i shares with its forbidden partners."""
    b = boxes[i]
    iw = np.minimum(b[0] + b[2], boxes[:, 0] + boxes[:, 2]) - np.maximum(b[0], boxes[:, 0])
    ih = np.minimum(b[1] + b[3], boxes[:, 1] + boxes[:, 3]) - np.maximum(b[1], boxes[:, 1])
    return float((np.clip(iw, 0, None) * np.clip(ih, 0, None) * partners).sum())


def _offset(boxes: np.ndarray, i: int, mask: np.ndarray, axis: int) -> float:
    """The smallest move along `axis` (0: x, 1: y) that lines one of element i's three lines up with
    the same line of another element; 0.0 when none is within SNAP_DISTANCE."""
    pos, size = boxes[:, axis], boxes[:, axis + 2]
    lines = np.stack([pos, pos + size / 2, pos + size], axis=1)  # [N, 3]
    others = mask.copy()
    others[i] = False
    if not others.any():
        return 0.0
    diff = (lines[others] - lines[i][None, :]).ravel()  # [M * 3]
    if diff.size == 0 or np.abs(diff).min() <= 1e-9:  # already on a line of this axis: keep it there
        return 0.0
    best = diff[np.argmin(np.abs(diff))]
    return float(best) if abs(best) <= SNAP_DISTANCE else 0.0


def snap_layout(boxes: np.ndarray, original: np.ndarray, mask: np.ndarray, forbidden: np.ndarray,
                min_iou: float, movable: np.ndarray | None = None) -> None:
    """The snapping pass on one padded layout, in place (see the module docstring); only `movable`
    elements (default: all) move, onto lines of any element."""
    for i in np.flatnonzero(mask if movable is None else movable):
        for axis in (0, 1):
            d = _offset(boxes, i, mask, axis)
            if d == 0.0:
                continue
            moved = boxes[i].copy()
            moved[axis] = min(max(moved[axis] + d, 0.0), 1.0 - moved[axis + 2])
            trial = boxes.copy()
            trial[i] = moved
            if (_iou(moved, original[i]) >= min_iou
                    and _clashes(trial, i, forbidden[i]) <= _clashes(boxes, i, forbidden[i]) + 1e-12):
                boxes[i] = moved
