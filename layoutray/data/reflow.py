"""Narrow viewports: a desktop section reflowed the way responsive CSS lays it out on a phone or tablet.

Real pages are responsive. At 390 px the columns of a desktop section stack, a grid wraps into as
many items per row as fit, text wraps onto more lines, pictures shrink with their aspect ratio and
a navbar's link group folds behind its menu button. `reflow` does the same to a layout the
generator drew at desktop width:

1. Boxes inside a card or a picture move with it (`_nest`).
2. The rest is cut recursively at its widest gaps, into rows stacked top to bottom or columns
   side by side (`_tree`; ties go to columns, so a feature grid stacks item by item, not row of
   icons by row of headings).
3. Rows keep their vertical gaps. Columns stay on one row if they fit, anchored where they were
   (left, right or centre); otherwise they wrap like a flex row (`_place_cols`).

All in canvas pixels on the element dicts of `layoutray.data.page_grid` (with their `lines` and
`style` hints); `layoutray.data.synth` normalises afterwards.
"""

from __future__ import annotations

import math
import random

CONTAINERS = ("card", "image")  # what a box can sit inside (as in the aesthetic score's default)
TEXT = ("heading", "subheading", "paragraph")
FOLDS = ("navigation",)  # a phone's navbar hides its link group behind the menu button
PHONE_MAX = 600  # narrower viewports fold the navigation
TOUCH = 4  # px: boxes overlapping by no more than this are side by side, not stacked


def _box(e: dict) -> tuple[float, float, float, float]:
    return e["x"], e["y"], e["x"] + e["w"], e["y"] + e["h"]


def _inside(a: dict, b: dict, tol: float = 2) -> bool:
    ax0, ay0, ax1, ay1 = _box(a)
    bx0, by0, bx1, by1 = _box(b)
    return a is not b and bx0 - tol <= ax0 and by0 - tol <= ay0 and ax1 <= bx1 + tol and ay1 <= by1 + tol \
        and a["w"] * a["h"] < b["w"] * b["h"]


def _nest(els: list[dict]) -> list[dict]:
    """Nodes {"el", "kids"}: each box hangs under the smallest card or picture that holds it."""
    nodes = {id(e): {"el": e, "kids": []} for e in els}
    roots = []
    for e in els:
        holders = [c for c in els if c["type"] in CONTAINERS and _inside(e, c)]
        parent = min(holders, key=lambda c: c["w"] * c["h"], default=None)
        (nodes[id(parent)]["kids"] if parent else roots).append(nodes[id(e)])
    return roots


def _extent(nodes) -> tuple[float, float, float, float]:
    boxes = [_box(n["el"]) for n in nodes]
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _split(nodes: list[dict], axis: int) -> tuple[float, list[list[dict]], list[float]]:
    """Groups separated by empty bands along `axis` (0: x, 1: y), the gaps between them and the
    widest (-1 when there is one group). Boxes that overlap by a few pixels still count as apart."""
    spans = sorted(nodes, key=lambda n: _box(n["el"])[axis])
    groups, gaps, end = [], [], -math.inf
    for n in spans:
        b = _box(n["el"])
        if groups and b[axis] < end - TOUCH:
            groups[-1].append(n)
        else:
            if groups:
                gaps.append(max(0.0, b[axis] - end))
            groups.append([n])
        end = max(end, b[axis + 2])
    return max(gaps, default=-1.0), groups, gaps


def _tree(nodes: list[dict]) -> dict:
    """A leaf node, or {"cut": "rows"|"cols"|"block", "parts": [...]}: columns split at every gap
    (each is a flex item), rows only at the widest (a grid's rows of items, not its rows of icons)."""
    if len(nodes) == 1:
        return nodes[0]
    rows, cols = _split(nodes, 1), _split(nodes, 0)
    if max(rows[0], cols[0]) < 0:  # boxes overlapping both ways: keep them as one block
        return {"cut": "block", "parts": nodes}
    if cols[0] >= rows[0]:
        return {"cut": "cols", "parts": [_tree(g) for g in cols[1]]}
    widest, groups, gaps = rows
    parts = [list(groups[0])]
    for g, gap in zip(groups[1:], gaps):
        if gap >= widest - 1:
            parts.append([])
        parts[-1] += g
    return {"cut": "rows", "parts": [_tree(p) for p in parts]}


