"""Synthetic web sections: layouts placed the way designers place them, plus a wireframe.

Every example is drawn from its own `random.Random` seeded by (seed, index), so an
example does not depend on how many others were generated or in which order; the split
of an index depends only on n (see `split_counts`).

How a section is built (all in canvas pixels, then normalised to [0, 1]):

- a canvas 1440 px wide (sometimes 1280 or 1920) with a centred container and side
  margins that stay the same for the whole section;
- a 12-column grid with 24 or 32 px gutters inside the container: columns, cards and
  text blocks start and end on column edges;
- vertical rhythm from the spacing scale `SPACE` (4/8/16/24/32/48/64/96/128);
- text boxes sized from a font size, a line height and a line count, so a two-line
  heading is exactly twice as tall as one line of it;
- golden-ratio splits (61.8 / 38.2) where designers use them: hero text/image,
  contact text/form;
- an element cap: generators shrink their repeated parts (grid rows, columns, cards)
  to fit it, and `_Page.put` refuses anything beyond it as the last guard.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

from layoutray import dataset
from layoutray.imaging import encode_png
from layoutray.render import _as_random, render_wireframe
from layoutray.vocab import SECTION_TYPES

GENERATOR_VERSION = 1
PHI = (1 + 5 ** 0.5) / 2
GOLDEN = 1 / PHI  # 0.618...
SPACE = (4, 8, 16, 24, 32, 48, 64, 96, 128)
DEFAULT_MAX_ELEMENTS = 16  # Phase 1's element cap
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# Keys carried on element dicts to help the renderer (line counts, alignment, button
# style); they never reach the dataset rows.
HINT_KEYS = ("lines", "align", "style")


def example_rng(seed: int, index: int) -> random.Random:
    # A str seed is hashed with SHA-512 by random.Random: stable across processes and
    # Python versions, unlike hash() of a tuple.
    return random.Random(f"layoutray.synth:{seed}:{index}")


def split_counts(n: int) -> dict[str, int]:
    """Exact 80/10/10: train = floor(0.8 n), val = floor(0.1 n), test = the rest."""
    train = (n * 8) // 10
    val = n // 10
    return {"train": train, "val": val, "test": n - train - val}


# ---------------------------------------------------------------------------- page grid


class _Page:
    """One section under construction: grid geometry, the element list and the cap."""

    def __init__(self, rng: random.Random, canvas_w: int, cap: int):
        self.r = rng
        self.W = canvas_w
        self.cap = cap
        self.els: list[dict] = []
        margin = rng.choice({1280: (48, 64, 80), 1920: (96, 128, 160)}.get(canvas_w, (64, 80, 96, 120)))
        container = rng.choice((1120, 1200, 1280)) if canvas_w >= 1440 else 1280
        self.cw = min(canvas_w - 2 * margin, container)
        self.x0 = (canvas_w - self.cw) // 2
        self.g = rng.choice((24, 32))
        self.colw = (self.cw - 11 * self.g) / 12

    @property
    def left(self) -> int:
        return self.cap - len(self.els)

    def col(self, start: int, span: int) -> tuple[int, int]:
        """x and width of `span` grid columns starting at column `start` (0-based)."""
        x = self.x0 + start * (self.colw + self.g)
        return round(x), round(span * self.colw + (span - 1) * self.g)

    def put(self, el: dict) -> dict:
        if len(self.els) < self.cap:
            self.els.append(el)
        return el

    def add(self, kind: str, x: float, y: float, w: float, h: float, **hints) -> dict:
        return self.put(_el(kind, x, y, w, h, **hints))

    def text(self, kind: str, x: float, y: float, max_w: float, font: int, lines: int,
             align: str = "left", lh: float | None = None, frac: float | None = None) -> dict:
        """A text box: multi-line text fills its measure; a single line is shorter."""
        lh = lh or (1.2 if kind in ("heading", "subheading") else 1.5)
        w = max_w if lines > 1 else max_w * (frac or self.r.uniform(0.45, 0.95))
        w = max(w, min(max_w, 2 * font))
        if align == "center":
            x += (max_w - w) / 2
        return self.add(kind, x, y, w, round(lines * font * lh), lines=lines, align=align)


def _el(kind, x, y, w, h, **hints) -> dict:
    return {"type": kind, "x": round(x), "y": round(y), "w": max(1, round(w)), "h": max(1, round(h)), **hints}


def _bottom(els) -> int:
    return max((e["y"] + e["h"] for e in els), default=0)


def _gap(r, small=False) -> int:
    return r.choice((8, 16) if small else (16, 24, 32))


def _fit_grid(cols: int, rows: int, per_item: int, budget: int, min_cols: int = 1) -> tuple[int, int]:
    """Shrink rows first, then columns, until cols * rows items of per_item elements fit."""
    while cols * rows * per_item > budget and rows > 1:
        rows -= 1
    while cols * per_item > budget and cols > min_cols:
        cols -= 1
    return cols, rows


def _header(p: _Page, y: int, align: str, budget: int, span: int | None = None,
            font: int | None = None) -> int:
    """Optional eyebrow, a heading, an optional supporting line. Returns the next free y."""
    r = p.r
    span = span or (r.choice((6, 8)) if align == "center" else r.choice((6, 7, 8)))
    x, w = p.col((12 - span) // 2, span) if align == "center" else p.col(0, span)
    used = 0
    if budget >= 3 and r.random() < 0.3:
        if r.random() < 0.5:
            bw, bh = r.randint(88, 150), r.choice((24, 28, 32))
            p.add("badge", x + ((w - bw) / 2 if align == "center" else 0), y, bw, bh)
            y += bh + 16
        else:
            y = _bottom([p.text("subheading", x, y, w, 14, 1, align, frac=r.uniform(0.2, 0.35))]) + 12
        used += 1
    h = p.text("heading", x, y, w, font or r.choice((32, 36, 40, 44, 48)), r.choice((1, 1, 2)), align)
    y = _bottom([h])
    used += 1
    if budget - used >= 1 and r.random() < 0.7:
        y += _gap(r, small=True)
        if r.random() < 0.6:
            y = _bottom([p.text("paragraph", x, y, w, r.choice((16, 18)), r.choice((1, 2, 2, 3)), align)])
        else:
            y = _bottom([p.text("subheading", x, y, w, r.choice((18, 20, 22)), 1, align)])
    return y


def _buttons(p: _Page, x: float, y: int, w: float, align: str, n: int, h: int | None = None) -> int:
    r = p.r
    h = h or r.choice((40, 44, 48, 56))
    ws = [r.randint(7, 11) * 16 for _ in range(n)]
    total = sum(ws) + 16 * (n - 1)
    cx = x + (w - total) / 2 if align == "center" else x
    for i, bw in enumerate(ws):
        p.add("button", cx, y, bw, h, style="primary" if i == 0 else "secondary")
        cx += bw + 16
    return y + h


# ---------------------------------------------------------------------------- sections
# Each generator fills the page with y starting at 0 and returns (min_height, pad_top,
# pad_bottom); `None` means the generator placed everything on a fixed canvas height.


def _navbar(p: _Page):
    r = p.r
    H = r.choice((64, 72, 80, 88, 96, 112))
    lw, lh = r.randint(6, 10) * 16, r.choice((28, 32, 36, 40))
    p.add("logo", p.x0, (H - lh) / 2, lw, lh)
    n_items, item_w = r.randint(3, 6), r.randint(72, 104)
    nh = r.choice((20, 24))
    right = p.x0 + p.cw
    actions = []
    if r.random() < 0.8:
        actions.append(("button", r.randint(7, 10) * 16, r.choice((40, 44, 48))))
    if r.random() < 0.45:
        actions.insert(0, (r.choice(("link", "link", "button")), r.randint(4, 6) * 16, 40))
    if r.random() < 0.25:
        actions.insert(0, ("icon", 24, 24))
    for kind, w, h in reversed(actions):
        right -= w
        style = "primary" if kind == "button" and right + w == p.x0 + p.cw else "secondary"
        p.add(kind, right, (H - h) / 2, w, h if kind != "link" else 24, style=style)
        right -= 24
    nav_w = n_items * item_w
    layout = r.choice(("center", "right", "left"))
    if layout == "center":
        nx = (p.W - nav_w) / 2
    elif layout == "right":
        nx = right - nav_w - 8
    else:
        nx = p.x0 + lw + 64
    nav_w = min(nav_w, max(96, right - nx))
    p.add("navigation", nx, (H - nh) / 2, nav_w, nh, lines=n_items)
    return H


def _hero(p: _Page):
    r = p.r
    variant = r.choice(("split", "split", "split", "center", "center_image", "background"))
    min_h = r.randint(75, 112) * 8  # 600-896
    if variant == "background":
        p.add("image", 0, 0, p.W, 1, style="bleed")
    extra = r.random()
    if variant == "split":
        text_share = GOLDEN if r.random() < 0.6 else 1 - GOLDEN if r.random() < 0.5 else 0.5
        tw = round((p.cw - p.g) * text_share)
        iw = p.cw - p.g - tw
        text_left = r.random() < 0.75
        tx = p.x0 if text_left else p.x0 + iw + p.g
        ix = p.x0 + tw + p.g if text_left else p.x0
        align, measure = "left", tw - r.choice((0, 32, 64))
    else:
        span = r.choice((8, 8, 10))
        tx, measure = p.col((12 - span) // 2, span)
        align = "center" if variant != "background" or r.random() < 0.5 else "left"
        if align == "left":
            tx, measure = p.col(0, 7)
    y = 0
    if r.random() < 0.35:
        bw = r.randint(10, 16) * 12
        p.add("badge", tx + ((measure - bw) / 2 if align == "center" else 0), y, bw, 32)
        y += 32 + 24
    y = _bottom([p.text("heading", tx, y, measure, r.choice((48, 56, 64, 72)), r.choice((1, 2, 2, 3)), align)])
    y += r.choice((16, 24))
    y = _bottom([p.text("paragraph", tx, y, measure * r.uniform(0.8, 1.0), r.choice((18, 20)),
                        r.choice((2, 2, 3, 4)), align)])
    y += r.choice((32, 48))
    if extra < 0.2:  # email capture instead of buttons
        iw_, bw = r.randint(18, 24) * 16, r.randint(8, 10) * 16
        ix_ = tx + (measure - iw_ - bw - 16) / 2 if align == "center" else tx
        p.add("input", ix_, y, iw_, 48)
        p.add("button", ix_ + iw_ + 16, y, bw, 48, style="primary")
        y += 48
    else:
        y = _buttons(p, tx, y, measure, align, r.choice((1, 2, 2)))
    if r.random() < 0.3 and p.left >= 4:  # social proof: a row of avatars or customer logos
        y += r.choice((32, 48))
        if r.random() < 0.5:
            n = r.randint(3, min(5, p.left - 1))
            total = n * 40 - (n - 1) * 12 + 16 + 160
            ax = tx + (measure - total) / 2 if align == "center" else tx
            for i in range(n):
                p.add("avatar", ax + i * 28, y, 40, 40)
            p.text("paragraph", ax + n * 28 + 28, y + 8, 160, 14, 1, frac=1.0)
            y += 40
        else:
            n = r.randint(3, min(5, p.left))
            lw = 96
            total = n * lw + (n - 1) * 32
            lx = tx + (measure - total) / 2 if align == "center" else tx
            for i in range(n):
                p.add("logo", lx + i * (lw + 32), y, lw, 32)
            y += 32
    if variant == "split":
        text_h = y
        ih = max(text_h, r.randint(45, 70) * 8)
        top = (text_h - ih) / 2
        p.add("image", ix, top, iw, ih)
    elif variant == "center_image" and p.left >= 1:
        y += r.choice((48, 64))
        span = r.choice((10, 12))
        x, w = p.col((12 - span) // 2, span)
        p.add("image", x, y, w, min(480, round(w / r.choice((PHI, 16 / 9, 2.0)))))  # keeps heroes < ~1000 px
    return min_h, r.choice((96, 128)), r.choice((96, 128))


def _feature_grid(p: _Page):
    r = p.r
    align = r.choice(("center", "center", "left"))
    style = r.choice(("icon", "icon", "card", "image", "card_image"))
    per = {"icon": 3, "card": 4, "image": 3, "card_image": 4}[style]
    with_link = r.random() < 0.3
    per += with_link
    y = _header(p, 0, align, budget=max(1, p.left - 2 * per)) + r.choice((48, 64))
    cols, rows = _fit_grid(r.choice((2, 3, 3, 4)), r.choice((1, 1, 2)), per, p.left, min_cols=2)
    if cols * per > p.left:  # a tiny cap: drop the optional parts of each item
        per, with_link = per - with_link, False
    span = 12 // cols
    item_align = "center" if align == "center" and style == "icon" and r.random() < 0.5 else "left"
    # One icon size, padding, gap and title size for the whole grid: designers repeat a component.
    para_lines = r.choice((2, 3, 3, 4))
    pad = r.choice((24, 32)) if style.startswith("card") else 0
    s, gap1, ft = r.choice((40, 48, 56)), r.choice((16, 24)), r.choice((20, 22, 24))
    aspect = r.choice((PHI, 4 / 3, 16 / 9))
    for row in range(rows):
        row_els = []
        for c in range(cols):
            x, w = p.col(c * span, span)
            boxed = style.startswith("card")
            ix, iw, iy = x + pad, w - 2 * pad, y + pad
            items = []
            if style in ("icon", "card"):
                items.append(_el("icon", ix + ((iw - s) / 2 if item_align == "center" else 0), iy, s, s))
                iy += s + gap1
            else:
                ih = round(iw / aspect)
                if style == "card_image":  # the image runs to the card's edges
                    items.append(_el("image", x, y, w, ih))
                else:
                    items.append(_el("image", ix, iy, iw, ih))
                iy = (y if style == "card_image" else iy) + ih + gap1
            hw = iw * r.uniform(0.5, 0.9)
            items.append(_el("heading", ix + ((iw - hw) / 2 if item_align == "center" else 0), iy, hw,
                             round(ft * 1.2), lines=1, align=item_align))
            iy += round(ft * 1.2) + 8
            ph = round(para_lines * 16 * 1.5)
            items.append(_el("paragraph", ix, iy, iw, ph, lines=para_lines, align=item_align))
            iy += ph
            if with_link:
                lw = r.randint(6, 9) * 16
                iy += 16
                items.append(_el("link", ix + ((iw - lw) / 2 if item_align == "center" else 0), iy, lw, 24))
                iy += 24
            if boxed:
                items.insert(0, _el("card", x, y, w, iy + pad - y))
            row_els.append(items)
        # Cards in a grid row share one height (CSS grid stretch).
        row_h = max(_bottom(items) for items in row_els) - y
        for items in row_els:
            if items[0]["type"] == "card":
                items[0]["h"] = row_h
            for e in items:
                p.put(e)
        y += row_h + r.choice((32, 48))
    return r.randint(50, 70) * 8, r.choice((64, 96)), r.choice((64, 96))


def _pricing(p: _Page):
    r = p.r
    n = r.choice((2, 3, 3, 4))
    y = _header(p, 0, "center", budget=max(1, p.left - 2 * 5)) + r.choice((48, 64))
    budget = p.left
    # Each card: card, plan name, price, list, button (+ badge, + paragraph when the cap allows).
    while n > 2 and n * 5 > budget:
        n -= 1
    per_left = budget - n * 5
    span = 12 // n
    start = 2 if n == 2 and r.random() < 0.6 else 0
    span = 4 if start == 2 else span
    featured = r.randrange(n)
    items_n = r.randint(3, 6)
    pad = r.choice((24, 32))
    cards = []
    for i in range(n):
        x, w = p.col(start + i * span, span)
        iy = y + pad
        kids = []
        kids.append(_el("heading", x + pad, iy, (w - 2 * pad) * r.uniform(0.35, 0.6), 29, lines=1))
        if per_left > 0 and (i == featured or r.random() < 0.3):
            kids.append(_el("badge", x + w - pad - 96, iy + 2, 96, 24))
            per_left -= 1
        iy += 29 + 16
        kids.append(_el("subheading", x + pad, iy, (w - 2 * pad) * r.uniform(0.35, 0.55), 48, lines=1))
        iy += 48 + 16
        if per_left > 0 and r.random() < 0.5:
            kids.append(_el("paragraph", x + pad, iy, w - 2 * pad, 48, lines=2))
            per_left -= 1
            iy += 48 + 16
        kids.append(_el("list", x + pad, iy, w - 2 * pad, items_n * 32, lines=items_n))
        iy += items_n * 32 + 32
        kids.append(_el("button", x + pad, iy, w - 2 * pad, 48, style="primary" if i == featured else "secondary"))
        iy += 48 + pad
        cards.append((_el("card", x, y, w, iy - y, style="featured" if i == featured else ""), kids))
    card_h = max(c["h"] for c, _ in cards)
    for c, kids in cards:
        c["h"] = card_h
        kids[-1]["y"] = c["y"] + card_h - pad - 48  # buttons line up at the card bottoms
        p.put(c)
        for k in kids:
            p.put(k)
    return r.randint(75, 100) * 8, r.choice((64, 96)), r.choice((64, 96))


def _testimonials(p: _Page):
    r = p.r
    if r.random() < 0.3:  # one big quote
        span = r.choice((8, 10))
        x, w = p.col((12 - span) // 2, span)
        y = 0
        if r.random() < 0.6:
            p.add("icon", x + (w - 48) / 2, y, 48, 48)
            y += 48 + 24
        y = _bottom([p.text("paragraph", x, y, w, r.choice((24, 28)), r.choice((2, 3, 4)), "center")]) + 32
        p.add("avatar", x + (w - 64) / 2, y, 64, 64)
        y += 64 + 16
        p.text("subheading", x, y, w, 18, 1, "center", frac=0.25)
        y += 22 + 4
        p.text("paragraph", x, y, w, 14, 1, "center", frac=0.3)
        if r.random() < 0.4:
            p.add("logo", x + (w - 120) / 2, y + 21 + 24, 120, 32)
        return r.randint(50, 65) * 8, 96, 96
    y = _header(p, 0, r.choice(("center", "left")), budget=max(1, p.left - 8)) + r.choice((48, 64))
    per = 5 if r.random() < 0.6 else 4  # with or without a role line
    cols, rows = _fit_grid(r.choice((2, 3, 3)), r.choice((1, 1, 2)), per, p.left)
    span = 12 // cols
    lines = r.choice((3, 4, 5))
    pad = r.choice((24, 32))
    for _ in range(rows):
        for c in range(cols):
            x, w = p.col(c * span, span)
            iy = y + pad
            kids = [_el("paragraph", x + pad, iy, w - 2 * pad, round(lines * 18 * 1.5), lines=lines)]
            iy += round(lines * 18 * 1.5) + 24
            kids.append(_el("avatar", x + pad, iy, 48, 48))
            kids.append(_el("subheading", x + pad + 64, iy + (2 if per == 5 else 12), (w - 2 * pad - 64) * 0.5, 22, lines=1))
            if per == 5:
                kids.append(_el("paragraph", x + pad + 64, iy + 28, (w - 2 * pad - 64) * 0.6, 20, lines=1))
            iy += 48 + pad
            p.put(_el("card", x, y, w, iy - y))
            for k in kids:
                p.put(k)
        y = iy + r.choice((24, 32))
    return r.randint(50, 65) * 8, r.choice((64, 96)), r.choice((64, 96))


def _call_to_action(p: _Page):
    r = p.r
    variant = r.choice(("center", "split", "banner", "newsletter"))
    if variant == "split":
        x, w = p.col(0, 7)
        y = _bottom([p.text("heading", x, 0, w, r.choice((32, 40, 48)), r.choice((1, 2)))])
        if r.random() < 0.7:
            y = _bottom([p.text("paragraph", x, y + 16, w, 18, r.choice((1, 2)))])
        bx, bw = p.col(8, 4)
        n = r.choice((1, 2))
        _buttons(p, bx + bw - (n * 160 + 16 * (n - 1)), (y - 48) / 2, n * 160, "left", n, h=48)
        return r.randint(30, 40) * 8, 96, 96
    if variant == "banner":  # a rounded panel inside the container
        card = p.add("card", p.x0, 0, p.cw, 1)
        pad = r.choice((48, 64))
        with_image = r.random() < 0.5
        tx, tw = p.x0 + pad, (p.cw - 2 * pad) * (GOLDEN if with_image else 1.0)
        align = "left" if with_image else r.choice(("left", "center"))
        y = _bottom([p.text("heading", tx, pad, tw, r.choice((32, 40)), r.choice((1, 2)), align)]) + 16
        y = _bottom([p.text("paragraph", tx, y, tw, 18, r.choice((1, 2)), align)]) + 32
        y = _buttons(p, tx, y, tw, align, r.choice((1, 2))) + pad
        if with_image:
            iw = p.cw - 2 * pad - tw - 32
            p.add("image", p.x0 + p.cw - pad - iw, pad, iw, y - 2 * pad)
        card["h"] = y
        return r.randint(35, 50) * 8, 64, 64
    span = r.choice((6, 8))
    x, w = p.col((12 - span) // 2, span)
    y = _bottom([p.text("heading", x, 0, w, r.choice((36, 40, 48)), r.choice((1, 2)), "center")]) + 16
    if r.random() < 0.8:
        y = _bottom([p.text("paragraph", x, y, w, 18, r.choice((1, 2)), "center")]) + 16
    y += 16
    if variant == "newsletter":
        iw, bw = r.randint(18, 22) * 16, 144
        ix = x + (w - iw - bw - 16) / 2
        p.add("input", ix, y, iw, 48)
        p.add("button", ix + iw + 16, y, bw, 48, style="primary")
        if r.random() < 0.5:
            p.text("paragraph", x, y + 48 + 16, w, 14, 1, "center", frac=0.5)
    else:
        _buttons(p, x, y, w, "center", r.choice((1, 2)))
    return r.randint(35, 55) * 8, 96, 96


def _footer(p: _Page):
    r = p.r
    y = 0
    n_cols = r.choice((2, 3, 3, 4))
    newsletter = r.random() < 0.3
    # brand column (logo, blurb), link columns (heading + list or links), bottom row
    while n_cols > 1 and 2 + 2 * n_cols + 2 * newsletter + 2 > p.left:
        n_cols -= 1
    if 2 + 2 * n_cols + 2 * newsletter + 2 > p.left:
        newsletter = False
    brand_span = r.choice((3, 4))
    bx, bw = p.col(0, brand_span)
    p.add("logo", bx, y, r.randint(7, 10) * 16, 36)
    col_bottom = _bottom([p.text("paragraph", bx, y + 36 + 16, bw, 14, r.choice((2, 3)))])
    rest = 12 - brand_span - 1 - (3 if newsletter else 0)
    span = max(1, rest // n_cols)
    for i in range(n_cols):
        x, w = p.col(brand_span + 1 + i * span, span)
        p.text("heading", x, y, w, 16, 1, frac=0.6)
        n_links = r.randint(3, 6)
        spare = p.left - (2 * (n_cols - i - 1) + 2 * newsletter + 2) - 1
        if spare >= n_links and r.random() < 0.25:  # links as separate elements
            for j in range(n_links):
                p.add("link", x, y + 40 + j * 32, w * r.uniform(0.4, 0.8), 20)
            col_bottom = max(col_bottom, y + 40 + n_links * 32)
        else:
            p.add("list", x, y + 40, w, n_links * 32, lines=n_links, style="plain")
            col_bottom = max(col_bottom, y + 40 + n_links * 32)
    if newsletter:
        x, w = p.col(9, 3)
        p.text("heading", x, y, w, 16, 1, frac=0.7)
        p.add("input", x, y + 40, w, 44)
        p.add("button", x, y + 40 + 44 + 12, w * 0.5, 44, style="primary")
        col_bottom = max(col_bottom, y + 40 + 100)
    y = col_bottom + r.choice((48, 64))
    p.text("paragraph", p.x0, y, p.cw * 0.35, 14, 1, frac=r.uniform(0.5, 0.9))
    if r.random() < 0.6:
        n = min(r.randint(3, 5), p.left)
        for i in range(n):
            p.add("icon", p.x0 + p.cw - (n - i) * 40 + 16, y - 2, 24, 24)
    else:
        n = min(r.randint(2, 4), p.left)
        for i in range(n):
            p.add("link", p.x0 + p.cw - (n - i) * 128 + 16, y, 112, 20)
    return r.randint(38, 50) * 8, r.choice((48, 64)), r.choice((32, 48))


def _gallery(p: _Page):
    r = p.r
    y = _header(p, 0, r.choice(("center", "left")), budget=max(1, p.left - 4)) + r.choice((32, 48))
    variant = r.choice(("grid", "grid", "masonry", "bento"))
    gap = r.choice((8, 16, 24))
    if variant == "bento" and p.left >= 3:
        n_small = min(r.choice((2, 4)), p.left - 1)
        big_w = round((p.cw - gap) * GOLDEN)
        small_w = p.cw - gap - big_w
        rows = (n_small + 1) // 2 if n_small > 2 else n_small
        per_col = 2 if n_small == 4 else 1
        sh = r.randint(20, 28) * 8
        big_h = rows * sh + (rows - 1) * gap
        left = r.random() < 0.5
        p.add("image", p.x0 if left else p.x0 + small_w + gap, y, big_w, big_h)
        sx = p.x0 + big_w + gap if left else p.x0
        sw = (small_w - gap * (per_col - 1)) / per_col
        for i in range(n_small):
            rr, cc = divmod(i, per_col)
            p.add("image", sx + cc * (sw + gap), y + rr * (sh + gap), sw, sh)
        return r.randint(60, 80) * 8, 64, 64
    cols, rows = _fit_grid(r.choice((2, 3, 3, 4)), r.choice((1, 2, 2, 3)), 1, p.left)
    cw = (p.cw - gap * (cols - 1)) / cols
    aspect = r.choice((1.0, 4 / 3, 3 / 2, PHI))
    rows = max(1, min(rows, int(1100 // (cw / aspect + gap))))  # a gallery section, not a whole page
    for c in range(cols):
        cy = y
        for _ in range(rows):
            h = cw / aspect if variant == "grid" else cw / r.choice((0.75, 1.0, 1.333, 1.5))
            p.add("image", p.x0 + c * (cw + gap), cy, cw, round(h / 8) * 8)
            cy += round(h / 8) * 8 + gap
    return r.randint(60, 80) * 8, 64, 64


def _team(p: _Page):
    r = p.r
    align = r.choice(("center", "center", "left"))
    photo = r.random() < 0.4  # rectangular photos instead of round avatars
    social = r.random() < 0.3
    per = 3 + social
    y = _header(p, 0, align, budget=max(1, p.left - 2 * per)) + r.choice((48, 64))
    cols, rows = _fit_grid(r.choice((3, 4, 4)), r.choice((1, 1, 2)), per, p.left, min_cols=2)
    if cols * per > p.left:
        per, social = per - social, False
    span = 12 // cols
    for _ in range(rows):
        for c in range(cols):
            x, w = p.col(c * span, span)
            if photo:
                ph = round(w * r.choice((1.0, 1.25)))
                p.add("image", x, y, w, ph)
                iy, ta = y + ph + 16, "left"
            else:
                s = r.choice((96, 120, 144))
                p.add("avatar", x + (w - s) / 2, y, s, s)
                iy, ta = y + s + 16, "center"
            p.text("subheading", x, iy, w, 18, 1, ta, frac=r.uniform(0.4, 0.7))
            p.text("paragraph", x, iy + 22 + 4, w, 14, 1, ta, frac=r.uniform(0.3, 0.6))
            if social:
                p.add("icon", x + ((w - 20) / 2 if ta == "center" else 0), iy + 26 + 21 + 12, 20, 20)
        y = _bottom(p.els) + r.choice((48, 64))
    return r.randint(60, 80) * 8, r.choice((64, 96)), r.choice((64, 96))


def _faq(p: _Page):
    r = p.r
    two_col = r.random() < 0.4
    if two_col:
        x, w = p.col(0, 4)
        y = _bottom([p.text("heading", x, 0, w, 40, r.choice((1, 2)))]) + 16
        y = _bottom([p.text("paragraph", x, y, w, 16, r.choice((2, 3)))]) + 24
        if r.random() < 0.5:
            _buttons(p, x, y, w, "left", 1)
        qx, qw = p.col(5, 7)
        y = 0
    else:
        span = r.choice((8, 10))
        qx, qw = p.col((12 - span) // 2, span)
        y = _header(p, 0, "center", budget=max(1, p.left - 4)) + r.choice((48, 64))
    if r.random() < 0.3:  # the questions as one list
        n = r.randint(4, 8)
        p.add("list", qx, y, qw, n * 56, lines=n, style="plain")
        return r.randint(50, 70) * 8, 96, 96
    boxed = r.random() < 0.4
    per = 2 + boxed  # question, toggle icon (+ card)
    n = max(1, min(r.randint(3, 7), (p.left - 1) // per))
    opened = 0 if r.random() < 0.6 else -1
    for i in range(n):
        pad = 24 if boxed else 0
        lines = r.choice((2, 3)) if i == opened else 0
        h = 2 * pad + 28 + (16 + lines * 24 if lines else 0)
        if boxed:
            p.add("card", qx, y, qw, h)
        p.text("subheading", qx + pad, y + pad, qw - 2 * pad - 48, 20, 1, frac=r.uniform(0.5, 0.9))
        p.add("icon", qx + qw - pad - 24, y + pad + 2, 24, 24)
        if lines and p.left > (n - i - 1) * per:
            p.add("paragraph", qx + pad, y + pad + 28 + 16, qw - 2 * pad - 48, lines * 24, lines=lines)
        y += h + (16 if boxed else 32)
    return r.randint(50, 70) * 8, 96, 96


def _stats(p: _Page):
    r = p.r
    boxed = r.random() < 0.3
    icon = r.random() < 0.3
    per = 2 + boxed + icon
    n = r.choice((2, 3, 4, 4, 6))
    y = 0
    if r.random() < 0.7:
        y = _header(p, 0, "center", budget=max(1, p.left - 2 * per)) + r.choice((48, 64))
    cols, rows = _fit_grid(min(n, 4), 2 if n == 6 else 1, per, p.left)
    if n == 6 and rows == 2:
        cols = 3
    span = 12 // cols
    for _ in range(rows):
        for c in range(cols):
            x, w = p.col(c * span, span)
            pad = 24 if boxed else 0
            iy = y + pad
            if boxed:
                p.add("card", x, y, w, 2 * pad + 48 * icon + 16 * icon + 58 + 8 + 24)
            if icon:
                p.add("icon", x + (w - 48) / 2, iy, 48, 48)
                iy += 48 + 16
            p.text("heading", x + pad, iy, w - 2 * pad, 48, 1, "center", frac=r.uniform(0.35, 0.6))
            p.text("paragraph", x + pad, iy + 58 + 8, w - 2 * pad, 16, 1, "center", frac=r.uniform(0.4, 0.8))
        y = _bottom(p.els) + 48
    return r.randint(38, 55) * 8, r.choice((64, 96)), r.choice((64, 96))


def _logo_wall(p: _Page):
    r = p.r
    y = 0
    if r.random() < 0.75:
        x, w = p.col(2, 8)
        if r.random() < 0.5:
            y = _bottom([p.text("paragraph", x, 0, w, 16, 1, "center", frac=r.uniform(0.3, 0.5))]) + 32
        else:
            y = _header(p, 0, "center", budget=2, font=32) + 48
    per_row = r.choice((4, 5, 6, 6))
    rows = r.choice((1, 1, 2))
    per_row, rows = _fit_grid(per_row, rows, 1, p.left, min_cols=2)
    cell = p.cw / per_row
    lh = r.choice((32, 40, 48))
    for _ in range(rows):
        for i in range(per_row):
            lw = min(cell - 32, r.randint(7, 11) * 16)
            p.add("logo", p.x0 + i * cell + (cell - lw) / 2, y, lw, lh)
        y += lh + 48
    return r.randint(25, 40) * 8, 64, 64


def _contact_form(p: _Page):
    r = p.r
    split = r.random() < 0.6
    if split:
        tw = round((p.cw - p.g) * (1 - GOLDEN))
        tx, fx, fw = p.x0, p.x0 + tw + p.g * 2, p.cw - tw - p.g * 2
        y = _bottom([p.text("heading", tx, 0, tw, 40, r.choice((1, 2)))]) + 16
        y = _bottom([p.text("paragraph", tx, y, tw, 16, r.choice((2, 3)))]) + 32
        if r.random() < 0.5:
            p.add("list", tx, y, tw, 3 * 40, lines=3, style="icons")
        elif p.left >= 12:
            for _ in range(r.randint(2, 3)):
                p.add("icon", tx, y, 32, 32)
                p.text("paragraph", tx + 48, y + 4, tw - 48, 16, 1, frac=r.uniform(0.4, 0.8))
                y += 56
        fy = 0
    else:
        span = r.choice((6, 8))
        fx, fw = p.col((12 - span) // 2, span)
        fy = _header(p, 0, "center", budget=2, span=span) + 48
    boxed = r.random() < 0.4
    card = p.add("card", fx, fy, fw, 1) if boxed else None
    pad = 32 if boxed else 0
    x, w, y = fx + pad, fw - 2 * pad, fy + pad
    ih = r.choice((44, 48))
    if r.random() < 0.6 and p.left >= 5:  # first and last name side by side
        half = (w - 16) / 2
        p.add("input", x, y, half, ih)
        p.add("input", x + half + 16, y, half, ih)
        y += ih + 16
    for _ in range(r.randint(1, 2)):
        if p.left > 3:
            p.add("input", x, y, w, ih)
            y += ih + 16
    p.add("input", x, y, w, r.choice((120, 144, 160)), style="textarea")
    y = _bottom(p.els) + 24
    bw = w if r.random() < 0.3 else r.randint(8, 12) * 16
    p.add("button", x, y, bw, 48, style="primary")
    if card is not None:
        card["h"] = y + 48 + pad - fy
    return r.randint(60, 80) * 8, 96, 96


GENERATORS = {
    "hero": _hero, "feature_grid": _feature_grid, "pricing": _pricing, "testimonials": _testimonials,
    "call_to_action": _call_to_action, "footer": _footer, "gallery": _gallery, "team": _team,
    "faq": _faq, "stats": _stats, "logo_wall": _logo_wall, "contact_form": _contact_form,
    "navbar": _navbar,
}
assert set(GENERATORS) == set(SECTION_TYPES)


# ---------------------------------------------------------------------------- examples


def _place(p: _Page, spec) -> int:
    """Shift the content into the canvas and return the canvas height."""
    if isinstance(spec, int):  # fixed height, already placed
        return spec
    min_h, pad_top, pad_bottom = spec
    content = [e for e in p.els if e.get("style") != "bleed"]
    top = min(e["y"] for e in content)
    content_h = _bottom(content) - top
    H = max(min_h, content_h + pad_top + pad_bottom)
    H = int(math.ceil(H / 8) * 8)
    dy = pad_top + (H - pad_top - pad_bottom - content_h) // 2 - top
    for e in p.els:
        if e.get("style") == "bleed":
            e["y"], e["h"] = 0, H
        else:
            e["y"] += dy
    return H


def _normalise(els: list[dict], W: int, H: int) -> list[dict]:
    out = []
    for e in els:
        x0, y0 = min(max(e["x"], 0), W - 1), min(max(e["y"], 0), H - 1)
        x1, y1 = min(e["x"] + e["w"], W), min(e["y"] + e["h"], H)
        n = {"type": e["type"], "x": x0 / W, "y": y0 / H, "w": max(x1 - x0, 1) / W, "h": max(y1 - y0, 1) / H}
        n.update({k: e[k] for k in HINT_KEYS if k in e})
        out.append(n)
    return out


def generate_layout(rng: random.Random, section_type: str | None = None,
                    max_elements: int = DEFAULT_MAX_ELEMENTS) -> tuple[str, int, int, list[dict]]:
    """(section_type, canvas_w, canvas_h, elements with render hints), boxes normalised."""
    if max_elements < 2:
        raise ValueError(f"max_elements must be at least 2; got {max_elements}")
    rng = _as_random(rng)
    section_type = section_type or rng.choice(SECTION_TYPES)
    W = rng.choices((1440, 1280, 1920), weights=(70, 15, 15))[0]
    p = _Page(rng, W, max_elements)
    H = _place(p, GENERATORS[section_type](p))
    return section_type, W, H, _normalise(p.els, W, H)


def generate_example(rng: random.Random, index: int, section_type: str | None = None,
                     max_elements: int = DEFAULT_MAX_ELEMENTS, seed: int = 0) -> dict:
    """One dataset row (dataset.SCHEMA) with its wireframe PNG."""
    rng = _as_random(rng)
    section_type, W, H, els = generate_layout(rng, section_type, max_elements)
    img = render_wireframe(section_type, els, W, H, rng)
    return {
        "id": f"synth-{seed}-{index:07d}",
        "section_type": section_type,
        "canvas_width": W,
        "canvas_height": H,
        "image": encode_png(img),
        "elements": [{k: e[k] for k in ("type", "x", "y", "w", "h")} for e in els],
    }


def iter_examples(indices, seed: int = 0, max_elements: int = DEFAULT_MAX_ELEMENTS):
    for i in indices:
        yield generate_example(example_rng(seed, i), i, max_elements=max_elements, seed=seed)


def synthesize(out_dir: str | Path, examples: int, seed: int = 0, shard_rows: int = 500,
               max_elements: int = DEFAULT_MAX_ELEMENTS) -> dict:
    """Generate `examples` sections into out_dir as train/val/test shards plus a manifest.

    Indices 0..n-1 are split in order: the first floor(0.8 n) go to train, the next
    floor(0.1 n) to val, the rest to test. Example i is the same for a seed whatever n.
    """
    if examples < 1:
        raise ValueError(f"examples must be at least 1; got {examples}")
    counts = split_counts(examples)
    shards, start = [], 0
    for split in dataset.SPLITS:
        idx = range(start, start + counts[split])
        start += counts[split]
        shards += dataset.write_split(out_dir, split, iter_examples(idx, seed, max_elements), shard_rows)
    gen = {"name": "layoutray.synth", "version": GENERATOR_VERSION, "seed": seed, "max_elements": max_elements}
    return dataset.write_manifest(out_dir, shards, generator=gen)


def cmd_synth(args) -> int:
    max_elements = getattr(args, "max_elements", None) or DEFAULT_MAX_ELEMENTS
    for name, value, low in (("--examples", args.examples, 1), ("--shard-rows", args.shard_rows, 1),
                             ("--max-elements", max_elements, 2)):
        if value < low:
            print(f"error: {name} must be at least {low}; got {value}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    manifest = synthesize(args.out, args.examples, seed=args.seed, shard_rows=args.shard_rows,
                          max_elements=max_elements)
    dt = time.perf_counter() - t0
    c = manifest["counts"]
    print(f"wrote {manifest['total']:,} examples to {args.out} "
          f"(train {c['train']:,} / val {c['val']:,} / test {c['test']:,}; {len(manifest['shards'])} shards; "
          f"seed {args.seed}; max {max_elements} elements)")
    print(f"took {dt:.1f}s, {manifest['total'] / max(dt, 1e-9):,.0f} examples/s")
    return 0
