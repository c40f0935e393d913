"""Narrow viewports: desktop sections reflowed the way responsive CSS lays them out."""

import random
from collections import Counter

import pytest

from layoutray.config import load_config
from layoutray.data.page_grid import Page, el
from layoutray.data.reflow import reflow
from layoutray.data.sections import GENERATORS
from layoutray.data.synth import _place, example_rng, generate_example
from layoutray.data.vocab import SECTION_TYPES

CONTAINERS = ("card", "image")


def _desktop(i: int):
    kind = SECTION_TYPES[i % len(SECTION_TYPES)]
    p = Page(example_rng(11, i), 1440, 16)
    H = _place(p, GENERATORS[kind](p))
    return [{**e, "i": n} for n, e in enumerate(p.els)], H


def _overlap(a, b) -> bool:
    return (min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]) > 0.5
            and min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]) > 0.5)


def _loose_pairs(els) -> set:
    """Overlapping pairs where neither box is a container (text on text, a button on a heading)."""
    return {(a["i"], b["i"]) for a in els for b in els
            if a["i"] < b["i"] and _overlap(a, b) and a["type"] not in CONTAINERS and b["type"] not in CONTAINERS}


@pytest.mark.parametrize("new_w", [360, 390, 414, 768])
def test_every_generated_section_fits_the_viewport_loses_only_navigation_and_gains_no_overlap(new_w):
    for i in range(52):  # every section type four times
        els, H = _desktop(i)
        out, new_h = reflow(els, 1440, H, new_w, random.Random(i))
        for b in out:
            assert 0 <= b["x"] and b["x"] + b["w"] <= new_w and 0 <= b["y"] and b["y"] + b["h"] <= new_h
            assert b["w"] >= 1 and b["h"] >= 1
        dropped = {e["i"] for e in els} - {b["i"] for b in out}
        assert all(els[j]["type"] == "navigation" for j in dropped) and (new_w < 600 or not dropped)
        assert len(out) == len(els) - len(dropped)
        kept = [e for e in els if e["i"] not in dropped]
        assert _loose_pairs(out) <= _loose_pairs(kept)


def test_a_split_hero_stacks_its_text_above_its_picture_at_full_width():
    els = [el("heading", 120, 100, 600, 120, lines=2), el("paragraph", 120, 240, 560, 60, lines=2),
           el("button", 120, 330, 160, 48), el("image", 760, 80, 560, 420)]
    els = [{**e, "i": n} for n, e in enumerate(els)]
    out = {b["i"]: b for b in reflow(els, 1440, 600, 390, random.Random(0))[0]}
    heading, paragraph, button, image = (out[i] for i in range(4))
    assert heading["y"] < paragraph["y"] < button["y"] < image["y"]
    assert image["w"] == paragraph["w"] == 390 - 2 * heading["x"]
    assert image["h"] == pytest.approx(image["w"] * 420 / 560, abs=1)  # the picture keeps its shape
    assert paragraph["lines"] == 4 and paragraph["h"] == pytest.approx(120, abs=1)  # 2 * 560 / 350 -> 4 lines of 30


def test_a_row_of_logos_wraps_into_lines_of_as_many_as_fit():
    els = [{**el("logo", 120 + k * 200, 100, 144, 36), "i": k} for k in range(6)]
    out = reflow(els, 1440, 240, 390, random.Random(0))[0]
    rows = Counter(b["y"] for b in out)
    assert sorted(rows.values()) == [2, 2, 2]  # 144 + 32 + 144 <= 350 < 3 * 144
    assert len({b["w"] for b in out}) == 1 and out[0]["w"] == 144  # logos keep their size


def test_a_card_keeps_its_contents_inside_it():
    card = el("card", 120, 100, 360, 400)
    kids = [el("icon", 152, 132, 48, 48), el("heading", 152, 200, 296, 30, lines=1),
            el("paragraph", 152, 250, 296, 96, lines=4)]
    els = [{**e, "i": n} for n, e in enumerate([card] + kids + [el("card", 520, 100, 360, 400)])]
    out = {b["i"]: b for b in reflow(els, 1440, 600, 375, random.Random(0))[0]}
    c = out[0]
    for k in (1, 2, 3):
        b = out[k]
        assert c["x"] <= b["x"] and b["x"] + b["w"] <= c["x"] + c["w"]
        assert c["y"] <= b["y"] and b["y"] + b["h"] <= c["y"] + c["h"]
    assert out[4]["y"] >= c["y"] + c["h"]  # the second card goes below the first


def test_a_phone_navbar_folds_its_links_and_keeps_the_button_at_the_right():
    els = [el("logo", 120, 20, 120, 40), el("navigation", 500, 30, 400, 20, lines=5), el("button", 1192, 16, 128, 48)]
    els = [{**e, "i": n} for n, e in enumerate(els)]
    out = {b["i"]: b for b in reflow(els, 1440, 80, 390, random.Random(0))[0]}
    assert set(out) == {0, 2}
    assert out[0]["x"] == 390 - out[2]["x"] - out[2]["w"]  # the same margin on both sides
    assert out[0]["y"] - out[2]["y"] == 4  # one row, centred on each other as before


def test_responsive_variety_draws_desktops_tablets_and_phones_and_config_accepts_it():
    widths = Counter(generate_example(example_rng(5, i), i, seed=5, variety="responsive")["canvas_width"]
                     for i in range(100))
    phones = sum(n for w, n in widths.items() if w < 600)
    tablets = widths[768] + widths[1024]
    assert 25 <= phones <= 55 and 8 <= tablets <= 35 and 100 - phones - tablets >= 25
    assert load_config(phase="phase1", overrides=["data.synth_variety=responsive"]).data.synth_variety == "responsive"
