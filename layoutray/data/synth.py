"""Synthetic web sections: layouts placed the way designers place them, plus a wireframe.

Every example is drawn from its own `random.Random` seeded by (seed, index), so an
example does not depend on how many others were generated or in which order; the split
of an index depends only on n (see `split_counts`).

How a section is built (all in canvas pixels, then normalised to [0, 1]): a canvas 1440 px
wide (sometimes 1280 or 1920) with a centred container and a 12-column grid
(`layoutray.data.page_grid`), filled by the generator of its section type (`layoutray.data.sections`)
with golden-ratio splits where designers use them, then shifted into the canvas with its
padding (`_place`). Generators shrink their repeated parts to fit the element cap.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from layoutray.data import dataset
from layoutray.data.imaging import encode_png
from layoutray.data.page_grid import Page, bottom
from layoutray.data.reflow import reflow
from layoutray.render.screenshot import render_screenshot
from layoutray.render.wireframe import _as_random, render_wireframe
from layoutray.data.sections import GENERATORS
from layoutray.data.vocab import SECTION_TYPES

GENERATOR_VERSION = 1
DEFAULT_MAX_ELEMENTS = 16  # Phase 1's element cap
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# Keys carried on element dicts to help the renderer (line counts, alignment, button
# style); they never reach the dataset rows.
HINT_KEYS = ("lines", "align", "style")


def example_rng(seed: int, index: int) -> random.Random:
    # A str seed is hashed with SHA-512 by random.Random: stable across processes and
    # Python versions, unlike hash() of a tuple.
    return random.Random(f"layoutray.data.synth:{seed}:{index}")


# How the generator draws (data.synth_appearance): the wireframe renderer, the screenshot-like
# renderer, or either per example (an even draw of its own, so wireframe datasets stay as they were).
APPEARANCES = ("wireframe", "screenshot", "mixed")
# How wide its distributions are (data.synth_variety): "base" is the generator as designed; "wide"
# also draws the sizes real pages show more often (text blocks narrower than their column, smaller
# logos, avatars, inputs and badges), from an rng of its own so "base" datasets stay as they were.
# "responsive" is "wide" at the viewports of a responsive page (`viewport`): desktop as "base" draws
# it, a 1024 px tablet drawn on the grid, or a 768 px tablet or a 360-414 px phone reflowed from a
# desktop section the way responsive CSS collapses it (`layoutray.data.reflow`). Phones get the
# largest share, as they take most page views.
VARIETIES = ("base", "wide", "responsive")


def look_rng(kind: str, seed: int, index: int) -> random.Random:
    return random.Random(f"layoutray.data.synth.{kind}:{seed}:{index}")


def _shrink(e: dict, fx: float, fy: float, anchor: str) -> None:
    w, h = e["w"] * fx, e["h"] * fy
    if anchor == "center":
        e["x"] += (e["w"] - w) / 2
    e["y"] += (e["h"] - h) / 2
    e["w"], e["h"] = w, h


def _widen_text(e: dict, r: random.Random) -> None:
    if (e.get("lines") or 1) <= 2 and r.random() < 0.5:  # a short heading rarely fills its column
        _shrink(e, r.uniform(0.4, 0.9), 1.0, e.get("align", "left"))


def _widen_small(e: dict, r: random.Random) -> None:
    if r.random() < 0.5:
        f = r.uniform(0.55, 0.9)
        _shrink(e, f, f if e["type"] in ("avatar", "logo") else max(f, 0.8), "center")


_WIDEN = {"heading": _widen_text, "subheading": _widen_text, "logo": _widen_small, "avatar": _widen_small,
          "input": _widen_small, "badge": _widen_small}


def widen(els: list[dict], r: random.Random) -> None:
    """Variety "wide": resize some elements within their own boxes (so nothing new overlaps)."""
    for e in els:
        if e.get("style") != "bleed" and e["type"] in _WIDEN:
            _WIDEN[e["type"]](e, r)


GRID_MIN_WIDTH = 1024  # the section generators hold from this width up; narrower viewports are reflowed


def viewport(r: random.Random) -> int | None:
    """A responsive section's viewport width: None (desktop, 40%), a tablet (20%) or a phone (40%)."""
    u = r.random()
    if u < 0.4:
        return None
    if u < 0.6:
        return r.choice((768, 1024))
    return r.choice((360, 375, 390, 414))