def _members(t: dict) -> list[dict]:
    return [t] if "el" in t else [n for p in t["parts"] for n in _members(p)]


def _leaf(e: dict, avail: float) -> dict:
    """The element resized for a column `avail` px wide, at the column's top-left."""
    out = {**e, "x": 0.0, "y": 0.0}
    lines = e.get("lines") or 1
    if e["type"] in TEXT and lines > 1:  # running text fills its column, whatever its width now
        new = max(1, math.ceil(lines * e["w"] / avail))
        return {**out, "w": avail, "h": e["h"] / lines * new, "lines": new}
    if e["w"] <= avail:
        return out
    out["w"] = avail
    if e["type"] in TEXT:
        new = math.ceil(lines * e["w"] / avail)
        out["h"], out["lines"] = e["h"] / lines * new, new
    elif e["type"] == "image":
        out["h"] = e["h"] * avail / e["w"]
    return out


def _layout(t: dict, avail: float, frame: tuple[float, float] | None = None) -> tuple[list[dict], float, float]:
    """Place a subtree in a column `avail` px wide: (boxes relative to its top-left, width, height).
    `frame`: the x extent of what held it at desktop width (whether a wrapping row was centred)."""
    if "el" in t:
        return _layout_node(t, avail)
    if t["cut"] == "rows":
        return _place_rows(t["parts"], avail)
    if t["cut"] == "cols":
        return _place_cols(t["parts"], avail, frame)
    return _place_block(t["parts"], avail)


def _layout_node(n: dict, avail: float) -> tuple[list[dict], float, float]:
    e = n["el"]
    if not n["kids"]:
        b = _leaf(e, avail)
        return [b], b["w"], b["h"]
    w = min(e["w"], avail)
    x0, y0, x1, y1 = _extent(n["kids"])
    pl, pr = max(0.0, x0 - e["x"]), max(0.0, e["x"] + e["w"] - x1)
    squeeze = min(1.0, 0.5 * w / max(pl + pr, 1e-9))  # padding at most half the new width
    pl, pr = pl * squeeze, pr * squeeze
    pt, pb = max(0.0, y0 - e["y"]), max(0.0, e["y"] + e["h"] - y1)
    inner, _, ih = _layout(_tree(n["kids"]), w - pl - pr)
    h = max(pt + ih + pb, e["h"] * w / e["w"] if e["type"] == "image" else 0.0)
    box = {**e, "x": 0.0, "y": 0.0, "w": w, "h": h}
    return [box] + [_moved(b, pl, pt) for b in inner], w, h


def _moved(b: dict, dx: float, dy: float) -> dict:
    return {**b, "x": b["x"] + dx, "y": b["y"] + dy}


def _anchored(x0: float, x1: float, px0: float, px1: float, w: float, avail: float) -> float:
    """Where a child `w` px wide goes: kept at the parent's left or right edge, else its centre scaled."""
    if x0 - px0 < 4:
        return 0.0
    if px1 - x1 < 4:
        return avail - w
    s = avail / max(px1 - px0, 1e-9)
    return min(max(((x0 + x1) / 2 - px0) * s - w / 2, 0.0), avail - w)


def _place_rows(parts: list[dict], avail: float) -> tuple[list[dict], float, float]:
    px0, _, px1, _ = _extent(_members({"parts": parts}))
    out, y, prev_bottom = [], 0.0, None
    for part in parts:
        x0, y0, x1, y1 = _extent(_members(part))
        y += 0.0 if prev_bottom is None else y0 - prev_bottom
        boxes, w, h = _layout(part, avail, (px0, px1))
        x = _anchored(x0, x1, px0, px1, w, avail)
        out += [_moved(b, x, y) for b in boxes]
        y, prev_bottom = y + h, y1
    return out, avail, y


def _place_cols(parts: list[dict], avail: float, frame=None) -> tuple[list[dict], float, float]:
    members = _members({"parts": parts})
    px0, py0, px1, _ = _extent(members)
    ext = [_extent(_members(p)) for p in parts]
    laid = [_layout(p, min(e[2] - e[0], avail)) for p, e in zip(parts, ext)]
    gutter = min(max((min(b[0] - a[2] for a, b in zip(ext, ext[1:]))), 8.0), 32.0)
    if sum(w for _, w, _ in laid) + gutter * (len(laid) - 1) <= avail:
        return _one_row(laid, ext, px0, py0, px1, gutter, avail)
    # an item too wide to share a line takes the whole line, as a stacked grid item does
    laid = [_layout(p, avail) if w > (avail - gutter) / 2 else (b, w, h) for p, (b, w, h) in zip(parts, laid)]
    fx0, fx1 = frame or (px0, px1)
    centred = abs((px0 + px1) / 2 - (fx0 + fx1) / 2) < 8 and px0 - fx0 > 8
    return _wrapped(laid, gutter, avail, centred)


