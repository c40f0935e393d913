"""Layout metrics: token accuracy, element matching (P/R/F1, mean IoU), alignment, overlap, validity.

Elements are `tokenizer.Box` with normalised coordinates and a TOP-LEFT origin: a box covers
[x, x + w] x [y, y + h].

Alignment and overlap follow LayoutGAN++ (Kikuchi, Simo-Serra, Otani, Yamaguchi, "Constrained
Graphic Layout Generation via Latent Optimization", ACM MM 2021), whose code
(github.com/ktrk115/const_layout, `metric.py`: `compute_alignment`, `compute_overlap`) takes both
from Attribute-conditioned Layout GAN (Li et al. 2020, sections 3.6.3 and 3.6.4). The exact
definitions, and the two places where we differ from that code, are in the docstrings of
`layout_alignment` and `layout_overlap`. Values are raw; papers print them multiplied by 100.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from layoutray.model.tokenizer import Box

Layout = Sequence[Box]
THRESHOLDS = (0.5, 0.75)


# ---------------------------------------------------------------------------- tokens


def token_accuracy_counts(logits_or_pred, targets, pad_id: int = 0) -> tuple[int, int]:
    """(correct, counted) teacher-forced tokens, PAD targets ignored.

    `logits_or_pred` is either logits [..., V] (one more dim than `targets`; argmax is taken) or
    predicted ids shaped like `targets`. Counts (rather than a ratio) let callers micro-average
    over batches of different sizes.
    """
    import torch

    pred = logits_or_pred
    if pred.dim() == targets.dim() + 1:
        pred = pred.argmax(dim=-1)
    if pred.shape != targets.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} do not match targets {tuple(targets.shape)}")
    keep = targets != pad_id
    correct = int(torch.logical_and(pred == targets, keep).sum().item())
    return correct, int(keep.sum().item())


def token_accuracy(logits_or_pred, targets, pad_id: int = 0) -> float:
    """Share of non-PAD target tokens predicted correctly (0.0 when there are none)."""
    correct, counted = token_accuracy_counts(logits_or_pred, targets, pad_id)
    return correct / counted if counted else 0.0


# ---------------------------------------------------------------------------- matching


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two top-left-origin boxes (0.0 when the union is empty)."""
    iw = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    ih = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def _by_type(boxes: Layout) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for i, b in enumerate(boxes):
        out[b.type].append(i)
    return out


def match_elements(pred: Layout, gt: Layout, iou_threshold: float = 0.0) -> list[tuple[int, int, float]]:
    """One-to-one matching of predicted to ground-truth elements of the SAME type.

    Returns [(pred_index, gt_index, iou)] for the matched pairs, all with iou >= iou_threshold.
    Per element type, the Hungarian algorithm (scipy `linear_sum_assignment`) maximises first the
    NUMBER of pairs at or above the threshold, then their total IoU. (Maximising total IoU and
    thresholding afterwards can trade one good pair for two mediocre ones and lose a match that
    exists, e.g. IoUs [[0.95, 0.5], [0.5, 0]] at threshold 0.75.) With iou_threshold=0 every
    possible pair is kept, IoU 0 included: min(#pred, #gt) pairs per type with maximum total IoU.
    """
    pairs: list[tuple[int, int, float]] = []
    gt_types = _by_type(gt)
    for typ, pi in _by_type(pred).items():
        gi = gt_types.get(typ)
        if not gi:
            continue
        iou = np.array([[box_iou(pred[i], gt[j]) for j in gi] for i in pi])
        if iou_threshold > 0:
            ok = iou >= iou_threshold
            # Any one extra pair outweighs the largest possible IoU total of the other pairs.
            weight = np.where(ok, (min(len(pi), len(gi)) + 1) + iou, 0.0)
        else:
            ok = np.ones_like(iou, dtype=bool)
            weight = iou
        rows, cols = linear_sum_assignment(weight, maximize=True)
        pairs += [(pi[r], gi[c], float(iou[r, c])) for r, c in zip(rows, cols) if ok[r, c]]
    return sorted(pairs)


def element_prf(preds: Sequence[Layout], gts: Sequence[Layout], threshold: float) -> tuple[float, float, float]:
    """Micro-averaged element (precision, recall, F1) over a dataset at an IoU threshold.

    True positives are the pairs of `match_elements` summed over all layouts; precision divides by
    all predicted elements, recall by all ground-truth elements. A layout that failed to parse
    should be passed as an empty prediction, so it costs recall. Empty denominators give 0.0.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted layouts but {len(gts)} ground-truth layouts")
    tp = sum(len(match_elements(p, g, threshold)) for p, g in zip(preds, gts))
    n_pred = sum(len(p) for p in preds)
    n_gt = sum(len(g) for g in gts)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gt if n_gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def element_prf_by_type(preds: Sequence[Layout], gts: Sequence[Layout], threshold: float
                        ) -> dict[str, dict[str, float]]:
    """`element_prf` for each element type on its own, with the counts behind it:
    {type: {"precision", "recall", "f1", "true", "predicted"}}, most frequent true type first.

    The overall F1 is dominated by the common types; this shows where the misses are (small
    elements such as icons and links need their position right to a bin or two).
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted layouts but {len(gts)} ground-truth layouts")
    tp: Counter = Counter()
    n_pred: Counter = Counter(b.type for p in preds for b in p)
    n_gt: Counter = Counter(b.type for g in gts for b in g)
    for p, g in zip(preds, gts):
        tp.update(p[i].type for i, _, _ in match_elements(p, g, threshold))
    out = {}
    for t in sorted(n_pred.keys() | n_gt.keys(), key=lambda t: (-n_gt[t], t)):
        precision = tp[t] / n_pred[t] if n_pred[t] else 0.0
        recall = tp[t] / n_gt[t] if n_gt[t] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        out[t] = {"precision": precision, "recall": recall, "f1": f1, "true": n_gt[t], "predicted": n_pred[t]}
    return out


