"""The aesthetic score of a layout: a number in [0, 1] (1 = best) from seven documented parts.

Boxes are `tokenizer.Box` with normalised, top-left-origin coordinates (as in metrics.py). Every
part is itself in [0, 1]; the score is their weighted mean with the weights of
`config.AestheticConfig` (`model.aesthetics.weight_*`). A part that a layout cannot have (one
element has no alignment partner, no gaps to compare) scores 1: it has nothing wrong.

    alignment      mean of exp(-a / alignment_scale), a = LayoutGAN++ alignment
                   (metrics.alignment_batch), and `aligned_lines` (every line of every element)
    overlap        exp(-o / overlap_scale), o = LayoutGAN++ overlap counted over forbidden pairs only:
                   a pair is allowed when one element is a container type (card, image) holding at
                   least contain_fraction of the other's area
    spacing        how closely the layout's gaps (each element to its nearest neighbour below that
                   shares columns, and to its right that shares rows) repeat: per gap
                   exp(-d / spacing_tolerance), d the distance to the nearest other gap; a layout
                   built on a spacing scale repeats its gaps
    margins        symmetry of the content's margins (left vs right, top vs bottom) in the canvas
                   and inside each container that holds elements (a card's padding), averaged, times
                   the share of elements that lie inside the canvas
    reading_order  share of same-column pairs whose types come in reading order (a heading above its
                   paragraph, text above its button; READING_RULES)
    balance        1 - |x-centre of the elements' area - 0.5|: visual weight centred across
    rows           how closely each row's span (the elements, not containers, sharing a top, centre
                   or bottom line within row_tolerance) repeats a left edge, centre or right edge of
                   another row's span: per element exp(-d / row_tolerance). Rows of a section hang
                   on common axes (all centred, all flush left); a row moved sideways leaves them.

Closeness is measured as exp(-distance / tolerance) rather than counted within a tolerance, so a
part prefers the layout whose lines and gaps come closer even when neither is within the
tolerance: counts left many true layouts tied with their perturbed copies.

All parts are computed on padded batches ([B, N, 4] boxes, [B, N] type indices, [B, N] mask), so
scoring a test set or a refinement candidate costs a few numpy operations per part.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from layoutray.config import AestheticConfig
from layoutray.data.vocab import ELEMENT_TYPES
from layoutray.eval.metrics import alignment_batch
from layoutray.model.tokenizer import Box

PARTS = ("alignment", "overlap", "spacing", "margins", "reading_order", "balance", "rows")
# (earlier, later): when both share a column, `earlier` reads first. Rules the synthetic and the
# real-browser test sets follow almost always (docs/aesthetics.md gives their shares).
READING_RULES = (("heading", "paragraph"), ("heading", "button"), ("heading", "input"),
                 ("subheading", "button"), ("paragraph", "button"), ("heading", "list"))
EPS = 1e-9
# Lines this close count as one: half a coordinate bin of a 128-bin model (0.5 / 127).
LINE_TOLERANCE = 0.004


def padded(layouts: Sequence[Sequence[Box]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """([B, N, 4] x y w h, [B, N] type index (-1 for padding), [B, N] mask), N = longest layout."""
    n = max(1, max((len(layout) for layout in layouts), default=0))
    boxes = np.zeros((len(layouts), n, 4))
    types = np.full((len(layouts), n), -1, dtype=np.int64)
    for i, layout in enumerate(layouts):
        for j, b in enumerate(layout):
            boxes[i, j] = (b.x, b.y, b.w, b.h)
            types[i, j] = ELEMENT_TYPES.index(b.type)
    return boxes, types, types >= 0


def _pairs(mask: np.ndarray) -> np.ndarray:
    """[B, N, N]: both real and i != j."""
    n = mask.shape[1]
    return mask[:, :, None] & mask[:, None, :] & ~np.eye(n, dtype=bool)[None]


def _intersection(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inter area [B, N, N], overlap width, overlap height; negative where apart)."""
    x, y, w, h = (boxes[..., k] for k in range(4))
    iw = np.minimum((x + w)[:, :, None], (x + w)[:, None, :]) - np.maximum(x[:, :, None], x[:, None, :])
    ih = np.minimum((y + h)[:, :, None], (y + h)[:, None, :]) - np.maximum(y[:, :, None], y[:, None, :])
    return np.where((iw > 0) & (ih > 0), iw * ih, 0.0), iw, ih


