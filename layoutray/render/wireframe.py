"""Greyscale wireframes of sections: the model's image input for synthetic data.

A wireframe must not give its boxes away: every element type is drawn the way a
designer's wireframe draws it (text as lines of word bars, images as crossed boxes,
buttons as filled pills ...), grey levels are jittered per element, the section has a
background shade, and sparse speckles sit on top. Per-pixel gaussian noise would do the
same job but multiplies PNG size several times, so the noise is kept sparse.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

WIREFRAME_WIDTH = 320

# Container types are drawn first so that their children land on top.
_DRAW_ORDER = {"card": 0, "image": 1}

# Rough canvas-px line heights, used when an element carries no `lines` hint (user data).
_LINE_PX = {"heading": 58, "subheading": 28, "paragraph": 26, "list": 32}

TYPE_COLORS = {
    "heading": (230, 25, 75), "subheading": (245, 130, 48), "paragraph": (60, 180, 75),
    "button": (0, 130, 200), "link": (145, 30, 180), "image": (70, 200, 220),
    "icon": (240, 50, 230), "logo": (128, 128, 0), "navigation": (0, 128, 128),
    "card": (170, 110, 40), "input": (128, 0, 0), "list": (0, 0, 128),
    "avatar": (210, 190, 20), "badge": (100, 100, 100),
}


def _as_random(rng) -> random.Random:
    """Accept a random.Random (used as is), a numpy Generator or a seed."""
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, np.random.Generator):
        return random.Random(int(rng.integers(0, 2**63)))
    return random.Random(rng)


def _clamp(v: float) -> int:
    return int(min(255, max(0, v)))


class _Ink:
    """Grey levels for one section, light or dark theme, with per-element jitter."""

    def __init__(self, r: random.Random, dark: bool):
        self.r, self.dark = r, dark
        self.bg = r.randint(18, 55) if dark else r.choice((255, 255, 250, 246, 240))

    def __call__(self, light_level: int, spread: int = 10) -> int:
        """A level given for the light theme, mirrored for the dark theme, jittered."""
        v = light_level + self.r.randint(-spread, spread)
        if self.dark:
            v = 255 - v + self.bg // 2
        return _clamp(v)

    def surface(self, delta: int) -> int:
        """A fill a little off the background (cards, inputs)."""
        return _clamp(self.bg + (delta if self.dark else -delta) + self.r.randint(-3, 3))


def _bar(d, x0, y0, w, h, fill):
    """A filled rectangle at least one pixel each way (PIL refuses inverted boxes)."""
    x0, y0 = round(x0), round(y0)
    d.rectangle((x0, y0, x0 + max(1, round(w)) - 1, y0 + max(1, round(h)) - 1), fill=fill)


def _rect(el, W: int, H: int):
    # Integer pixels: PIL rejects boxes whose corners round to an inverted rectangle.
    x0, y0 = round(el["x"] * W), round(el["y"] * H)
    return x0, y0, x0 + max(1, round(el["w"] * W)) - 1, y0 + max(1, round(el["h"] * H)) - 1


def _lines(el, canvas_h: int, kind: str) -> int:
    if el.get("lines"):
        return max(1, int(el["lines"]))
    return max(1, round(el["h"] * canvas_h / _LINE_PX.get(kind, 26)))


def _align(el) -> str:
    if el.get("align"):
        return el["align"]
    return "center" if abs(el["x"] + el["w"] / 2 - 0.5) < 0.02 and el["w"] < 0.8 else "left"


def _text(d, r, ink, box, n, kind, align, level, thick_ratio, ragged=True):
    """Lines of word bars: what text looks like when you squint."""
    x0, y0, x1, y1 = box
    w, lh = x1 - x0 + 1, (y1 - y0 + 1) / n
    t = max(1, round(lh * thick_ratio))
    word = max(2.0, t * (2.2 if kind == "heading" else 3.0))
    gap = max(1, round(t * 0.6)) if kind != "paragraph" or t > 1 else 1
    for i in range(n):
        last = i == n - 1
        length = w * (r.uniform(0.35, 0.8) if last and ragged and n > 1 else r.uniform(0.85, 1.0) if n > 1 else 1.0)
        ly = y0 + i * lh + (lh - t) / 2
        lx = x0 + ((w - length) / 2 if align == "center" else (w - length) if align == "right" else 0)
        end = lx + length
        while lx < end - 1:
            ww = word * r.uniform(0.6, 1.8)
            if end - lx - ww < word * 0.7:  # no stub of a word at the line end
                ww = end - lx
            _bar(d, lx, ly, ww, t, level)
            lx += ww + gap


class _Canvas(NamedTuple):
    """What every drawer needs: the pen, the section's rng and ink, and the scale."""
    d: ImageDraw.ImageDraw
    r: random.Random
    ink: _Ink
    W: int
    H: int
    canvas_h: int