def split_counts(n: int) -> dict[str, int]:
    """Exact 80/10/10: train = floor(0.8 n), val = floor(0.1 n), test = the rest."""
    train = (n * 8) // 10
    val = n // 10
    return {"train": train, "val": val, "test": n - train - val}


# ---------------------------------------------------------------------------- examples


def _place(p: Page, spec) -> int:
    """Shift the content into the canvas and return the canvas height."""
    if isinstance(spec, int):  # fixed height, already placed
        return spec
    min_h, pad_top, pad_bottom = spec
    content = [e for e in p.els if e.get("style") != "bleed"]
    top = min(e["y"] for e in content)
    content_h = bottom(content) - top
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
                    max_elements: int = DEFAULT_MAX_ELEMENTS,
                    variety_rng: random.Random | None = None,
                    view: int | None = None) -> tuple[str, int, int, list[dict]]:
    """(section_type, canvas_w, canvas_h, elements with render hints), boxes normalised;
    `variety_rng` given: variety "wide" (see `widen`); `view`: a narrower viewport (see `viewport`),
    drawn on the grid from GRID_MIN_WIDTH up, reflowed from the desktop section below it."""
    if max_elements < 2:
        raise ValueError(f"max_elements must be at least 2; got {max_elements}")
    rng = _as_random(rng)
    section_type = section_type or rng.choice(SECTION_TYPES)
    W = rng.choices((1440, 1280, 1920), weights=(70, 15, 15))[0]
    if view is not None and view >= GRID_MIN_WIDTH:
        W = view
    p = Page(rng, W, max_elements)
    H = _place(p, GENERATORS[section_type](p))
    els = p.els
    if view is not None and view < W:
        els, H = reflow(els, W, H, view, variety_rng or random.Random(0))
        W = view
    if variety_rng is not None:
        widen(els, variety_rng)
    return section_type, W, H, _normalise(els, W, H)


def _render(appearance: str, seed: int, index: int):
    if appearance == "mixed":
        appearance = "screenshot" if look_rng("appearance", seed, index).random() < 0.5 else "wireframe"
    return render_screenshot if appearance == "screenshot" else render_wireframe


def generate_example(rng: random.Random, index: int, section_type: str | None = None,
                     max_elements: int = DEFAULT_MAX_ELEMENTS, seed: int = 0, appearance: str = "wireframe",
                     variety: str = "base") -> dict:
    """One dataset row (dataset.SCHEMA) with its image PNG (a wireframe unless `appearance` says)."""
    rng = _as_random(rng)
    vr = look_rng("variety", seed, index) if variety != "base" else None
    view = viewport(look_rng("viewport", seed, index)) if variety == "responsive" else None
    section_type, W, H, els = generate_layout(rng, section_type, max_elements, vr, view)
    img = _render(appearance, seed, index)(section_type, els, W, H, rng)
    return {
        "id": f"synth-{seed}-{index:07d}",
        "section_type": section_type,
        "canvas_width": W,
        "canvas_height": H,
        "image": encode_png(img),
        "elements": [{k: e[k] for k in ("type", "x", "y", "w", "h")} for e in els],
    }


def iter_examples(indices, seed: int = 0, max_elements: int = DEFAULT_MAX_ELEMENTS, appearance: str = "wireframe",
                  variety: str = "base"):
    for i in indices:
        yield generate_example(example_rng(seed, i), i, max_elements=max_elements, seed=seed,
                               appearance=appearance, variety=variety)


def synthesize(out_dir: str | Path, examples: int, seed: int = 0, shard_rows: int = 500,
               max_elements: int = DEFAULT_MAX_ELEMENTS, appearance: str = "wireframe",
               variety: str = "base") -> dict:
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
        shards += dataset.write_split(out_dir, split, iter_examples(idx, seed, max_elements, appearance, variety),
                                      shard_rows)
    return dataset.write_manifest(out_dir, shards, generator=generator_info(seed, max_elements, appearance, variety))


def generator_info(seed: int, max_elements: int = DEFAULT_MAX_ELEMENTS, appearance: str = "wireframe",
                   variety: str = "base") -> dict:
    """The manifest's `generator` entry of a dataset `synthesize` makes with these settings."""
    return {"name": "layoutray.data.synth", "version": GENERATOR_VERSION, "seed": seed, "max_elements": max_elements,
            "appearance": appearance, "variety": variety}


def drawn_as(manifest: dict) -> dict:
    """A manifest's `generator` entry; datasets made before the looks existed are wireframe and base."""
    return {"appearance": "wireframe", "variety": "base", **(manifest.get("generator") or {})}