def mean_matched_iou(preds: Sequence[Layout], gts: Sequence[Layout]) -> float:
    """Mean IoU over all same-type Hungarian pairs (max total IoU, no threshold) in the dataset.

    Every pair the assignment makes counts, including pairs with IoU 0; unmatched elements (a
    type with more predictions than ground truth, or the reverse) are not pairs and are left to
    precision/recall. Micro-averaged over pairs; 0.0 when there are none.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted layouts but {len(gts)} ground-truth layouts")
    ious = [iou for p, g in zip(preds, gts) for _, _, iou in match_elements(p, g, 0.0)]
    return float(np.mean(ious)) if ious else 0.0


IOU_BANDS = ((0.75, ">=0.75"), (0.5, "0.5-0.75"), (0.25, "0.25-0.5"), (1e-12, "0-0.25"))


def miss_analysis(preds: Sequence[Layout], gts: Sequence[Layout]) -> dict:
    """Where the ground-truth elements land, to tell near misses from wrong guesses.

    Each true element takes the IoU of its pair in `mean_matched_iou`'s assignment (max total IoU
    within its type; 0 when it has no pair) and falls in one band: ">=0.75", "0.5-0.75",
    "0.25-0.5" (a near miss: right place, edges a few bins off), "0-0.25", or "none" (no overlap,
    or no prediction of its type). Shares of all true elements, summing to 1. Because this
    assignment maximises total IoU rather than the count above 0.5, the two top bands together can
    fall slightly below recall@0.5.

    `abs_error` is the mean |predicted - true| of x, y, w and h (fractions of the canvas) over
    the pairs that overlap but miss IoU 0.5: which coordinates the near misses get wrong.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted layouts but {len(gts)} ground-truth layouts")
    counts = Counter({name: 0 for _, name in IOU_BANDS} | {"none": 0})
    errors = []
    for p, g in zip(preds, gts):
        matched = {j: (i, iou) for i, j, iou in match_elements(p, g, 0.0)}
        for j in range(len(g)):
            i, iou = matched.get(j, (None, 0.0))
            counts[next((name for lo, name in IOU_BANDS if iou >= lo), "none")] += 1
            if 0.0 < iou < 0.5:
                a, b = p[i], g[j]
                errors.append([abs(a.x - b.x), abs(a.y - b.y), abs(a.w - b.w), abs(a.h - b.h)])
    n = sum(counts.values())
    err = np.mean(errors, axis=0) if errors else np.zeros(4)
    return {"bands": {k: (v / n if n else 0.0) for k, v in counts.items()},
            "abs_error": dict(zip("xywh", (float(e) for e in err))), "abs_error_pairs": len(errors)}


# ---------------------------------------------------------------------------- alignment & overlap


def _padded(layouts: Sequence[Layout]) -> tuple[np.ndarray, np.ndarray]:
    """[B, N, 4] boxes as (x, y, w, h) and a [B, N] mask of real elements, N = longest layout."""
    n = max((len(l) for l in layouts), default=0)
    boxes = np.zeros((len(layouts), max(n, 1), 4))
    mask = np.zeros((len(layouts), max(n, 1)), dtype=bool)
    for i, layout in enumerate(layouts):
        for j, b in enumerate(layout):
            boxes[i, j] = (b.x, b.y, b.w, b.h)
            mask[i, j] = True
    return boxes, mask