def _size(box) -> tuple[int, int]:
    x0, y0, x1, y1 = box
    return x1 - x0 + 1, y1 - y0 + 1


# Each drawer takes (canvas, element, pixel box). The random draws of a drawer, in their order,
# are part of the synthetic datasets' definition: the same seed must give the same pixels, so
# a drawer's ink() and r.* calls must not be reordered, added or skipped.


def _draw_text(c: _Canvas, el, box):
    kind = el["type"]
    n = _lines(el, c.canvas_h, kind)
    # All three levels are drawn whatever the kind: each ink() call consumes the rng.
    level, ratio = {"heading": (c.ink(45, 20), 0.62), "subheading": (c.ink(95, 15), 0.5),
                    "paragraph": (c.ink(150, 15), 0.42)}[kind]
    _text(c.d, c.r, c.ink, box, n, kind, _align(el), level, ratio, ragged=kind == "paragraph")


def _draw_link(c: _Canvas, el, box):
    x0, y0, x1, y1 = box
    bw, bh = _size(box)
    t = max(1, round(bh * 0.4))
    level = c.ink(80, 15)
    ly = y0 + (bh - t) / 2 - 1
    _bar(c.d, x0, ly, bw, t, level)
    c.d.line((x0, min(y1, ly + t + 1), x1, min(y1, ly + t + 1)), fill=level)


def _draw_button(c: _Canvas, el, box):
    d, r, ink = c.d, c.r, c.ink
    x0, y0, _, _ = box
    bw, bh = _size(box)
    rad = max(1, min(bh / 2, r.choice((2, 3, bh / 2))))
    if el.get("style", "") == "secondary" and r.random() < 0.8:
        d.rounded_rectangle(box, rad, fill=ink.surface(0), outline=ink(70, 15))
        label = ink(70, 15)
    else:
        d.rounded_rectangle(box, rad, fill=ink(60, 25))
        label = ink(230, 10)
    t = max(1, round(bh * 0.24))
    lw = bw * r.uniform(0.4, 0.65)
    _bar(d, x0 + (bw - lw) / 2, y0 + (bh - t) / 2, lw, t, label)


def _draw_image(c: _Canvas, el, box):
    d, ink = c.d, c.ink
    x0, y0, x1, y1 = box
    bw, bh = _size(box)
    d.rectangle(box, fill=ink(215, 10), outline=ink(165, 10))
    cross = ink(175, 10)
    d.line((x0, y0, x1, y1), fill=cross)
    d.line((x0, y1, x1, y0), fill=cross)
    if bw > 40 and bh > 30 and c.r.random() < 0.4:  # a sun over a hill: "photo goes here"
        s = min(bw, bh) * 0.12
        cx, cy = x0 + bw * 0.72, y0 + bh * 0.28
        d.ellipse((cx - s, cy - s, cx + s, cy + s), fill=cross)


