"""The page grid a synthetic section is built on, and the helpers every section generator uses.

A section is laid out the way designers lay one out: a centred container with side margins that
stay the same for the whole section, a 12-column grid with 24 or 32 px gutters inside it, vertical
rhythm from the spacing scale 4/8/16/24/32/48/64/96/128 px, and text boxes sized from a font size,
a line height and a line count. `Page.put` refuses anything beyond the element cap, the last guard
behind the generators' own shrinking (`fit_grid`). All in canvas pixels; `layoutray.data.synth`
normalises.
"""

from __future__ import annotations

import random

PHI = (1 + 5 ** 0.5) / 2
GOLDEN = 1 / PHI  # 0.618...


class Page:
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
        return self.put(el(kind, x, y, w, h, **hints))

    def text(self, kind: str, x: float, y: float, max_w: float, font: int, lines: int,
             align: str = "left", lh: float | None = None, frac: float | None = None) -> dict:
        """A text box: multi-line text fills its measure; a single line is shorter."""
        lh = lh or (1.2 if kind in ("heading", "subheading") else 1.5)
        w = max_w if lines > 1 else max_w * (frac or self.r.uniform(0.45, 0.95))
        w = max(w, min(max_w, 2 * font))
        if align == "center":
            x += (max_w - w) / 2
        return self.add(kind, x, y, w, round(lines * font * lh), lines=lines, align=align)


def el(kind, x, y, w, h, **hints) -> dict:
    return {"type": kind, "x": round(x), "y": round(y), "w": max(1, round(w)), "h": max(1, round(h)), **hints}


def bottom(els) -> int:
    return max((e["y"] + e["h"] for e in els), default=0)


def gap(r, small=False) -> int:
    return r.choice((8, 16) if small else (16, 24, 32))


def fit_grid(cols: int, rows: int, per_item: int, budget: int, min_cols: int = 1) -> tuple[int, int]:
    """Shrink rows first, then columns, until cols * rows items of per_item elements fit."""
    while cols * rows * per_item > budget and rows > 1:
        rows -= 1
    while cols * per_item > budget and cols > min_cols:
        cols -= 1
    return cols, rows


def header(p: Page, y: int, align: str, budget: int, span: int | None = None,
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
            y = bottom([p.text("subheading", x, y, w, 14, 1, align, frac=r.uniform(0.2, 0.35))]) + 12
        used += 1
    h = p.text("heading", x, y, w, font or r.choice((32, 36, 40, 44, 48)), r.choice((1, 1, 2)), align)
    y = bottom([h])
    used += 1
    if budget - used >= 1 and r.random() < 0.7:
        y += gap(r, small=True)
        if r.random() < 0.6:
            y = bottom([p.text("paragraph", x, y, w, r.choice((16, 18)), r.choice((1, 2, 2, 3)), align)])
        else:
            y = bottom([p.text("subheading", x, y, w, r.choice((18, 20, 22)), 1, align)])
    return y


def buttons(p: Page, x: float, y: int, w: float, align: str, n: int, h: int | None = None) -> int:
    r = p.r
    h = h or r.choice((40, 44, 48, 56))
    ws = [r.randint(7, 11) * 16 for _ in range(n)]
    total = sum(ws) + 16 * (n - 1)
    cx = x + (w - total) / 2 if align == "center" else x
    for i, bw in enumerate(ws):
        p.add("button", cx, y, bw, h, style="primary" if i == 0 else "secondary")
        cx += bw + 16
    return y + h