def _one_row(laid, ext, px0, py0, px1, gutter, avail):
    """Side by side as before: each column where its anchor puts it, pushed apart to the gutter."""
    xs = [_anchored(e[0], e[2], px0, px1, w, avail) for (_, w, _), e in zip(laid, ext)]
    for i in range(1, len(xs)):
        xs[i] = max(xs[i], xs[i - 1] + laid[i - 1][1] + gutter)
    xs[-1] = min(xs[-1], avail - laid[-1][1])
    for i in range(len(xs) - 2, -1, -1):
        xs[i] = min(xs[i], xs[i + 1] - gutter - laid[i][1])
    out = [_moved(b, x, e[1] - py0) for (boxes, _, _), x, e in zip(laid, xs, ext) for b in boxes]
    return out, avail, max(e[1] - py0 + h for (_, _, h), e in zip(laid, ext))


def _wrapped(laid, gutter, avail, centred):
    """A flex row that wraps: as many columns per line as fit, lines `gutter` apart."""
    lines, cur, used = [], [], 0.0
    for item in laid:
        if cur and used + gutter + item[1] > avail:
            lines.append(cur)
            cur, used = [], 0.0
        used += (gutter if cur else 0.0) + item[1]
        cur.append(item)
    lines.append(cur)
    out, y = [], 0.0
    for line in lines:
        width = sum(w for _, w, _ in line) + gutter * (len(line) - 1)
        x = (avail - width) / 2 if centred else 0.0
        for boxes, w, _ in line:
            out += [_moved(b, x, y) for b in boxes]
            x += w + gutter
        y += max(h for _, _, h in line) + gutter
    return out, avail, y - gutter


def _place_block(nodes: list[dict], avail: float) -> tuple[list[dict], float, float]:
    """Boxes that overlap both ways (a collage): scaled sideways as one piece, heights kept."""
    px0, py0, px1, _ = _extent(nodes)
    s = min(1.0, avail / max(px1 - px0, 1e-9))
    out = []
    for n in nodes:
        boxes, _, _ = _layout_node(n, n["el"]["w"] * s)
        out += [_moved(b, (n["el"]["x"] - px0) * s, n["el"]["y"] - py0) for b in boxes]
    return out, avail, max(b["y"] + b["h"] for b in out)


def _smaller_type(e: dict, f: float) -> dict:
    """A phone's headings are set smaller (responsive type scales): the box shrinks about its anchor."""
    if e["type"] not in ("heading", "subheading"):
        return e
    w, h = e["w"] * f, e["h"] * f
    dx = (e["w"] - w) / 2 if e.get("align") == "center" else 0.0
    return {**e, "x": e["x"] + dx, "w": w, "h": h}


def reflow(els: list[dict], W: int, H: int, new_w: int, r: random.Random) -> tuple[list[dict], int]:
    """The section `W` x `H` reflowed to a viewport `new_w` px wide: (elements, canvas height)."""
    if new_w < PHONE_MAX:
        els = [_smaller_type(e, r.uniform(0.6, 0.8)) for e in els if e["type"] not in FOLDS]
    content = [e for e in els if e.get("style") != "bleed"]
    margin = r.choice((16, 20, 24)) if new_w < PHONE_MAX else r.choice((32, 40, 48))
    _, top, _, end = _extent([{"el": e} for e in content])
    boxes, _, h = _layout(_tree(_nest(content)), new_w - 2 * margin)
    pad_top, pad_bottom = (round(p * r.uniform(0.5, 1.0)) for p in (top, H - end))
    new_h = int(math.ceil((pad_top + h + pad_bottom) / 8) * 8)
    out = [_moved(b, margin, pad_top) for b in boxes]
    out += [{**e, "x": 0, "y": 0, "w": new_w, "h": new_h} for e in els if e.get("style") == "bleed"]
    return [{**b, **{k: round(b[k]) for k in ("x", "y", "w", "h")}} for b in out], new_h