def alignment_batch(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-layout LayoutGAN++ alignment for padded [B, N, 4] (x, y, w, h) boxes; NaN where
    a layout has fewer than 2 real elements. See `layout_alignment` for the definition."""
    x, y, w, h = (boxes[..., k] for k in range(4))
    # The six alignment lines of each element: left, x-centre, right, top, y-centre, bottom.
    lines = np.stack([x, x + w / 2, x + w, y, y + h / 2, y + h], axis=1)  # [B, 6, N]
    d = np.abs(lines[..., :, None] - lines[..., None, :])  # [B, 6, N(i), N(j)]
    n = boxes.shape[1]
    # Mask both axes: j == i (nothing aligns with itself), padded i AND padded j. const_layout
    # masks only padded i, so a real element could "align" with a padding box at (0, 0, 0, 0).
    valid_pair = mask[:, :, None] & mask[:, None, :] & ~np.eye(n, dtype=bool)[None]
    d = np.where(valid_pair[:, None], d, np.inf)
    d_min = d.min(axis=(1, 3))  # [B, N]: nearest line of any type on any other element
    has_other = np.isfinite(d_min)
    # -log(1 - d); d < 1 for boxes inside the canvas, the clip only guards against inf.
    term = np.where(has_other, -np.log1p(-np.clip(np.where(has_other, d_min, 0.0), 0, 1 - 1e-12)), 0.0)
    count = mask.sum(axis=1)
    out = term.sum(axis=1) / np.maximum(count, 1)
    return np.where(count >= 2, out, np.nan)


def layout_alignment(layout: Layout) -> float | None:
    """LayoutGAN++ alignment of one layout (lower is better); None for fewer than 2 elements.

        d_i = min over the 6 lines t in {left, x-centre, right, top, y-centre, bottom}
                and over the other elements j != i of |line_t(i) - line_t(j)|
        alignment = (1/n) * sum_i -log(1 - d_i)

    as in const_layout `compute_alignment` (sum over elements divided by the element count),
    with coordinates of our top-left boxes (x-centre = x + w/2). Differences from that code:
    padding is masked on both axes (it masks only the row axis), and a layout of one element has
    no alignment term and is left out of dataset averages (the code counts it as 0).
    """
    if len(layout) < 2:
        return None
    boxes, mask = _padded([layout])
    return float(alignment_batch(boxes, mask)[0])


def overlap_batch(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-layout LayoutGAN++ overlap for padded [B, N, 4] (x, y, w, h) boxes; NaN for empty
    layouts. See `layout_overlap` for the definition."""
    x, y, w, h = (boxes[..., k] for k in range(4))
    iw = np.minimum((x + w)[:, :, None], (x + w)[:, None, :]) - np.maximum(x[:, :, None], x[:, None, :])
    ih = np.minimum((y + h)[:, :, None], (y + h)[:, None, :]) - np.maximum(y[:, :, None], y[:, None, :])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)  # [B, N(i), N(j)]
    n = boxes.shape[1]
    valid_pair = mask[:, :, None] & mask[:, None, :] & ~np.eye(n, dtype=bool)[None]
    area = (w * h)[:, :, None]
    # Zero-area elements contribute 0, as const_layout's nan_to_num does.
    ratio = np.where(valid_pair & (area > 0), inter / np.where(area > 0, area, 1.0), 0.0)
    count = mask.sum(axis=1)
    out = ratio.sum(axis=(1, 2)) / np.maximum(count, 1)
    return np.where(count >= 1, out, np.nan)


def layout_overlap(layout: Layout) -> float | None:
    """LayoutGAN++ overlap of one layout (lower is better); None for an empty layout.

        overlap = (1/n) * sum over ordered pairs i != j of area(i ∩ j) / area(i)

    exactly const_layout `compute_overlap`: both orders of a pair count (each normalised by its
    own first element's area), divided by the number of elements n. A single element gives 0.
    """
    if not layout:
        return None
    boxes, mask = _padded([layout])
    return float(overlap_batch(boxes, mask)[0])


def _dataset_mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else 0.0


def alignment(layouts: Sequence[Layout]) -> float:
    """Mean of `layout_alignment` over the layouts that have one (>= 2 elements); 0.0 if none."""
    if not layouts:
        return 0.0
    return _dataset_mean(alignment_batch(*_padded(layouts)))


def overlap(layouts: Sequence[Layout]) -> float:
    """Mean of `layout_overlap` over non-empty layouts; 0.0 if none."""
    if not layouts:
        return 0.0
    return _dataset_mean(overlap_batch(*_padded(layouts)))


# ---------------------------------------------------------------------------- validity & all


def validity(sequences_parsed_ok: Sequence[bool]) -> float:
    """Share of generated sequences that parsed into a valid layout (0.0 for no sequences)."""
    oks = list(sequences_parsed_ok)
    return sum(bool(o) for o in oks) / len(oks) if oks else 0.0


def layout_metrics(pred_layouts: Sequence[Layout], gt_layouts: Sequence[Layout],
                   parsed_ok: Sequence[bool] | None = None) -> dict[str, float]:
    """All generated-layout metrics as a JSON-ready dict of floats.

    `alignment_reference` / `overlap_reference` are the same metrics on the ground truth, the
    values a generator should come close to. `validity` is present only when `parsed_ok` is given;
    pass invalid generations as empty layouts in `pred_layouts`.
    """
    out: dict[str, float] = {}
    for thr in THRESHOLDS:
        p, r, f = element_prf(pred_layouts, gt_layouts, thr)
        out[f"element_precision@{thr}"] = p
        out[f"element_recall@{thr}"] = r
        out[f"element_f1@{thr}"] = f
    out["mean_iou"] = mean_matched_iou(pred_layouts, gt_layouts)
    out["alignment"] = alignment(pred_layouts)
    out["overlap"] = overlap(pred_layouts)
    out["alignment_reference"] = alignment(gt_layouts)
    out["overlap_reference"] = overlap(gt_layouts)
    if parsed_ok is not None:
        out["validity"] = validity(parsed_ok)
    assert all(math.isfinite(v) for v in out.values())
    return out