def _draw_icon(c: _Canvas, el, box):
    d, r, ink = c.d, c.r, c.ink
    x0, y0, _, _ = box
    bw, bh = _size(box)
    level = ink(125, 30)
    if r.random() < 0.5:
        d.ellipse(box, fill=level)
    else:
        d.rounded_rectangle(box, max(1, min(bw, bh) / 4), fill=level)
    if bw >= 6 and r.random() < 0.6:
        s = min(bw, bh) * 0.22
        cx, cy = x0 + bw / 2, y0 + bh / 2
        d.rectangle((cx - s, cy - s, cx + s, cy + s), fill=ink(225, 10))


def _draw_logo(c: _Canvas, el, box):
    d, r = c.d, c.r
    x0, y0, x1, y1 = box
    bw, bh = _size(box)
    level = c.ink(70, 25)
    mark = min(bh, bw)
    if bw <= 2 * bh:  # too square for a wordmark: the mark alone
        d.rounded_rectangle(box, max(1, mark / 3), fill=level)
        return
    shape = r.randrange(3)
    mb = (x0, y0, x0 + mark - 1, y1)
    if shape == 0:
        d.ellipse(mb, fill=level)
    elif shape == 1:
        d.rounded_rectangle(mb, max(1, mark / 4), fill=level)
    else:
        d.polygon([(x0 + mark / 2, y0), (x0 + mark - 1, y1), (x0, y1)], fill=level)
    t = max(1, round(bh * 0.45))
    wx = x0 + mark + max(1, mark * 0.3)
    _bar(d, wx, y0 + (bh - t) / 2, x1 - r.uniform(0, bw * 0.15) - wx, t, level)


def _draw_navigation(c: _Canvas, el, box):
    d, r, ink = c.d, c.r, c.ink
    x0, y0, _, y1 = box
    bw, bh = _size(box)
    n = int(el.get("lines") or max(2, round(bw / max(bh * 4, 1))))
    t = max(1, round(bh * 0.35))
    slot = bw / n
    active = r.randrange(n) if r.random() < 0.4 else -1
    for i in range(n):
        lw = slot * r.uniform(0.45, 0.7)
        lx = x0 + i * slot + (slot - lw) / 2
        ly = y0 + (bh - t) / 2
        _bar(d, lx, ly, lw, t, ink(50 if i == active else 90, 15))
        if i == active:
            d.line((lx, min(y1, ly + t + 2), lx + lw - 1, min(y1, ly + t + 2)), fill=ink(50, 10))


def _draw_card(c: _Canvas, el, box):
    d, r, ink = c.d, c.r, c.ink
    x0, y0, x1, y1 = box
    rad = max(1, r.choice((1, 2, 3)))
    if r.random() < 0.35:  # a drop shadow
        d.rounded_rectangle((x0 + 1, y0 + 2, x1 + 1, y1 + 2), rad, fill=ink.surface(22))
    outline = ink(60, 10) if el.get("style", "") == "featured" else ink(205, 10)
    d.rounded_rectangle(box, rad, fill=ink.surface(r.choice((0, 6, 10))), outline=outline)


def _draw_input(c: _Canvas, el, box):
    ink = c.ink
    x0, y0, _, _ = box
    bw, bh = _size(box)
    c.d.rectangle(box, fill=ink.surface(0) if not ink.dark else ink.surface(15), outline=ink(160, 20))
    lh = min(bh, max(4.0, 48 * c.H / c.canvas_h))  # a textarea's placeholder sits on its first line
    t = max(1, round(lh * 0.22))
    pw = bw * c.r.uniform(0.2, 0.5)
    py = y0 + (lh - t) / 2
    _bar(c.d, x0 + max(2, bw * 0.04), py, pw, t, ink(195, 10))


def _draw_list(c: _Canvas, el, box):
    d, ink = c.d, c.ink
    x0, y0, x1, _ = box
    _, bh = _size(box)
    n = _lines(el, c.canvas_h, "list")
    lh = bh / n
    t = max(1, round(lh * 0.35))
    level = ink(130, 15)
    bullets = el.get("style", "") != "plain"
    for i in range(n):
        ly = y0 + i * lh + (lh - t) / 2
        tx = x0
        if bullets:
            s = max(1, t)
            d.ellipse((x0, ly, x0 + s, ly + s), fill=ink(80, 15))
            tx = x0 + s + max(2, t * 2)
        lw = (x1 - tx) * c.r.uniform(0.4, 0.9)
        _bar(d, tx, ly, lw, t, level)


