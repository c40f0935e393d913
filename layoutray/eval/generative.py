"""Metrics that judge generated layouts as a SET against the real set, not example by example:
maximum IoU and layout FID.

A spec-only or sampled layout can be good without matching its own example's boxes (a hero with
the image on the left is as right as one with it on the right), so element F1 against the
example under-rates it. Both metrics here follow LayoutGAN++ (Kikuchi, Simo-Serra, Otani,
Yamaguchi, "Constrained Graphic Layout Generation via Latent Optimization", ACM MM 2021; code
github.com/ktrk115/const_layout, `metric.py`), as LayoutDM (Inoue et al., CVPR 2023; code
github.com/CyberAgentAILab/layout-dm, `helpers/metric.py`) reuses them:

* `maximum_iou`: the best one-to-one pairing of generated and real layouts that have the same
  element types, scored by box IoU (higher is better, 1.0 for identical sets).
* layout FID (`layoutray.eval.fid`): the Frechet distance between Gaussian fits of features of
  the two sets from a small network trained on layouts (lower is better, 0 for identical sets).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from layoutray.model.tokenizer import Box

Layout = Sequence[Box]


def _ltrb(layout: Layout) -> tuple[tuple[str, ...], np.ndarray]:
    """(sorted element types, [N, 4] left/top/right/bottom boxes in that order).

    Sorting by type lines up the type segments of every layout with the same types, so a whole
    group of layouts stacks into one array."""
    ordered = sorted(layout, key=lambda b: b.type)
    boxes = np.array([(b.x, b.y, b.x + b.w, b.y + b.h) for b in ordered], dtype=float).reshape(-1, 4)
    return tuple(b.type for b in ordered), boxes


def _iou_grid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a [n, k, 4] against every box of b [m, k, 4], as [n, m, k, k].

    Same rules as `metrics.box_iou`: touching edges do not intersect, an empty union gives 0."""
    a, b = a[:, None, :, None, :], b[None, :, None, :, :]
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def pair_scores(types: tuple[str, ...], generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """[n, m] layout-to-layout scores within one group of layouts that share the type multiset
    `types` (generated [n, N, 4] and real [m, N, 4] ltrb boxes, rows sorted by type).

    The score of a pair is, per element type, the total IoU of the Hungarian matching of its
    boxes that maximises total IoU, summed over types and divided by the N elements: the mean
    IoU of the best element correspondence that respects types (const_layout
    `__compute_maximum_iou_for_layout`)."""
    n, m = generated.shape[0], real.shape[0]
    total = np.zeros((n, m))
    start = 0
    while start < len(types):
        end = start
        while end < len(types) and types[end] == types[start]:
            end += 1
        if end - start == 1:  # one box of this type: nothing to assign
            total += _iou_grid(generated[:, start:end], real[:, start:end])[:, :, 0, 0]
        else:
            for i in range(n):  # one generated layout at a time: [m, k, k] stays small
                iou = _iou_grid(generated[i:i + 1, start:end], real[:, start:end])[0]
                for j in range(m):
                    rows, cols = linear_sum_assignment(iou[j], maximize=True)
                    total[i, j] += iou[j][rows, cols].sum()
        start = end
    return total / len(types)


def maximum_iou_scores(generated: Sequence[Layout], real: Sequence[Layout]) -> list[float]:
    """The matched pair scores behind `maximum_iou`, one per pair the matching makes."""
    groups: dict[tuple[str, ...], tuple[list, list]] = defaultdict(lambda: ([], []))
    for side, layouts in ((0, generated), (1, real)):
        for layout in layouts:
            if layout:  # an empty layout has no elements to average over (const_layout divides by 0)
                types, boxes = _ltrb(layout)
                groups[types][side].append(boxes)
    scores: list[float] = []
    for types, (gen, ref) in groups.items():
        if not gen or not ref:  # a type multiset on one side only: never matched
            continue
        s = pair_scores(types, np.stack(gen), np.stack(ref))
        rows, cols = linear_sum_assignment(s, maximize=True)
        scores.extend(float(v) for v in s[rows, cols])
    return scores


def maximum_iou(generated: Sequence[Layout], real: Sequence[Layout]) -> float:
    """Maximum IoU (LayoutGAN++, Kikuchi et al. 2021, section 5.1; const_layout
    `compute_maximum_iou`; LayoutDM reports the same), in [0, 1], higher is better.

    Layouts are grouped by their multiset of element types, and only layouts of the same group
    are compared: a generated layout whose types no real layout has is never matched. Within a
    group, each generated/real pair gets `pair_scores`'s score (mean IoU of the best type-
    respecting element matching), and a Hungarian matching pairs generated with real layouts one
    to one for the largest total score; unpaired layouts (the larger side of a group, and groups
    on one side only) drop out. The result is the mean over ALL matched pairs of all groups,
    pooled (not a mean of group means), as the reference code does.

    Differences from that code: empty layouts are left out (it divides by their 0 elements), and
    with no pair at all the result is 0.0 (as LayoutDM; const_layout returns NaN).
    """
    scores = maximum_iou_scores(generated, real)
    return float(np.mean(scores)) if scores else 0.0


def generative_metrics(generated: Sequence[Layout], real: Sequence[Layout], real_features=None,
                       net=None) -> dict:
    """{"max_iou", "fid"} of generated layouts against real ones (see the module docstring).

    `real_features` (from `fid.layout_features(real)`) saves recomputing the real side when
    several generated sets are scored against one real set; `net` overrides the shipped FID
    network. `fid` is None when either side has fewer than 2 layouts (no covariance to fit)."""
    from layoutray.eval.fid import fid_from_features, layout_features

    if real_features is None:
        real_features = layout_features(real, net=net)
    return {"max_iou": maximum_iou(generated, real),
            "fid": fid_from_features(real_features, layout_features(generated, net=net))}
