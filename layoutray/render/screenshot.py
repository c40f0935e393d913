"""Screenshot-like renderings of sections: synthetic images that look more like real pages.

A wireframe (render/wireframe.py) draws every element the way a designer sketches it; a real
screenshot has colour themes, glyphs instead of word bars, photographs, shadows and anti-aliased
edges. Trained on wireframes only, the image encoder meets real screenshots as a new domain.
This renderer draws the same boxes with a colour theme drawn per section (light or dark
background, an accent hue), text as rows of glyph strokes of varying height, images as smooth
colour-noise "photographs", drop shadows under cards and buttons, and renders at twice the
size before a Lanczos downscale, as a browser screenshot shrunk to the model's width would be.
The choice between the two renderers is made per example (`data.appearance`).
"""

from __future__ import annotations

import colorsys
import random
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from layoutray.render.wireframe import WIREFRAME_WIDTH, _align, _as_random, _lines

SUPERSAMPLE = 2
_DRAW_ORDER = {"card": 0, "image": 1}


class Theme(NamedTuple):
    bg: tuple
    surface: tuple
    text: tuple
    muted: tuple
    accent: tuple
    on_accent: tuple
    line: tuple


def _rgb(h: float, s: float, v: float) -> tuple:
    return tuple(round(c * 255) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def make_theme(r: random.Random, dark: bool) -> Theme:
    """A page palette: neutral background and text, one saturated accent."""
    hue, tint = r.random(), r.uniform(0, 0.06)
    accent = _rgb(hue, r.uniform(0.45, 0.9), r.uniform(0.55, 0.95))
    if dark:
        return Theme(_rgb(hue, tint, r.uniform(0.06, 0.2)), _rgb(hue, tint, r.uniform(0.2, 0.3)),
                     _rgb(hue, 0.02, r.uniform(0.88, 1.0)), _rgb(hue, 0.05, r.uniform(0.6, 0.75)), accent,
                     (255, 255, 255), _rgb(hue, 0.05, 0.35))
    return Theme(_rgb(hue, tint, r.uniform(0.94, 1.0)), _rgb(hue, tint, r.uniform(0.88, 0.97)),
                 _rgb(hue, 0.1, r.uniform(0.05, 0.25)), _rgb(hue, 0.05, r.uniform(0.4, 0.55)), accent,
                 (255, 255, 255), _rgb(hue, 0.05, 0.82))


class _Pen(NamedTuple):
    img: Image.Image
    d: ImageDraw.ImageDraw
    r: random.Random
    g: np.random.Generator
    theme: Theme
    W: int
    H: int
    canvas_h: int


def _box(el, W: int, H: int):
    x0, y0 = round(el["x"] * W), round(el["y"] * H)
    return x0, y0, x0 + max(1, round(el["w"] * W)) - 1, y0 + max(1, round(el["h"] * H)) - 1


def _glyph_line(p: _Pen, x0, y, length, size, colour, bold: bool):
    """One line of text: words of glyph strokes (x-height, ascenders, descenders)."""
    xh, x, end = max(1, size * 0.5), x0, x0 + length
    stroke = max(1, round(size * (0.16 if bold else 0.1)))
    base = y + size * 0.75
    while x < end - stroke:
        for _ in range(p.r.randint(2, 9)):
            if x >= end - stroke:
                break
            tall = p.r.random() < 0.3
            top = base - (size * 0.72 if tall else xh)
            bot = base + (size * 0.2 if p.r.random() < 0.08 else 0)
            p.d.rectangle((round(x), round(top), round(x) + stroke - 1, round(bot)), fill=colour)
            x += stroke + max(1, size * p.r.uniform(0.08, 0.2))
        x += size * 0.35


def _text(p: _Pen, el, box, colour, bold: bool, n: int | None = None):
    x0, y0, x1, y1 = box
    n = n or _lines(el, p.canvas_h, el["type"])
    lh, w = (y1 - y0 + 1) / n, x1 - x0 + 1
    align = _align(el)
    for i in range(n):
        length = w * (p.r.uniform(0.4, 0.85) if i == n - 1 and n > 1 else p.r.uniform(0.88, 1.0))
        lx = x0 + ((w - length) / 2 if align == "center" else (w - length) if align == "right" else 0)
        _glyph_line(p, lx, y0 + i * lh + lh * 0.1, length, lh * 0.8, colour, bold)


def _photo(p: _Pen, box, round_mask: bool = False):
    """Smooth colour noise with a light-to-dark gradient: a photograph seen from afar."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0 + 1, y1 - y0 + 1
    # Photographs are far less saturated than uniform colour noise: a base colour plus muted noise.
    base = np.array(_rgb(p.r.random(), p.r.uniform(0.1, 0.5), p.r.uniform(0.3, 0.85)), dtype=np.float32)
    noise = p.g.normal(0, p.r.uniform(20, 60), (p.r.randint(2, 7), p.r.randint(2, 7), 3))
    small = np.clip(base + noise, 0, 255).astype(np.uint8)
    tex = Image.fromarray(small, "RGB").resize((w, h), Image.BICUBIC)
    shade = np.linspace(1.0, p.r.uniform(0.55, 1.0), h)[:, None, None]
    tex = Image.fromarray((np.asarray(tex) * shade).astype(np.uint8), "RGB")
    mask = None
    if round_mask:
        mask = Image.new("L", (w, h), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, w - 1, h - 1), fill=255)
    p.img.paste(tex, (x0, y0), mask)


def _shadow(p: _Pen, box, rad):
    x0, y0, x1, y1 = box
    off = max(1, round((y1 - y0) * 0.03)) + 1
    dark = tuple(max(0, c - 28) for c in p.theme.bg)
    p.d.rounded_rectangle((x0 + off // 2, y0 + off, x1 + off // 2, y1 + off), rad, fill=dark)


def _draw_text(p: _Pen, el, box):
    t = p.theme
    colour, bold = {"heading": (t.text, True), "subheading": (t.text, True), "paragraph": (t.muted, False)}[el["type"]]
    _text(p, el, box, colour, bold)


def _draw_link(p: _Pen, el, box):
    _text(p, el, box, p.theme.accent, False, n=1)


def _draw_button(p: _Pen, el, box):
    x0, y0, x1, y1 = box
    rad = max(1, min((y1 - y0) / 2, p.r.choice((4, 8, (y1 - y0) / 2))))
    if p.r.random() < 0.4:
        _shadow(p, box, rad)
    if el.get("style", "") == "secondary":
        p.d.rounded_rectangle(box, rad, fill=p.theme.bg, outline=p.theme.accent, width=2)
        label = p.theme.accent
    else:
        p.d.rounded_rectangle(box, rad, fill=p.theme.accent)
        label = p.theme.on_accent
    lw, lh = (x1 - x0) * p.r.uniform(0.45, 0.7), (y1 - y0) * 0.45
    _glyph_line(p, x0 + (x1 - x0 - lw) / 2, y0 + (y1 - y0 - lh) / 2, lw, lh, label, True)


def _draw_image(p: _Pen, el, box):
    _photo(p, box)


def _draw_icon(p: _Pen, el, box):
    fill = p.theme.accent if p.r.random() < 0.6 else p.theme.muted
    (p.d.ellipse if p.r.random() < 0.5 else p.d.rectangle)(box, fill=fill)


def _draw_logo(p: _Pen, el, box):
    x0, y0, x1, y1 = box
    mark = min(x1 - x0, y1 - y0)
    colour = p.theme.text if p.r.random() < 0.6 else p.theme.accent
    p.d.ellipse((x0, y0, x0 + mark, y0 + mark), fill=colour)
    if x1 - x0 > 2 * mark:
        _glyph_line(p, x0 + mark * 1.3, y0, x1 - x0 - mark * 1.3, y1 - y0, colour, True)


def _draw_navigation(p: _Pen, el, box):
    x0, y0, x1, y1 = box
    n = int(el.get("lines") or max(2, round((x1 - x0) / max((y1 - y0) * 4, 1))))
    slot = (x1 - x0 + 1) / n
    for i in range(n):
        lw = slot * p.r.uniform(0.45, 0.75)
        _glyph_line(p, x0 + i * slot + (slot - lw) / 2, y0, lw, y1 - y0, p.theme.text, False)


def _draw_card(p: _Pen, el, box):
    rad = p.r.choice((4, 8, 12, 16))
    if p.r.random() < 0.6:
        _shadow(p, box, rad)
    outline = p.theme.accent if el.get("style", "") == "featured" else p.theme.line
    p.d.rounded_rectangle(box, rad, fill=p.theme.surface if p.r.random() < 0.6 else p.theme.bg, outline=outline)


def _draw_input(p: _Pen, el, box):
    x0, y0, x1, y1 = box
    p.d.rounded_rectangle(box, p.r.choice((2, 4, 6)), fill=p.theme.bg, outline=p.theme.line, width=2)
    lh = min(y1 - y0, max(8.0, 48 * p.H / p.canvas_h)) * 0.45
    _glyph_line(p, x0 + 8, y0 + lh * 0.6, (x1 - x0) * p.r.uniform(0.2, 0.5), lh, p.theme.muted, False)


def _draw_list(p: _Pen, el, box):
    x0, y0, x1, y1 = box
    n = _lines(el, p.canvas_h, "list")
    lh = (y1 - y0 + 1) / n
    for i in range(n):
        s = max(2, lh * 0.25)
        cy = y0 + i * lh + lh / 2
        p.d.ellipse((x0, cy - s / 2, x0 + s, cy + s / 2), fill=p.theme.accent)
        _glyph_line(p, x0 + 3 * s, y0 + i * lh + lh * 0.15, (x1 - x0 - 3 * s) * p.r.uniform(0.4, 0.9), lh * 0.7,
                    p.theme.muted, False)


def _draw_avatar(p: _Pen, el, box):
    _photo(p, box, round_mask=True)


def _draw_badge(p: _Pen, el, box):
    x0, y0, x1, y1 = box
    p.d.rounded_rectangle(box, max(1, (y1 - y0) / 2), fill=p.theme.surface, outline=p.theme.accent)
    lw = (x1 - x0) * 0.6
    _glyph_line(p, x0 + (x1 - x0 - lw) / 2, y0 + (y1 - y0) * 0.2, lw, (y1 - y0) * 0.6, p.theme.accent, True)


def _draw_outline(p: _Pen, el, box):
    p.d.rectangle(box, outline=p.theme.line)


DRAWERS = {
    "heading": _draw_text, "subheading": _draw_text, "paragraph": _draw_text,
    "link": _draw_link, "button": _draw_button, "image": _draw_image, "icon": _draw_icon,
    "logo": _draw_logo, "navigation": _draw_navigation, "card": _draw_card, "input": _draw_input,
    "list": _draw_list, "avatar": _draw_avatar, "badge": _draw_badge,
}


def render_screenshot(section_type: str, elements: list[dict], canvas_w: int, canvas_h: int,
                      rng=None, width_px: int = WIREFRAME_WIDTH) -> Image.Image:
    """An RGB screenshot-like image, width_px wide, height by the canvas aspect ratio."""
    r = _as_random(rng if rng is not None else 0)
    W, H = width_px * SUPERSAMPLE, max(1, round(canvas_h * width_px / canvas_w)) * SUPERSAMPLE
    dark_p = {"footer": 0.5, "call_to_action": 0.35, "navbar": 0.2, "hero": 0.25, "stats": 0.25}.get(section_type, 0.1)
    theme = make_theme(r, r.random() < dark_p)
    img = Image.new("RGB", (W, H), theme.bg)
    pen = _Pen(img, ImageDraw.Draw(img), r, np.random.default_rng(r.getrandbits(64)), theme, W, H, canvas_h)
    for el in sorted(elements, key=lambda e: _DRAW_ORDER.get(e["type"], 2)):
        DRAWERS.get(el["type"], _draw_outline)(pen, el, _box(el, W, H))
    out = img.resize((W // SUPERSAMPLE, H // SUPERSAMPLE), Image.LANCZOS)
    return out.filter(ImageFilter.GaussianBlur(0.3)) if r.random() < 0.3 else out