def _draw_avatar(c: _Canvas, el, box):
    d, ink = c.d, c.ink
    x0, y0, _, _ = box
    bw, bh = _size(box)
    d.ellipse(box, fill=ink(185, 12))
    cx, cy, dm = x0 + bw / 2, y0 + bh / 2, min(bw, bh)
    if dm >= 6:
        hr = dm * 0.18
        person = ink(232, 8)
        d.ellipse((cx - hr, cy - dm * 0.3, cx + hr, cy - dm * 0.3 + 2 * hr), fill=person)
        d.chord((cx - dm * 0.32, cy + dm * 0.05, cx + dm * 0.32, cy + dm * 0.7), 180, 360, fill=person)


def _draw_badge(c: _Canvas, el, box):
    ink = c.ink
    x0, y0, _, _ = box
    bw, bh = _size(box)
    dark = c.r.random() < 0.4
    c.d.rounded_rectangle(box, max(1, bh / 2), fill=ink(70 if dark else 215, 12))
    t = max(1, round(bh * 0.3))
    lw = bw * 0.6
    _bar(c.d, x0 + (bw - lw) / 2, y0 + (bh - t) / 2, lw, t, ink(235 if dark else 110, 10))


def _draw_outline(c: _Canvas, el, box):
    """An unknown type from user data: a plain outline keeps the preview usable."""
    c.d.rectangle(box, outline=c.ink(120, 10))


DRAWERS = {
    "heading": _draw_text, "subheading": _draw_text, "paragraph": _draw_text,
    "link": _draw_link, "button": _draw_button, "image": _draw_image, "icon": _draw_icon,
    "logo": _draw_logo, "navigation": _draw_navigation, "card": _draw_card, "input": _draw_input,
    "list": _draw_list, "avatar": _draw_avatar, "badge": _draw_badge,
}


def _draw_element(c: _Canvas, el) -> None:
    draw = DRAWERS.get(el["type"], _draw_outline)
    draw(c, el, _rect(el, c.W, c.H))


def render_wireframe(section_type: str, elements: list[dict], canvas_w: int, canvas_h: int,
                     rng=None, width_px: int = WIREFRAME_WIDTH) -> Image.Image:
    """A greyscale ("L") wireframe, width_px wide, height by the canvas aspect ratio."""
    r = _as_random(rng if rng is not None else 0)
    W = width_px
    H = max(1, round(canvas_h * width_px / canvas_w))
    dark_p = {"footer": 0.45, "call_to_action": 0.3, "navbar": 0.2, "hero": 0.15, "stats": 0.2}.get(section_type, 0.05)
    ink = _Ink(r, r.random() < dark_p)
    img = Image.new("L", (W, H), ink.bg)
    d = ImageDraw.Draw(img)
    if not ink.dark and r.random() < 0.3:  # a gentle vertical gradient; rows stay flat so PNG stays small
        top, bot = ink.bg, _clamp(ink.bg - r.randint(6, 16))
        for yy in range(H):
            d.line((0, yy, W, yy), fill=round(top + (bot - top) * yy / max(1, H - 1)))
    canvas = _Canvas(d, r, ink, W, H, canvas_h)
    for el in sorted(elements, key=lambda e: _DRAW_ORDER.get(e["type"], 2)):
        _draw_element(canvas, el)
    # Sparse speckle: scanner dust, not film grain.
    arr = np.array(img)
    g = np.random.default_rng(r.getrandbits(64))
    k = int(arr.size * g.uniform(0.001, 0.005))
    ys, xs = g.integers(0, H, k), g.integers(0, W, k)
    arr[ys, xs] = np.clip(arr[ys, xs].astype(np.int16) + g.integers(-70, 71, k), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "L")