def container_mask(types: np.ndarray, cfg: AestheticConfig) -> np.ndarray:
    ids = [ELEMENT_TYPES.index(t) for t in cfg.container_types]
    return np.isin(types, ids) & (types >= 0)


def allowed_pairs(boxes: np.ndarray, types: np.ndarray, cfg: AestheticConfig) -> np.ndarray:
    """[B, N, N]: i and j may overlap (one is a container holding the other)."""
    inter, _, _ = _intersection(boxes)
    area = boxes[..., 2] * boxes[..., 3]
    cont = container_mask(types, cfg)
    i_holds_j = cont[:, :, None] & (inter >= cfg.contain_fraction * area[:, None, :] - EPS)
    return i_holds_j | np.swapaxes(i_holds_j, 1, 2)


# ---------------------------------------------------------------------------- parts


def _closeness(distance: np.ndarray, tolerance: float) -> np.ndarray:
    """exp(-d / tolerance): 1 at d = 0, 0.37 at the tolerance, 0 where there is nothing (d = inf)."""
    return np.exp(-distance / tolerance)


def _nearest(values: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """values [B, ..., N], pairs [B, N, N] -> [B, ..., N]: each value's distance to the nearest
    value of another member (inf where there is none)."""
    d = np.abs(values[..., :, None] - values[..., None, :])
    extra = values.ndim - 2
    return np.where(pairs.reshape(pairs.shape[:1] + (1,) * extra + pairs.shape[1:]), d, np.inf).min(axis=-1)


def aligned_lines(boxes, mask, tolerance: float = LINE_TOLERANCE) -> np.ndarray:
    """[B]: mean over elements and their six lines (left, x-centre, right, top, y-centre,
    bottom) of the closeness of the nearest line of another element. LayoutGAN++'s alignment
    looks at each element's best line only, so a box that keeps its top-left corner can take any
    size, and a row moved sideways keeps its shared top edges, at no cost; this counts every line."""
    x, y, w, h = (boxes[..., k] for k in range(4))
    lines = np.stack([x, x + w / 2, x + w, y, y + h / 2, y + h], axis=1)  # [B, 6, N]
    share = _closeness(_nearest(lines, _pairs(mask)), tolerance).mean(axis=1)  # [B, N]
    count = mask.sum(axis=1)
    return np.where(count >= 2, np.where(mask, share, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)


def alignment_part(boxes, types, mask, cfg: AestheticConfig) -> np.ndarray:
    """The mean of exp(-a / alignment_scale), a LayoutGAN++'s alignment, and `aligned_lines`."""
    a = alignment_batch(boxes, mask)
    part = (np.exp(-np.nan_to_num(a) / cfg.alignment_scale) + np.nan_to_num(aligned_lines(boxes, mask))) / 2
    return np.where(np.isnan(a), 1.0, part)


def forbidden_overlap(boxes, types, mask, cfg: AestheticConfig) -> np.ndarray:
    """[B]: (1/n) sum over forbidden ordered pairs of area(i ∩ j) / area(i) (LayoutGAN++'s form)."""
    inter, _, _ = _intersection(boxes)
    area = (boxes[..., 2] * boxes[..., 3])[:, :, None]
    keep = _pairs(mask) & ~allowed_pairs(boxes, types, cfg) & (area > 0)
    ratio = np.where(keep, inter / np.where(area > 0, area, 1.0), 0.0)
    return ratio.sum(axis=(1, 2)) / np.maximum(mask.sum(axis=1), 1)


def overlap_part(boxes, types, mask, cfg: AestheticConfig) -> np.ndarray:
    return np.exp(-forbidden_overlap(boxes, types, mask, cfg) / cfg.overlap_scale)


def _nearest_gaps(boxes, mask, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Each element's gap to its nearest neighbour after it along `axis` (0: right, 1: below) that
    shares its span on the other axis: ([B, N] gap, [B, N] has one)."""
    _, iw, ih = _intersection(boxes)
    share = ih > EPS if axis == 0 else iw > EPS
    start, size = boxes[..., axis], boxes[..., axis + 2]
    gap = start[:, None, :] - (start + size)[:, :, None]  # [B, i, j]: j's start after i's end
    ok = _pairs(mask) & share & (gap >= -EPS)
    nearest = np.where(ok, gap, np.inf).min(axis=2)
    return np.where(np.isfinite(nearest), np.maximum(nearest, 0.0), 0.0), ok.any(axis=2)


def spacing_part(boxes, types, mask, cfg: AestheticConfig) -> np.ndarray:
    """Mean over the layout's gaps of the closeness of the nearest other gap."""
    gaps, has = zip(*(_nearest_gaps(boxes, mask, axis) for axis in (0, 1)))
    g = np.concatenate(gaps, axis=1)  # [B, 2N]
    m = np.concatenate(has, axis=1)
    repeated = np.where(m, _closeness(_nearest(g, _pairs(m)), cfg.spacing_tolerance), 0.0)
    count = m.sum(axis=1)
    return np.where(count >= 2, repeated.sum(axis=1) / np.maximum(count, 1), 1.0)


def _symmetry(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    total = a + b
    return np.where(total > EPS, 1.0 - np.abs(a - b) / np.maximum(total, EPS), 1.0)


def _margin_symmetry(left, right, top, bottom) -> np.ndarray:
    c = lambda v: np.clip(v, 0, 1)  # noqa: E731
    return (_symmetry(c(left), c(right)) + _symmetry(c(top), c(bottom))) / 2


def container_padding(boxes, types, mask, cfg: AestheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """([B, N] margin symmetry of what each container holds, inside it; [B, N] holds something)."""
    x, y, w, h = (boxes[..., k] for k in range(4))
    inter, _, _ = _intersection(boxes)
    holds = container_mask(types, cfg)[:, :, None] & _pairs(mask) & \
        (inter >= cfg.contain_fraction * (w * h)[:, None, :] - EPS)  # [B, container, child]
    lo = lambda v: np.where(holds, v[:, None, :], np.inf).min(axis=2)  # noqa: E731
    hi = lambda v: np.where(holds, v[:, None, :], -np.inf).max(axis=2)  # noqa: E731
    has = holds.any(axis=2)
    sym = _margin_symmetry(*(np.where(has, v, 0.0) for v in (lo(x) - x, x + w - hi(x + w), lo(y) - y,
                                                            y + h - hi(y + h))))
    return np.where(has, sym, 0.0), has


def margins_part(boxes, types, mask, cfg: AestheticConfig) -> np.ndarray:
    x, y, w, h = (boxes[..., k] for k in range(4))
    lo = lambda v: np.where(mask, v, np.inf).min(axis=1)  # noqa: E731
    hi = lambda v: np.where(mask, v, -np.inf).max(axis=1)  # noqa: E731
    canvas = _margin_symmetry(lo(x), 1.0 - hi(x + w), lo(y), 1.0 - hi(y + h))
    padding, has = container_padding(boxes, types, mask, cfg)
    sym = (canvas + padding.sum(axis=1)) / (1 + has.sum(axis=1))
    inside = mask & (x >= -EPS) & (y >= -EPS) & (x + w <= 1 + EPS) & (y + h <= 1 + EPS)
    count = mask.sum(axis=1)
    share = inside.sum(axis=1) / np.maximum(count, 1)
    return np.where(count >= 1, sym * share, 1.0)


def reading_order_part(boxes, types, mask, cfg: AestheticConfig) -> np.ndarray:
    _, iw, _ = _intersection(boxes)
    y = boxes[..., 1]
    ruled = np.zeros(types.shape + types.shape[1:], dtype=bool)  # [B, i, j]: i should read before j
    for first, later in READING_RULES:
        a, b = ELEMENT_TYPES.index(first), ELEMENT_TYPES.index(later)
        ruled |= (types[:, :, None] == a) & (types[:, None, :] == b)
    column = _pairs(mask) & (iw > EPS) & ruled & ~allowed_pairs(boxes, types, cfg)
    right = column & (y[:, :, None] <= y[:, None, :] + EPS)
    count = column.sum(axis=(1, 2))
    return np.where(count > 0, right.sum(axis=(1, 2)) / np.maximum(count, 1), 1.0)


def balance_part(boxes, types, mask, cfg: AestheticConfig) -> np.ndarray:
    area = np.where(mask, boxes[..., 2] * boxes[..., 3], 0.0)
    centre = boxes[..., 0] + boxes[..., 2] / 2
    total = area.sum(axis=1)
    cx = (area * centre).sum(axis=1) / np.maximum(total, EPS)
    return np.where(total > EPS, 1.0 - np.clip(np.abs(cx - 0.5), 0, 1), 1.0)


def rows_part(boxes, types, mask, cfg: AestheticConfig) -> np.ndarray:
    """Mean over the non-container elements of the closeness of their row's span's nearest axis
    (left, centre, right) to another row's; 1 where there is a single row."""
    x, y, w, h = (boxes[..., k] for k in range(4))
    member = mask & ~container_mask(types, cfg)
    both = member[:, :, None] & member[:, None, :]
    horizontal = np.stack([y, y + h / 2, y + h], axis=1)  # [B, 3, N]
    same_row = both & (np.abs(horizontal[..., :, None] - horizontal[..., None, :]) <= cfg.row_tolerance).any(axis=1)
    left = np.where(same_row, x[:, None, :], np.inf).min(axis=2)
    right = np.where(same_row, (x + w)[:, None, :], -np.inf).max(axis=2)
    left, right = np.where(member, left, 0.0), np.where(member, right, 0.0)
    axes = np.stack([left, (left + right) / 2, right], axis=1)  # [B, 3, N]: each element's row span
    other_row = both & ~same_row
    near = _closeness(_nearest(axes, other_row).min(axis=1), cfg.row_tolerance)  # [B, N]
    count = member.sum(axis=1)
    return np.where(other_row.any(axis=(1, 2)), np.where(member, near, 0.0).sum(axis=1) / np.maximum(count, 1), 1.0)


PART_FUNCTIONS = {"alignment": alignment_part, "overlap": overlap_part, "spacing": spacing_part,
                  "margins": margins_part, "reading_order": reading_order_part, "balance": balance_part,
                  "rows": rows_part}


# ---------------------------------------------------------------------------- score


def parts_batch(boxes, types, mask, cfg: AestheticConfig | None = None) -> dict[str, np.ndarray]:
    """Every part for a padded batch: {part: [B] in [0, 1]}."""
    cfg = cfg or AestheticConfig()
    return {name: np.clip(PART_FUNCTIONS[name](boxes, types, mask, cfg), 0.0, 1.0) for name in PARTS}


def score_batch(boxes, types, mask, cfg: AestheticConfig | None = None) -> np.ndarray:
    """[B] aesthetic scores in [0, 1]; an empty layout scores 0."""
    cfg = cfg or AestheticConfig()
    parts = parts_batch(boxes, types, mask, cfg)
    weights = {name: getattr(cfg, f"weight_{name}") for name in PARTS}
    total = sum(weights.values())
    score = sum(weights[k] * parts[k] for k in PARTS) / total
    return np.where(mask.any(axis=1), score, 0.0)


def layout_score(layout: Sequence[Box], cfg: AestheticConfig | None = None) -> float:
    """The aesthetic score of one layout."""
    return float(score_batch(*padded([layout]), cfg)[0])


def layout_parts(layout: Sequence[Box], cfg: AestheticConfig | None = None) -> dict[str, float]:
    return {k: float(v[0]) for k, v in parts_batch(*padded([layout]), cfg).items()}


def aesthetic_summary(layouts: Sequence[Sequence[Box]], cfg: AestheticConfig | None = None) -> dict:
    """Mean score, mean of each part and mean forbidden overlap (LayoutGAN++'s overlap over the pairs
    the score forbids) over the non-empty layouts: {"score", "parts": {...}, "forbidden_overlap"}."""
    layouts = [layout for layout in layouts if layout]
    if not layouts:
        return {"score": 0.0, "parts": {k: 0.0 for k in PARTS}, "forbidden_overlap": 0.0, "layouts": 0}
    arrays = padded(layouts)
    parts = parts_batch(*arrays, cfg)
    return {"score": float(score_batch(*arrays, cfg).mean()),
            "parts": {k: float(v.mean()) for k, v in parts.items()},
            "forbidden_overlap": float(forbidden_overlap(*arrays, cfg or AestheticConfig()).mean()),
            "layouts": len(layouts)}


# ---------------------------------------------------------------------------- validation

PERTURBATIONS = ("jitter", "swapped_sizes", "shifted_rows")


def _clipped(b: Box, x: float, y: float, w: float, h: float) -> Box:
    w, h = min(max(w, 0.005), 1.0), min(max(h, 0.005), 1.0)
    return Box(b.type, min(max(x, 0.0), 1.0 - w), min(max(y, 0.0), 1.0 - h), w, h)


def jitter(layout: Sequence[Box], rng: np.random.Generator, shift: float = 0.02, scale: float = 0.1) -> list[Box]:
    """Every box moved by N(0, shift) on each axis and resized by exp(N(0, scale))."""
    out = []
    for b in layout:
        dx, dy = rng.normal(0, shift, 2)
        sw, sh = np.exp(rng.normal(0, scale, 2))
        out.append(_clipped(b, b.x + dx, b.y + dy, b.w * sw, b.h * sh))
    return out


def swapped_sizes(layout: Sequence[Box], rng: np.random.Generator) -> list[Box]:
    """Two elements of different sizes trade width and height (each keeps its top-left corner)."""
    out = list(layout)
    pairs = [(i, j) for i in range(len(out)) for j in range(i + 1, len(out))
             if abs(out[i].w - out[j].w) + abs(out[i].h - out[j].h) > 0.02]
    if not pairs:
        return out
    i, j = pairs[rng.integers(len(pairs))]
    a, b = out[i], out[j]
    out[i], out[j] = _clipped(a, a.x, a.y, b.w, b.h), _clipped(b, b.x, b.y, a.w, a.h)
    return out


def shifted_rows(layout: Sequence[Box], rng: np.random.Generator) -> list[Box]:
    """The elements of one row (the same top edge, within 1%) moved together, sideways or down/up,
    by 3-10% of the canvas."""
    tops = sorted({round(b.y, 2) for b in layout})
    row = tops[rng.integers(len(tops))]
    d = float(rng.uniform(0.03, 0.10) * rng.choice((-1.0, 1.0)))
    horizontal = bool(rng.integers(2))
    return [(_clipped(b, b.x + d * horizontal, b.y + d * (not horizontal), b.w, b.h)
             if round(b.y, 2) == row else b) for b in layout]


PERTURB = {"jitter": jitter, "swapped_sizes": swapped_sizes, "shifted_rows": shifted_rows}


def validate_score(layouts: Sequence[Sequence[Box]], cfg: AestheticConfig | None = None,
                   seed: int = 0, repeats: int = 1) -> dict:
    """How often the true layout outscores a perturbed copy of itself, per perturbation, pooled
    over `repeats` draws of the perturbations (seeds seed, seed + 1, ...).

    Layouts of 2+ elements take part; a perturbation that leaves a layout unchanged (nothing to
    swap, a row clipped back in place) is not a pair. A tie counts as a loss; `ties` says how
    many there were (two elements on one left edge, of one height, trading widths: no score of
    the boxes alone tells those apart).
    {"pairs", "wins", "ties", "win_rate" (all perturbations), "by_perturbation": {...}, "reference"}."""
    truth = [list(layout) for layout in layouts if len(layout) >= 2]
    true_scores = score_batch(*padded(truth), cfg) if truth else np.zeros(0)
    by = {name: {"pairs": 0, "wins": 0, "ties": 0, "perturbed": []} for name in PERTURBATIONS}
    for r in range(repeats):
        rng = np.random.default_rng(seed + r)
        for name in PERTURBATIONS:
            pairs = [(i, PERTURB[name](layout, rng)) for i, layout in enumerate(truth)]
            pairs = [(i, p) for i, p in pairs if p != truth[i]]
            if not pairs:
                continue
            perturbed = score_batch(*padded([p for _, p in pairs]), cfg)
            by[name]["pairs"] += len(pairs)
            by[name]["wins"] += int(sum(true_scores[i] > s for (i, _), s in zip(pairs, perturbed)))
            by[name]["ties"] += int(sum(true_scores[i] == s for (i, _), s in zip(pairs, perturbed)))
            by[name]["perturbed"] += perturbed.tolist()
    for v in by.values():
        scores = v.pop("perturbed")
        v["win_rate"] = v["wins"] / v["pairs"] if v["pairs"] else 0.0
        if scores:
            v["mean_perturbed_score"] = float(np.mean(scores))
    pairs = sum(v["pairs"] for v in by.values())
    wins = sum(v["wins"] for v in by.values())
    return {"pairs": pairs, "wins": wins, "ties": sum(v["ties"] for v in by.values()),
            "win_rate": wins / pairs if pairs else 0.0,
            "by_perturbation": by, "reference": float(true_scores.mean()) if truth else 0.0,
            "layouts": len(truth), "repeats": repeats}
